"""The Store conformance suite: every adapter must pass all of it.

Runs against real SQLite files and real PostgreSQL databases (``store_url``). The
clock is injected: every call passes ``now`` explicitly, so expiry and backoff are
exact. Races use real threads and, where it matters, two store instances on one
database (two coordinators).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest

from hearth.domain.jobs import BlobRef, ErrorInfo, JobSpec, JobState, Progress, Result
from hearth.domain.retry import Backoff
from hearth.errors import Forbidden, InvalidTransition, NotFound, StaleLease, ValidationError
from hearth.store import FinishItem, HeartbeatItem, JobFilter, Node, Store, open_store
from hearth.store.port import Grant

T0 = 1_800_000_000.0
_ids = itertools.count()
_tokens = itertools.count()


def new_id() -> str:
    return f"j_test{next(_ids):010d}"


def new_token() -> str:
    return f"tok{next(_tokens)}"


def rand() -> float:
    return 0.5


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = open_store(store_url)
    try:
        yield s
    finally:
        s.close()


def submit(store: Store, now: float = T0, **kw: object) -> str:
    spec = JobSpec(**{"kind": "k", **kw})  # type: ignore[arg-type]
    return store.submit([spec], now=now, new_id=new_id)[0].job.id


def lease_one(store: Store, now: float = T0, worker: str = "w1", kinds: tuple[str, ...] = ("k",)):
    got = store.lease(worker=worker, kinds=kinds, limit=1, now=now, new_token=new_token)
    assert len(got) == 1
    return got[0]


# -- submit, get, idempotency ------------------------------------------------------------


def test_submit_and_get_round_trip(store: Store) -> None:
    spec = JobSpec(kind="img2pdf", payload=b'{"a":1}', payload_type="json", namespace="ns1",
                   priority=5, max_attempts=7, backoff=Backoff(2, 60, 3, 0.2), lease_ttl=12,
                   timeout=99, labels={"team": "x"}, parent="flow-1")
    [res] = store.submit([spec], now=T0, new_id=new_id)
    assert res.created
    job = store.get(res.job.id)
    assert job == res.job
    assert (job.state, job.kind, job.namespace, job.payload, job.payload_type) == (
        JobState.QUEUED, "img2pdf", "ns1", b'{"a":1}', "json")
    assert (job.priority, job.max_attempts, job.backoff, job.lease_ttl, job.timeout) == (
        5, 7, Backoff(2, 60, 3, 0.2), 12, 99)
    assert dict(job.labels) == {"team": "x"} and job.parent == "flow-1"
    assert job.run_at == T0 and job.created_at == T0 and job.attempt == 0


def test_get_missing_job_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.get("j_missing")
    for call in (lambda: store.cancel("j_missing", now=T0),
                 lambda: store.retry("j_missing", now=T0),
                 lambda: store.events(job_id="j_missing")):
        with pytest.raises(NotFound):
            call()


def test_idempotency_key_returns_the_existing_job(store: Store) -> None:
    spec = JobSpec(kind="k", idempotency_key="order-42")
    [first] = store.submit([spec], now=T0, new_id=new_id)
    [again] = store.submit([spec], now=T0 + 1, new_id=new_id)
    assert first.created and not again.created
    assert again.job.id == first.job.id
    # Same key twice in one batch: one job. Another namespace: another job.
    a, b = store.submit([JobSpec(kind="k", idempotency_key="x")] * 2, now=T0, new_id=new_id)
    assert a.job.id == b.job.id and a.created and not b.created
    [other] = store.submit([JobSpec(kind="k", namespace="other", idempotency_key="order-42")],
                           now=T0, new_id=new_id)
    assert other.created and other.job.id != first.job.id
    assert len(store.list_jobs(JobFilter()).jobs) == 3


def test_concurrent_submits_with_one_key_create_one_job(store_url: str) -> None:
    stores = [open_store(store_url) for _ in range(2)]
    try:
        spec = JobSpec(kind="k", idempotency_key="same")

        def go(i: int) -> str:
            return stores[i % 2].submit([spec], now=T0, new_id=new_id)[0].job.id

        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(go, range(16)))
        assert len(set(ids)) == 1
        assert len(stores[0].list_jobs(JobFilter()).jobs) == 1
    finally:
        for s in stores:
            s.close()


def test_batch_submit_preserves_order(store: Store) -> None:
    specs = [JobSpec(kind="k", payload=str(i).encode()) for i in range(50)]
    res = store.submit(specs, now=T0, new_id=new_id)
    assert [r.job.payload for r in res] == [str(i).encode() for i in range(50)]
    assert all(r.created for r in res)


# -- leasing order and exclusivity -------------------------------------------------------


def test_lease_honours_priority_then_fifo(store: Store) -> None:
    low = submit(store, priority=0)
    high = submit(store, priority=10)
    low2 = submit(store, priority=0)
    got = store.lease(worker="w", kinds=["k"], limit=3, now=T0, new_token=new_token)
    assert [j.id for j in got] == [high, low, low2]


def test_lease_honours_run_at(store: Store) -> None:
    later = submit(store, delay=10)
    assert store.lease(worker="w", kinds=["k"], limit=5, now=T0 + 9.9, new_token=new_token) == []
    assert store.next_wakeup(kinds=["k"], now=T0) == T0 + 10
    assert lease_one(store, now=T0 + 10).id == later
    assert store.next_wakeup(kinds=["k"], now=T0) is None


def test_lease_filters_kinds_and_namespaces_and_merges_priorities(store: Store) -> None:
    a = submit(store, kind="a", priority=1)
    b = submit(store, kind="b", priority=5)
    submit(store, kind="c", priority=9)
    c_other = submit(store, kind="a", namespace="other", priority=0)
    got = store.lease(worker="w", kinds=["a", "b"], limit=10, now=T0, new_token=new_token,
                      namespaces=["default"])
    assert [j.id for j in got] == [b, a]
    got = store.lease(worker="w", kinds=["a"], limit=10, now=T0, new_token=new_token)
    assert [j.id for j in got] == [c_other]


def test_lease_sets_token_worker_attempt_and_expiry(store: Store) -> None:
    submit(store, lease_ttl=30, timeout=10)
    job = lease_one(store, now=T0 + 1, worker="w9")
    assert job.state is JobState.LEASED and job.worker == "w9" and job.attempt == 1
    assert job.lease_token and job.leased_at == T0 + 1
    assert job.lease_expires_at == T0 + 1 + 10  # capped by the execution timeout
    assert store.get(job.id) == job
    assert [e.type.value for e in store.events(job_id=job.id)] == ["submitted", "leased"]


def test_a_grant_leases_the_job_in_the_submit_that_creates_it(store: Store) -> None:
    store.register_node(Node(name="w7", kinds=("k",)), now=T0, rand=rand)
    store.submit([JobSpec(kind="k", idempotency_key="once")], now=T0, new_id=new_id)
    specs = [JobSpec(kind="k", lease_ttl=20), JobSpec(kind="k"), JobSpec(kind="k", delay=5),
             JobSpec(kind="k", idempotency_key="once")]
    grants = {0: Grant("w7", "g0"), 2: Grant("w7", "g2"), 3: Grant("w7", "g3")}
    res = store.submit(specs, now=T0 + 1, new_id=new_id, grants=grants)
    granted, plain, later, existing = (r.job for r in res)
    # Exactly what lease() would have made of it, with both events in order.
    assert granted.state is JobState.LEASED and granted.worker == "w7"
    assert granted.lease_token == "g0" and granted.attempt == 1
    assert granted.leased_at == T0 + 1 and granted.lease_expires_at == T0 + 21
    assert store.get(granted.id) == granted
    assert [e.type.value for e in store.events(job_id=granted.id)] == ["submitted", "leased"]
    # No grant, not due yet, or an existing job: the grant changes nothing.
    assert plain.state is later.state is JobState.QUEUED
    assert not res[3].created and existing.state is JobState.QUEUED
    assert existing.lease_token is None
    got = {(c.kind, c.state.value): c.count for c in store.counts()}
    assert got == {("k", "leased"): 1, ("k", "queued"): 3}
    [node] = store.list_nodes()
    assert node.last_seen == T0 + 1 and node.in_flight == 1
    # The granted job is held like any lease: not leasable, finished with its token.
    leased = store.lease(worker="w8", kinds=["k"], limit=10, now=T0 + 1, new_token=new_token)
    assert [j.id for j in leased] == [existing.id, plain.id]
    [done] = store.finish([FinishItem(granted.id, "g0", "succeeded", Result(), None)],
                          worker="w7", now=T0 + 2, rand=rand)
    assert done.ok and store.get(granted.id).state is JobState.SUCCEEDED


def test_concurrent_leasers_each_job_leased_exactly_once(store_url: str) -> None:
    stores = [open_store(store_url) for _ in range(2)]
    try:
        n_jobs = 300
        stores[0].submit([JobSpec(kind="k") for _ in range(n_jobs)], now=T0, new_id=new_id)
        seen: list[str] = []
        lock = threading.Lock()

        def leaser(i: int) -> None:
            store = stores[i % 2]
            while True:
                got = store.lease(worker=f"w{i}", kinds=["k"], limit=7, now=T0,
                                  new_token=new_token)
                if not got:
                    return
                with lock:
                    seen.extend(j.id for j in got)

        threads = [threading.Thread(target=leaser, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(seen) == n_jobs
        assert len(set(seen)) == n_jobs
    finally:
        for s in stores:
            s.close()


# -- heartbeats and fencing ---------------------------------------------------------------


def test_heartbeat_extends_lease_and_records_progress(store: Store) -> None:
    submit(store, lease_ttl=30)
    job = lease_one(store)
    [res] = store.heartbeat([HeartbeatItem(job.id, job.lease_token or "", Progress(50, "half"))],
                            worker="w1", now=T0 + 20)
    assert res.ok and res.job is not None
    assert res.job.lease_expires_at == T0 + 50
    assert store.get(job.id).progress == Progress(50, "half")
    assert store.events(job_id=job.id)[-1].type.value == "progress"


def test_stale_or_foreign_heartbeats_and_outcomes_are_refused(store: Store) -> None:
    submit(store, lease_ttl=30)
    job = lease_one(store)
    token = job.lease_token or ""
    before = store.get(job.id)
    bad = [HeartbeatItem(job.id, "wrong-token"), HeartbeatItem("j_missing", token)]
    r_wrong, r_missing = store.heartbeat(bad, worker="w1", now=T0 + 1)
    assert isinstance(r_wrong.error, StaleLease) and isinstance(r_missing.error, NotFound)
    [r_foreign] = store.heartbeat([HeartbeatItem(job.id, token)], worker="intruder", now=T0 + 1)
    assert isinstance(r_foreign.error, Forbidden)
    [r_fin] = store.finish([FinishItem(job.id, token, "succeeded")], worker="intruder",
                           now=T0 + 1, rand=rand)
    assert isinstance(r_fin.error, Forbidden)
    # An expired lease is never revived by a late heartbeat.
    [late] = store.heartbeat([HeartbeatItem(job.id, token)], worker="w1", now=T0 + 30)
    assert isinstance(late.error, StaleLease)
    assert store.get(job.id) == before


def test_one_stale_item_does_not_fail_the_batch(store: Store) -> None:
    submit(store)
    submit(store)
    a, b = store.lease(worker="w1", kinds=["k"], limit=2, now=T0, new_token=new_token)
    results = store.finish(
        [FinishItem(a.id, "stale", "succeeded"),
         FinishItem(b.id, b.lease_token or "", "succeeded", Result(b"ok"))],
        worker="w1", now=T0 + 1, rand=rand)
    assert isinstance(results[0].error, StaleLease) and results[1].ok
    assert store.get(a.id).state is JobState.LEASED
    assert store.get(b.id).state is JobState.SUCCEEDED


def test_a_worker_whose_lease_expired_cannot_overwrite_the_next_attempt(store: Store) -> None:
    submit(store, lease_ttl=10, backoff=Backoff(1, 1, 1, 0))
    first = lease_one(store, worker="old")
    [expired] = store.expire_leases(now=T0 + 10, rand=rand)
    assert expired.state is JobState.FAILED
    second = lease_one(store, now=T0 + 12, worker="new")
    [late] = store.finish([FinishItem(first.id, first.lease_token or "", "succeeded")],
                          worker="old", now=T0 + 13, rand=rand)
    assert isinstance(late.error, StaleLease)
    [ok] = store.finish([FinishItem(second.id, second.lease_token or "", "succeeded",
                                    Result(b"2"))], worker="new", now=T0 + 13, rand=rand)
    assert ok.ok
    job = store.get(first.id)
    assert job.state is JobState.SUCCEEDED and job.attempt == 2 and job.result == Result(b"2")
    succeeded = [e for e in store.events(job_id=job.id) if e.type.value == "succeeded"]
    assert len(succeeded) == 1 and succeeded[0].attempt == 2


# -- outcomes -------------------------------------------------------------------------------


def test_success_stores_result_and_output_blobs(store: Store) -> None:
    submit(store)
    job = lease_one(store)
    blob = BlobRef("ab" * 32, 3, "out.pdf")
    result = Result(b'{"pages":2}', "json", (blob,))
    [res] = store.finish([FinishItem(job.id, job.lease_token or "", "succeeded", result)],
                         worker="w1", now=T0 + 2, rand=rand)
    done = store.get(job.id)
    assert res.ok and done.state is JobState.SUCCEEDED and done.result == result
    assert done.finished_at == T0 + 2 and done.lease_token is None
    assert store.referenced_digests(["ab" * 32, "cd" * 32]) == {"ab" * 32}


def test_failures_back_off_then_die_and_retry_revives(store: Store) -> None:
    submit(store, max_attempts=2, backoff=Backoff(5, 100, 2, 0))
    job = lease_one(store)
    err = ErrorInfo("boom", "ValueError")
    [r1] = store.finish([FinishItem(job.id, job.lease_token or "", "failed", error=err)],
                        worker="w1", now=T0 + 1, rand=rand)
    failed = store.get(job.id)
    assert r1.ok and failed.state is JobState.FAILED and failed.run_at == T0 + 6
    assert failed.last_error == err and failed.failures == 1
    assert store.lease(worker="w1", kinds=["k"], limit=1, now=T0 + 5, new_token=new_token) == []
    job2 = lease_one(store, now=T0 + 6)
    store.finish([FinishItem(job2.id, job2.lease_token or "", "failed", error=err)],
                 worker="w1", now=T0 + 7, rand=rand)
    dead = store.get(job.id)
    assert dead.state is JobState.DEAD and dead.finished_at == T0 + 7 and dead.attempt == 2
    revived = store.retry(job.id, now=T0 + 8)
    assert revived.state is JobState.QUEUED and revived.failures == 0
    assert lease_one(store, now=T0 + 8).attempt == 3
    types = [e.type.value for e in store.events(job_id=job.id)]
    assert types == ["submitted", "leased", "failed", "leased", "dead", "retried", "leased"]


def test_expired_lease_counts_as_an_attempt_with_backoff(store: Store) -> None:
    submit(store, lease_ttl=10, backoff=Backoff(3, 60, 2, 0))
    job = lease_one(store)
    assert store.next_lease_expiry() == T0 + 10
    assert store.expire_leases(now=T0 + 9.99, rand=rand) == []
    [expired] = store.expire_leases(now=T0 + 10, rand=rand)
    assert expired.state is JobState.FAILED and expired.failures == 1
    assert expired.run_at == T0 + 13  # backoff applied, never zero
    assert expired.last_error is not None and expired.last_error.type == "LeaseExpired"
    assert store.events(job_id=job.id)[-1].type.value == "expired"
    assert store.next_lease_expiry() is None


def test_release_requeues_without_using_an_attempt(store: Store) -> None:
    submit(store, max_attempts=1)
    job = lease_one(store)
    [r] = store.finish([FinishItem(job.id, job.lease_token or "", "released")], worker="w1",
                       now=T0 + 1, rand=rand)
    again = store.get(job.id)
    assert r.ok and again.state is JobState.QUEUED and again.failures == 0
    assert lease_one(store, now=T0 + 1).attempt == 2


def test_cancellation_queued_leased_and_terminal(store: Store) -> None:
    queued = submit(store, kind="q")
    assert store.cancel(queued, now=T0).state is JobState.CANCELLED
    submit(store)
    job = lease_one(store)
    requested = store.cancel(job.id, now=T0 + 1)
    assert requested.state is JobState.LEASED and requested.cancel_requested
    [hb] = store.heartbeat([HeartbeatItem(job.id, job.lease_token or "")], worker="w1",
                           now=T0 + 2)
    assert hb.job is not None and hb.job.cancel_requested
    [ack] = store.finish([FinishItem(job.id, job.lease_token or "", "cancelled")],
                         worker="w1", now=T0 + 3, rand=rand)
    assert ack.ok and store.get(job.id).state is JobState.CANCELLED
    with pytest.raises(InvalidTransition):
        store.cancel(job.id, now=T0 + 4)
    with pytest.raises(InvalidTransition):
        store.retry(job.id, now=T0 + 4)


def test_cancel_requested_then_lease_expiry_ends_cancelled(store: Store) -> None:
    submit(store, lease_ttl=5)
    job = lease_one(store)
    store.cancel(job.id, now=T0 + 1)
    [gone] = store.expire_leases(now=T0 + 5, rand=rand)
    assert gone.state is JobState.CANCELLED


def test_cancellation_survives_reopening_the_store(store_url: str) -> None:
    first = open_store(store_url)
    submit(first)
    job = lease_one(first)
    first.cancel(job.id, now=T0 + 1)
    first.close()
    second = open_store(store_url)
    try:
        [hb] = second.heartbeat([HeartbeatItem(job.id, job.lease_token or "")], worker="w1",
                                now=T0 + 2)
        assert hb.job is not None and hb.job.cancel_requested
    finally:
        second.close()


def test_concurrent_complete_versus_reclaim_exactly_one_wins(store_url: str) -> None:
    stores = [open_store(store_url) for _ in range(2)]
    try:
        outcomes = {"completed": 0, "reclaimed": 0}
        for i in range(20):
            base = T0 + i * 100
            stores[0].submit([JobSpec(kind=f"race{i}", lease_ttl=10)], now=base, new_id=new_id)
            job = stores[0].lease(worker="w", kinds=[f"race{i}"], limit=1, now=base,
                                  new_token=new_token)[0]
            barrier = threading.Barrier(2)

            def complete(job=job, base=base, barrier=barrier) -> bool:
                barrier.wait()
                [r] = stores[0].finish([FinishItem(job.id, job.lease_token or "", "succeeded")],
                                       worker="w", now=base + 9.999, rand=rand)
                return r.ok

            def reclaim(job=job, base=base, barrier=barrier) -> bool:
                barrier.wait()
                return any(j.id == job.id for j in
                           stores[1].expire_leases(now=base + 10.001, rand=rand))

            with ThreadPoolExecutor(2) as pool:
                c, r = pool.submit(complete), pool.submit(reclaim)
                completed, reclaimed = c.result(), r.result()
            assert completed != reclaimed, f"round {i}: both or neither won"
            final = stores[0].get(job.id)
            assert final.state is (JobState.SUCCEEDED if completed else JobState.FAILED)
            outcomes["completed" if completed else "reclaimed"] += 1
        assert sum(outcomes.values()) == 20
    finally:
        for s in stores:
            s.close()


# -- listing, history, counts, retention, nodes ------------------------------------------


def test_list_filters_and_pages_newest_first(store: Store) -> None:
    ids = [submit(store, kind="a" if i % 2 else "b", labels={"n": str(i % 3)}) for i in range(7)]
    page = store.list_jobs(JobFilter(), limit=3)
    assert [j.id for j in page.jobs] == ids[::-1][:3] and page.next_cursor
    rest = store.list_jobs(JobFilter(), limit=10, cursor=page.next_cursor)
    assert [j.id for j in rest.jobs] == ids[::-1][3:] and rest.next_cursor is None
    assert {j.kind for j in store.list_jobs(JobFilter(kinds=("a",))).jobs} == {"a"}
    labelled = store.list_jobs(JobFilter(labels=(("n", "1"),))).jobs
    assert sorted(j.id for j in labelled) == sorted(ids[i] for i in (1, 4))
    assert store.list_jobs(JobFilter(states=(JobState.LEASED,))).jobs == []
    with pytest.raises(ValidationError):
        store.list_jobs(JobFilter(), cursor="not-a-cursor")


def test_global_event_feed_is_ordered(store: Store) -> None:
    submit(store)
    job = lease_one(store)
    feed = store.events(after=0)
    assert [e.seq for e in feed] == sorted(e.seq for e in feed)
    assert feed[-1].job_id == job.id and store.last_event_seq() == feed[-1].seq
    assert store.events(after=feed[-1].seq) == []


def test_counts_per_namespace_kind_state(store: Store) -> None:
    submit(store, kind="a")
    submit(store, kind="a")
    submit(store, kind="b", namespace="n2")
    lease_one(store, kinds=("a",))
    got = {(c.namespace, c.kind, c.state.value): c.count for c in store.counts()}
    assert got == {("default", "a", "queued"): 1, ("default", "a", "leased"): 1,
                   ("n2", "b", "queued"): 1}


def test_retention_purges_only_old_finished_jobs(store: Store) -> None:
    digest = "ef" * 32
    old = submit(store, kind="old", input_blobs=(BlobRef(digest, 1),))
    store.cancel(old, now=T0)
    fresh = submit(store, kind="fresh")
    store.cancel(fresh, now=T0 + 100)
    running = submit(store, kind="running")
    assert store.referenced_digests([digest]) == {digest}
    assert store.purge_finished(before=T0 + 50) == 1
    with pytest.raises(NotFound):
        store.get(old)
    assert store.get(fresh).state is JobState.CANCELLED
    assert store.get(running).state is JobState.QUEUED
    assert store.referenced_digests([digest]) == set()
    assert all(e.job_id != old for e in store.events(after=0))


def test_nodes_register_reregister_and_in_flight(store: Store) -> None:
    node = Node(name="laptop", kinds=("k",), host="laptop.local", version="0.1", concurrency=4,
                session="s1")
    first, released = store.register_node(node, now=T0, rand=lambda: 0.5)
    assert first.registered_at == T0 and first.last_seen == T0 and released == []
    submit(store)
    lease_one(store, worker="laptop", now=T0 + 5)
    # The same process registering again (after a coordinator restart) keeps its work.
    again, released = store.register_node(node, now=T0 + 10, rand=lambda: 0.5)
    assert again.registered_at == T0 and again.last_seen == T0 + 10
    assert (again.released, released) == (0, [])
    [listed] = store.list_nodes()
    assert listed.name == "laptop" and listed.in_flight == 1 and listed.kinds == ("k",)


def test_a_new_process_of_a_node_expires_the_old_ones_leases_at_once(store: Store) -> None:
    old = Node(name="laptop", kinds=("k",), session="old")
    store.register_node(old, now=T0, rand=lambda: 0.5)
    submit(store)
    leased = lease_one(store, worker="laptop", now=T0 + 1)
    other = submit(store)
    lease_one(store, worker="desktop", now=T0 + 1)  # another node's lease stays
    new, released = store.register_node(replace(old, session="new"), now=T0 + 2,
                                        rand=lambda: 0.5)
    assert new.released == 1 and [j.id for j in released] == [leased.id]
    job = store.get(leased.id)
    assert job.state is JobState.FAILED and job.lease_token is None
    assert store.events(job_id=leased.id)[-1].type == "expired"
    assert store.get(other).state is JobState.LEASED
    # The old process's token is stale now.
    [result] = store.finish([FinishItem(leased.id, leased.lease_token or "", "succeeded",
                                        None, None)], worker="laptop", now=T0 + 3,
                            rand=lambda: 0.5)
    assert isinstance(result.error, StaleLease | NotFound | Forbidden)
    # A node registered without a session (an older worker) never releases anything.
    store.register_node(replace(old, session=""), now=T0 + 4, rand=lambda: 0.5)
    assert store.register_node(replace(old, session="x"), now=T0 + 5,
                               rand=lambda: 0.5)[0].released == 0


def test_subscribe_reports_other_processes_changes_only(store_url: str) -> None:
    first, second = open_store(store_url), open_store(store_url)
    try:
        seen_first: list[set[str]] = []
        seen_second: list[set[str]] = []
        stop_first = first.subscribe(seen_first.append)
        stop_second = second.subscribe(seen_second.append)
        if first.backend == "sqlite":
            # One coordinator per SQLite file: nothing to hear from other processes.
            assert stop_first is None and stop_second is None
            return
        assert stop_first is not None and stop_second is not None
        # Each listener announces its (re)connection once with an empty set.
        deadline = time.monotonic() + 10
        while (not seen_first or not seen_second) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert seen_first == [set()] and seen_second == [set()]
        submit(first, kind="ping")
        while {"ping"} not in seen_second and time.monotonic() < deadline:
            time.sleep(0.02)
        assert {"ping"} in seen_second
        time.sleep(0.3)  # give a self-echo every chance to arrive
        assert seen_first == [set()]
        stop_first()
        stop_second()
    finally:
        first.close()
        second.close()


def test_following_a_purged_job_is_not_found(store: Store) -> None:
    job_id = submit(store)
    store.cancel(job_id, now=T0)
    last = store.events(job_id=job_id)[-1].seq
    assert store.events(job_id=job_id, after=last) == []
    store.purge_finished(before=T0 + 1)
    with pytest.raises(NotFound):
        store.events(job_id=job_id, after=last)


def test_an_incremental_reader_of_the_event_feed_never_skips_an_event(store_url: str) -> None:
    """Watchers follow the feed with ``after=<last seq seen>``: an event committed
    after a later-numbered one would be skipped for ever. Writers race; a reader
    follows; at the end it must have seen every event."""
    writers = [open_store(store_url) for _ in range(4)]
    reader = open_store(store_url)
    try:
        stop = threading.Event()
        seen: list[int] = []

        def follow() -> None:
            last = 0
            while True:
                final = stop.is_set()
                for event in reader.events(after=last, limit=1000):
                    seen.append(event.seq)
                    last = event.seq
                if final:
                    return

        def write(i: int) -> None:
            store = writers[i]
            for n in range(40):
                store.submit([JobSpec(kind=f"feed{i}")] * 3, now=T0 + n, new_id=new_id)
                store.lease(worker=f"w{i}", kinds=[f"feed{i}"], limit=2, now=T0 + n,
                            new_token=new_token)

        follower = threading.Thread(target=follow)
        follower.start()
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(write, range(4)))
        stop.set()
        follower.join()
        every = [e.seq for e in reader.events(after=0, limit=100_000)]
        assert len(every) == 4 * 40 * (3 + 2)
        assert sorted(set(seen)) == every, f"the reader skipped {len(set(every) - set(seen))}"
    finally:
        for s in (*writers, reader):
            s.close()


def _counted(store: Store) -> dict[tuple[str, str, str], int]:
    return {(c.namespace, c.kind, c.state.value): c.count for c in store.counts()}


def _counted_by_rows(store: Store) -> dict[tuple[str, str, str], int]:
    jobs = store.list_jobs(JobFilter(), limit=1000).jobs
    return dict(Counter((j.namespace, j.kind, j.state.value) for j in jobs))


def test_counts_follow_every_kind_of_change(store: Store) -> None:
    assert store.counts() == []  # read before any change: then kept up to date
    for _ in range(3):
        submit(store, kind="a")
    submit(store, kind="b", namespace="n2")
    done = lease_one(store, kinds=("a",))
    store.finish([FinishItem(done.id, done.lease_token or "", "succeeded")],
                 worker="w1", now=T0 + 1, rand=lambda: 0.5)
    failing = lease_one(store, kinds=("a",))
    store.finish([FinishItem(failing.id, failing.lease_token or "", "failed",
                             error=ErrorInfo("boom"))], worker="w1", now=T0 + 1,
                 rand=lambda: 0.5)
    lease_one(store, kinds=("a",))
    store.expire_leases(now=T0 + 10_000, rand=lambda: 0.5)
    store.cancel(submit(store, kind="b", namespace="n2"), now=T0 + 2)
    assert _counted(store) == _counted_by_rows(store)
    assert store.purge_finished(before=T0 + 1_000_000) == 2
    assert _counted(store) == _counted_by_rows(store)
    assert ("default", "a", "succeeded") not in _counted(store)


def test_counts_see_changes_made_through_another_connection(store: Store, store_url: str
                                                            ) -> None:
    submit(store, kind="a")
    assert _counted(store) == {("default", "a", "queued"): 1}
    other = open_store(store_url)  # e.g. a second process on the same database
    try:
        submit(other, kind="a")
        submit(other, kind="c")
    finally:
        other.close()
    assert _counted(store) == {("default", "a", "queued"): 2, ("default", "c", "queued"): 1}

"""A Hypothesis state machine drives the queue through the Store port and checks it
against a small model, on a SQLite file and on a PostgreSQL database.

The conformance suite pins behaviours one at a time; this looks for the sequences
nobody wrote down: a stale token after a restart, a cancel request followed by a
failure, a late heartbeat racing the reaper, an operator retry of a job that had been
cancelled... Every rule is applied to the real store and to the model
(:class:`Expected` per job). After every step the store must agree with the model and
the history must keep the promises of the README ("What you can rely on"):

- every job's state, attempt, failures, worker, lease token and expiry match the model,
  and every acknowledged submit exists, also after the store is closed and reopened;
- a stale token (old lease, another job's, never issued, or past its expiry) is refused
  and changes nothing, and the same token under another worker's name is forbidden;
- each change appends exactly the events the model expects, no job has two
  ``succeeded`` events, and a terminal job stays terminal (only an operator retry
  brings a ``dead`` job back);
- attempts never decrease; leasing follows priority, then ``run_at``, then submission.

The clock is fake (``self.now``): ``tick`` advances it by a few seconds, and
``until_expiry`` to exactly a lease's expiry or just before, the boundary a late
heartbeat must not cross. Randomness is fixed, ids and tokens are counters. Each run
uses its own kind and namespace on the test's database, so runs do not see each
other's jobs.

The first bug this found: a failure reported after a cancel request made the job
``failed`` or ``dead`` with ``cancel_requested`` still set, so it ran again, and an
operator retry of it was cancelled at its first heartbeat
(tests/integration/test_fuzz_regressions.py).
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from hearth.domain.jobs import ErrorInfo, Job, JobSpec, JobState, Progress, Result
from hearth.domain.retry import Backoff
from hearth.errors import Forbidden, InvalidTransition, StaleLease
from hearth.store import FinishItem, HeartbeatItem, JobFilter, Store, open_store
from hearth.store.port import Grant, OutcomeKind

from . import FuzzBudget

S = JobState
T0 = 1_800_000_000.0
#: Small, so that retries come due within a few ticks. With rand fixed at 0.5 there is
#: no jitter: a failed job waits 1, 2, then 4 s.
BACKOFF = Backoff(initial=1.0, max=4.0, multiplier=2.0, jitter=0.1)
WORKERS = ("w1", "w2")
NEVER_ISSUED = "t-never-issued"

_runs = itertools.count()
_ids = itertools.count()
_tokens = itertools.count()


def new_id() -> str:
    # Zero-padded: ids sort in submission order, like the real ones.
    return f"j_fz{next(_ids):012d}"


def new_token() -> str:
    return f"t{next(_tokens):08d}"


def rand() -> float:
    return 0.5


@dataclass
class Expected:
    """What the model says about one job."""

    id: str
    order: int
    priority: int
    run_at: float
    max_attempts: int
    lease_ttl: float
    timeout: float | None
    state: JobState = S.QUEUED
    attempt: int = 0
    failures: int = 0
    worker: str | None = None
    token: str | None = None
    leased_at: float | None = None
    expires: float | None = None
    cancel_requested: bool = False
    progress: Progress | None = None
    #: Every token this job was ever leased with (the current one last).
    tokens: list[str] = field(default_factory=list)

    def holds(self, token: str, now: float) -> bool:
        """Whether ``token`` holds a live lease on this job at ``now``."""
        return (self.state is S.LEASED and token == self.token
                and self.expires is not None and now < self.expires)

    def end_lease(self) -> None:
        self.token = None
        self.expires = None


class QueueMachine(RuleBasedStateMachine):
    """One run: a fresh kind and namespace on the store at ``url``."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        run = next(_runs)
        self.kind = f"fz.k{run}"
        self.namespace = f"fz{run}"
        self.store: Store = open_store(url)
        self.now = T0
        self.jobs: dict[str, Expected] = {}
        self.keys: dict[str, str] = {}
        self.submitted = 0
        #: Events the model expects since the last check: (job id, event type).
        self.pending: list[tuple[str, str]] = []
        self.seen_seq = self.store.last_event_seq()
        #: From the history alone: the last event type per job, succeeded counts.
        self.last_event: dict[str, str] = {}
        self.succeeded = Counter[str]()
        self.highest_attempt: dict[str, int] = {}

    def teardown(self) -> None:
        self.store.close()

    # -- helpers ------------------------------------------------------------------------
    def _pick_job(self, data: st.DataObject) -> Expected:
        """Mostly a leased job (where the interesting races are), else any job."""
        leased = sorted(j.id for j in self.jobs.values() if j.state is S.LEASED)
        if leased and data.draw(st.sampled_from([True, True, False]), label="leased"):
            return self.jobs[data.draw(st.sampled_from(leased), label="job")]
        return self.jobs[data.draw(st.sampled_from(sorted(self.jobs)), label="job")]

    def _pick_token(self, data: st.DataObject, job: Expected) -> str:
        """Mostly the job's current token, else a stale, foreign or unknown one."""
        if job.token is not None and data.draw(st.sampled_from([True, True, False]),
                                               label="current token"):
            return job.token
        others = sorted({t for j in self.jobs.values() for t in j.tokens} - {job.token})
        return data.draw(st.sampled_from([NEVER_ISSUED, *others]), label="stale token")

    def _pick_worker(self, data: st.DataObject, job: Expected) -> str:
        """Mostly the worker holding the job's lease, else any."""
        if job.worker is not None and data.draw(st.sampled_from([True, True, False]),
                                                label="lease holder"):
            return job.worker
        return data.draw(st.sampled_from(WORKERS), label="worker")

    def _unchanged(self, before: Job) -> None:
        after = self.store.get(before.id)
        assert after == before, f"a refused call changed job {before.id}"

    def _ended_by_failure(self, job: Expected, *, retryable: bool, event: str,
                          stored: Job) -> None:
        """The model's side of the one retry rule (a failed attempt)."""
        job.failures += 1
        job.end_lease()
        if not retryable or (job.max_attempts and job.failures >= job.max_attempts):
            job.state = S.DEAD
            self.pending.append((job.id, "dead"))
            return
        job.state = S.FAILED
        # Backoff is never zero and never past its cap.
        assert self.now + BACKOFF.initial / 2 <= stored.run_at <= self.now + BACKOFF.max
        job.run_at = stored.run_at
        self.pending.append((job.id, event))

    def _cancelled(self, job: Expected) -> None:
        job.state = S.CANCELLED
        job.cancel_requested = True
        job.end_lease()
        self.pending.append((job.id, "cancelled"))

    # -- rules --------------------------------------------------------------------------
    @initialize(data=st.data(), count=st.integers(1, 3), leases=st.integers(0, 4))
    def start(self, data: st.DataObject, count: int, leases: int) -> None:
        """Every run starts with some jobs, some of them leased: Hypothesis tries runs
        with subsets of the rules, and a run with no submit or lease tests little."""
        self.submit(data, count)
        self.submit(data, count)
        if leases:
            self.lease(worker=data.draw(st.sampled_from(WORKERS), label="worker"), limit=leases)

    @rule(data=st.data(), count=st.integers(1, 3))
    def submit(self, data: st.DataObject, count: int) -> None:
        """Submit jobs; some go straight to a waiting worker (a grant: the hand-over
        of a submit to an idle lease poll), which must be exactly a lease."""
        specs = []
        grants: dict[int, Grant] = {}
        for index in range(count):
            grant_to = data.draw(st.sampled_from([None, None, *WORKERS]), label="grant")
            if grant_to is not None:
                grants[index] = Grant(grant_to, new_token())
            specs.append(JobSpec(
                kind=self.kind,
                namespace=self.namespace,
                priority=data.draw(st.sampled_from([0, 0, 1]), label="priority"),
                delay=data.draw(st.sampled_from([0.0, 0.0, 2.0]), label="delay"),
                max_attempts=data.draw(st.sampled_from([1, 2, 3, 0]), label="max_attempts"),
                lease_ttl=data.draw(st.sampled_from([5.0, 10.0]), label="lease_ttl"),
                timeout=data.draw(st.sampled_from([None, None, 7.0]), label="timeout"),
                idempotency_key=data.draw(st.sampled_from([None, None, "a", "b"]),
                                          label="key"),
                backoff=BACKOFF,
            ))
        results = self.store.submit(specs, now=self.now, new_id=new_id, grants=grants)
        assert len(results) == len(specs)
        for index, (spec, res) in enumerate(zip(specs, results, strict=True)):
            key = spec.idempotency_key
            if key is not None and key in self.keys:
                assert not res.created and res.job.id == self.keys[key]
                continue
            assert res.created and res.job.id not in self.jobs
            job = self.jobs[res.job.id] = Expected(
                id=res.job.id, order=self.submitted, priority=spec.priority,
                run_at=self.now + spec.delay, max_attempts=spec.max_attempts,
                lease_ttl=spec.lease_ttl, timeout=spec.timeout)
            self.submitted += 1
            if key is not None:
                self.keys[key] = res.job.id
            self.pending.append((res.job.id, "submitted"))
            grant = grants.get(index)
            if grant is None or job.run_at > self.now:
                assert res.job.state is S.QUEUED and res.job.attempt == 0
                continue
            expires = self.now + job.lease_ttl
            if job.timeout is not None:
                expires = min(expires, self.now + job.timeout)
            assert res.job.state is S.LEASED and res.job.worker == grant.worker
            assert res.job.lease_token == grant.token and res.job.attempt == 1
            assert res.job.lease_expires_at == expires
            job.state, job.attempt, job.worker = S.LEASED, 1, grant.worker
            job.token, job.leased_at, job.expires = grant.token, self.now, expires
            job.tokens.append(grant.token)
            self.pending.append((job.id, "leased"))

    @rule(worker=st.sampled_from(WORKERS), limit=st.integers(1, 3))
    def lease(self, worker: str, limit: int) -> None:
        due = [j for j in self.jobs.values()
               if j.state in (S.QUEUED, S.FAILED) and j.run_at <= self.now]
        due.sort(key=lambda j: (-j.priority, j.run_at, j.order))
        expected = [j.id for j in due[:limit]]
        got = self.store.lease(worker=worker, kinds=[self.kind], limit=limit, now=self.now,
                               new_token=new_token)
        assert [j.id for j in got] == expected, "lease order: priority, run_at, submission"
        issued = {t for j in self.jobs.values() for t in j.tokens}
        for leased in got:
            job = self.jobs[leased.id]
            assert leased.state is S.LEASED and leased.worker == worker
            assert leased.attempt == job.attempt + 1
            assert leased.lease_token and leased.lease_token not in issued
            expires = self.now + job.lease_ttl
            if job.timeout is not None:
                expires = min(expires, self.now + job.timeout)
            assert leased.lease_expires_at == expires
            job.state, job.attempt, job.worker = S.LEASED, leased.attempt, worker
            job.token, job.leased_at, job.expires = leased.lease_token, self.now, expires
            job.tokens.append(leased.lease_token)
            job.progress = None
            self.pending.append((job.id, "leased"))

    @precondition(lambda self: self.jobs)
    @rule(data=st.data(), count=st.integers(1, 3))
    def heartbeat(self, data: st.DataObject, count: int) -> None:
        items: list[HeartbeatItem] = []
        worker = ""
        for _ in range(count):
            job = self._pick_job(data)
            worker = worker or self._pick_worker(data, job)
            progress = data.draw(st.sampled_from([None, Progress(10.0), Progress(50.0, "m")]),
                                 label="progress")
            items.append(HeartbeatItem(job.id, self._pick_token(data, job), progress))
        before = {item.job_id: self.store.get(item.job_id) for item in items}
        results = self.store.heartbeat(items, worker=worker, now=self.now)
        assert [r.job_id for r in results] == [i.job_id for i in items]
        for item, res in zip(items, results, strict=True):
            job = self.jobs[item.job_id]
            if not job.holds(item.token, self.now):
                assert isinstance(res.error, StaleLease), res
                continue
            if worker != job.worker:
                assert isinstance(res.error, Forbidden), res
                continue
            assert res.ok and res.job is not None, res
            expires = self.now + job.lease_ttl
            if job.timeout is not None and job.leased_at is not None:
                expires = min(expires, job.leased_at + job.timeout)
            job.expires = max(expires, job.expires or expires)  # never shortened
            assert res.job.lease_expires_at == job.expires
            assert res.job.cancel_requested == job.cancel_requested
            if item.progress is not None and item.progress != job.progress:
                self.pending.append((job.id, "progress"))
            if item.progress is not None:
                job.progress = item.progress
        for job_id, old in before.items():
            if not any(r.ok for r in results if r.job_id == job_id):
                self._unchanged(old)

    def _finish(self, data: st.DataObject, count: int, outcomes: list[OutcomeKind]) -> None:
        """A worker's batch of outcomes; each item is answered on its own."""
        items: list[FinishItem] = []
        worker = ""
        for _ in range(count):
            job = self._pick_job(data)
            worker = worker or self._pick_worker(data, job)
            outcome = data.draw(st.sampled_from(outcomes), label="outcome")
            error = None
            if outcome == "failed":
                error = ErrorInfo("boom", retryable=data.draw(st.sampled_from([True, True, False]),
                                                               label="retryable"))
            result = Result(b"ok") if outcome == "succeeded" else None
            items.append(FinishItem(job.id, self._pick_token(data, job), outcome,
                                    result=result, error=error))
        before = {item.job_id: self.store.get(item.job_id) for item in items}
        results = self.store.finish(items, worker=worker, now=self.now, rand=rand)
        assert [r.job_id for r in results] == [i.job_id for i in items]
        for item, res in zip(items, results, strict=True):
            job = self.jobs[item.job_id]
            if not job.holds(item.token, self.now):
                assert isinstance(res.error, StaleLease), res
                continue
            if worker != job.worker:
                assert isinstance(res.error, Forbidden), res
                continue
            assert res.ok and res.job is not None, res
            if item.outcome == "succeeded":
                job.state = S.SUCCEEDED
                job.end_lease()
                self.pending.append((job.id, "succeeded"))
            elif item.outcome == "failed":
                assert item.error is not None
                if job.cancel_requested:
                    # docs/jobs.md: once a cancel was requested, the job "never becomes
                    # failed"; a failed attempt ends it as cancelled, like an expiry.
                    self._cancelled(job)
                else:
                    self._ended_by_failure(job, retryable=item.error.retryable,
                                           event="failed", stored=res.job)
            elif item.outcome == "cancelled" or job.cancel_requested:
                self._cancelled(job)
            else:  # released: queued again at once, no failure counted
                job.state, job.run_at = S.QUEUED, self.now
                job.end_lease()
                self.pending.append((job.id, "released"))
            assert res.job.state is job.state, (res.job.state, job)
        for job_id, old in before.items():
            if not any(r.ok for r in results if r.job_id == job_id):
                self._unchanged(old)

    @precondition(lambda self: self.jobs)
    @rule(data=st.data(), count=st.integers(1, 3))
    def complete(self, data: st.DataObject, count: int) -> None:
        self._finish(data, count, ["succeeded"])

    @precondition(lambda self: self.jobs)
    @rule(data=st.data(), count=st.integers(1, 3))
    def fail(self, data: st.DataObject, count: int) -> None:
        self._finish(data, count, ["failed"])

    @precondition(lambda self: self.jobs)
    @rule(data=st.data(), count=st.integers(1, 3))
    def stop(self, data: st.DataObject, count: int) -> None:
        """The worker acknowledges a cancel, or hands jobs back at shutdown; mixed with
        the other outcomes in one batch."""
        self._finish(data, count, ["cancelled", "released", "succeeded", "failed"])

    @rule(seconds=st.sampled_from([0.5, 1.0, 1.0, 2.0, 4.0, 8.0]))
    def tick(self, seconds: float) -> None:
        """Time passes (nothing runs: leases may now be past their expiry)."""
        self.now += seconds

    def _future_expiries(self) -> list[float]:
        return sorted({j.expires for j in self.jobs.values()
                       if j.state is S.LEASED and j.expires is not None and j.expires > self.now})

    @precondition(lambda self: self._future_expiries())
    @rule(data=st.data(), early=st.booleans())
    def until_expiry(self, data: st.DataObject, early: bool) -> None:
        """Time passes to exactly a lease's expiry (or half a second before it): the
        boundary where a heartbeat stops being accepted."""
        at = data.draw(st.sampled_from(self._future_expiries()), label="expiry")
        self.now = max(self.now, at - 0.5) if early else at

    @rule()
    def expire(self) -> None:
        """The reaper's round: every lease past its expiry ends."""
        ending = {j.id for j in self.jobs.values()
                  if j.state is S.LEASED and j.expires is not None and j.expires <= self.now}
        got = [j for j in self.store.expire_leases(now=self.now, rand=rand)
               if j.namespace == self.namespace]
        assert {j.id for j in got} == ending
        for stored in got:
            job = self.jobs[stored.id]
            if job.cancel_requested:
                self._cancelled(job)
            else:
                assert job.leased_at is not None
                timed_out = job.timeout is not None and job.leased_at + job.timeout <= self.now
                self._ended_by_failure(job, retryable=True, stored=stored,
                                       event="timed_out" if timed_out else "expired")
            assert stored.state is job.state

    @precondition(lambda self: self.jobs)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        job = self._pick_job(data)
        before = self.store.get(job.id)
        if job.state.terminal or (job.state is S.LEASED and job.cancel_requested):
            with pytest.raises(InvalidTransition):
                self.store.cancel(job.id, now=self.now)
            self._unchanged(before)
            return
        got = self.store.cancel(job.id, now=self.now)
        if job.state is S.LEASED:
            job.cancel_requested = True
            self.pending.append((job.id, "cancel_requested"))
        else:
            self._cancelled(job)
        assert got.state is job.state and got.cancel_requested

    @precondition(lambda self: self.jobs)
    @rule(data=st.data())
    def retry(self, data: st.DataObject) -> None:
        job = self._pick_job(data)
        before = self.store.get(job.id)
        if job.state not in (S.DEAD, S.FAILED):
            with pytest.raises(InvalidTransition):
                self.store.retry(job.id, now=self.now)
            self._unchanged(before)
            return
        got = self.store.retry(job.id, now=self.now)
        job.state, job.run_at, job.failures = S.QUEUED, self.now, 0
        self.pending.append((job.id, "retried"))
        assert got.state is S.QUEUED and got.failures == 0
        # A retried job starts afresh: nothing of an earlier cancel request is left to
        # cancel its next run.
        assert not got.cancel_requested

    @rule()
    def restart(self) -> None:
        """The coordinator stops and starts again: close and reopen the same database."""
        self.store.close()
        self.store = open_store(self.url)

    # -- invariants ---------------------------------------------------------------------
    @invariant()
    def store_agrees_with_the_model(self) -> None:
        page = self.store.list_jobs(JobFilter(namespace=self.namespace), limit=1000)
        stored = {job.id: job for job in page.jobs}
        assert set(stored) == set(self.jobs), "acknowledged submits and stored jobs differ"
        for job_id, job in self.jobs.items():
            got = stored[job_id]
            assert (got.state, got.attempt, got.failures, got.cancel_requested) == (
                job.state, job.attempt, job.failures, job.cancel_requested), (got, job)
            assert got.worker == job.worker
            assert got.lease_token == job.token
            assert got.lease_expires_at == job.expires
            if job.state in (S.QUEUED, S.FAILED):
                assert got.run_at == job.run_at
            assert got.attempt >= self.highest_attempt.get(job_id, 0), "attempt went down"
            self.highest_attempt[job_id] = got.attempt
            assert (got.finished_at is not None) == got.state.terminal
        # /metrics' job counts (kept in memory on SQLite) agree with the rows.
        counts = {(c.kind, c.state): c.count for c in self.store.counts()
                  if c.namespace == self.namespace}
        assert counts == Counter((j.kind, j.state) for j in stored.values()), counts

    @invariant()
    def history_is_what_the_model_expects(self) -> None:
        events = self.store.events(after=self.seen_seq, namespace=self.namespace,
                                   limit=10_000)
        got = [(e.job_id, e.type.value) for e in events]
        assert Counter(got) == Counter(self.pending), (got, self.pending)
        self.pending.clear()
        for ev in events:
            self.seen_seq = max(self.seen_seq, ev.seq)
            previous = self.last_event.get(ev.job_id)
            if previous in ("succeeded", "cancelled"):
                raise AssertionError(f"job {ev.job_id} changed after {previous}: {ev}")
            if previous == "dead":
                assert ev.type.value == "retried", f"a dead job changed: {ev}"
            if ev.type.value == "succeeded":
                self.succeeded[ev.job_id] += 1
                assert self.succeeded[ev.job_id] == 1, "two succeeded events"
            self.last_event[ev.job_id] = ev.type.value


def _run(url: str, budget: FuzzBudget) -> None:
    factory: Callable[[], QueueMachine] = lambda: QueueMachine(url)  # noqa: E731
    # Shrinking a failing run can take minutes: CI reports the failing steps as found
    # (with a @reproduce_failure blob); `make fuzz` shrinks them to the fewest.
    phases = list(Phase) if budget.long else [Phase.explicit, Phase.generate]
    run_state_machine_as_test(factory, settings=settings(
        max_examples=budget.machine_runs,
        stateful_step_count=budget.machine_steps,
        phases=phases,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    ))


def test_queue_matches_the_model_on_sqlite(sqlite_url: str, fuzz_budget: FuzzBudget) -> None:
    _run(sqlite_url, fuzz_budget)


@pytest.mark.postgres
def test_queue_matches_the_model_on_postgres(pg_url: str, fuzz_budget: FuzzBudget) -> None:
    _run(pg_url, fuzz_budget)


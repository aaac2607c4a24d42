"""The SQL Store: every Store-port operation, written once for SQLite and PostgreSQL.

Each operation is one transaction: load the rows it changes under a lock (SQLite's
single ``BEGIN IMMEDIATE`` writer; PostgreSQL ``FOR UPDATE``, ``SKIP LOCKED`` for
leasing and reaping), compute the new state with the pure transitions of
:mod:`hearth.domain.transitions`, write the rows and append the events, commit.
No state rule is decided here. Never build SQL from caller strings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import (
    Double,
    and_,
    bindparam,
    delete,
    func,
    insert,
    literal_column,
    or_,
    select,
    text,
    update,
)

from hearth.domain import transitions as tr
from hearth.domain.jobs import LEASABLE_STATES, ErrorInfo, Event, Job, JobSpec, JobState, Result
from hearth.errors import Conflict, Forbidden, HearthError, NotFound, ValidationError
from hearth.store.port import (
    FinishItem,
    Grant,
    HeartbeatItem,
    ItemResult,
    JobFilter,
    Node,
    Page,
    QueueCount,
    Submitted,
)
from hearth.store.sql import codec
from hearth.store.sql.backend import Backend, SqliteBackend
from hearth.store.sql.codec import STATE_TEXT
from hearth.store.sql.schema import job_blobs, job_events, jobs, nodes
from hearth.store.sql.security import SqlSecurity
from hearth.store.sql.tally import Delta, Tally
from hearth.store.sql.tx import Tx

_Item = HeartbeatItem | FinishItem
#: A job as loaded, as a transition left it, and the event to append.
Change = tuple[Job, Job, Event | None]
_LEASABLE = (JobState.QUEUED.value, JobState.FAILED.value)
_TERMINAL = (JobState.SUCCEEDED.value, JobState.DEAD.value, JobState.CANCELLED.value)
# State predicates are SQL literals, never bound parameters: only a literal lets the
# planner prove that a query falls inside a partial index (SQLite always, PostgreSQL
# for the generic plans of prepared statements). These match schema.py's indexes.
_IS_LEASABLE = text("jobs.state IN ('queued', 'failed')")
_IS_LEASED = text("jobs.state = 'leased'")
# Leasing must walk ix_jobs_lease in its (priority desc, run_at, seq) order, never sort.
# SQLite's documented unary "+" keeps ix_jobs_due out of the choice; on PostgreSQL it
# is a no-op.
_RUN_AT_UNINDEXED = literal_column("+jobs.run_at", Double)
_JOB_COLUMNS = [jobs.c[name] for name in codec.JOB_COLUMNS]

# Leasing one kind, built once (SQLAlchemy then reuses its compiled form without
# computing a new cache key for every call); the namespace filter is its own variant.
_LEASE_KIND = (
    select(jobs.c.seq, *_JOB_COLUMNS)
    .where(jobs.c.kind == bindparam("kind"), _IS_LEASABLE,
           bindparam("now", type_=Double) >= _RUN_AT_UNINDEXED)
    .order_by(jobs.c.priority.desc(), jobs.c.run_at, jobs.c.seq)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True)
)
_LEASE_KIND_IN = _LEASE_KIND.where(jobs.c.namespace.in_(bindparam("namespaces",
                                                                   expanding=True)))
_TOUCH_NODE = update(nodes).where(nodes.c.name == bindparam("node")).values(
    last_seen=bindparam("seen"))
#: Positions in a leasing row (``seq`` first, then :data:`codec.JOB_COLUMNS`).
_PRIORITY = 1 + codec.JOB_COLUMNS.index("priority")
_RUN_AT = 1 + codec.JOB_COLUMNS.index("run_at")
_EXPIRED = (
    select(*_JOB_COLUMNS)
    .where(_IS_LEASED, jobs.c.lease_expires_at <= bindparam("now", type_=Double))
    .order_by(jobs.c.lease_expires_at)
    .limit(bindparam("limit"))
    .with_for_update(skip_locked=True)
)
# One kind at a time: the MIN then reads the first entry of ix_jobs_due for it.
_NEXT_WAKEUP = select(func.min(jobs.c.run_at)).where(
    jobs.c.kind == bindparam("kind"), _IS_LEASABLE, jobs.c.run_at > bindparam("now", type_=Double))
_NEXT_EXPIRY = select(func.min(jobs.c.lease_expires_at)).where(_IS_LEASED)
_IN_FLIGHT = select(jobs.c.worker, func.count()).where(_IS_LEASED).group_by(jobs.c.worker)
_LAST_SEQ = select(func.max(job_events.c.seq))
_PING: Any = select(literal_column("1"))
_COUNTS = select(jobs.c.namespace, jobs.c.kind, jobs.c.state, func.count()).group_by(
    jobs.c.namespace, jobs.c.kind, jobs.c.state)

class SqlStore(SqlSecurity):
    """Implements :class:`hearth.store.port.Store` on a :class:`Backend` (certificates
    and API tokens in :mod:`hearth.store.sql.security`)."""

    def __init__(self, backend: Backend) -> None:
        self._b = backend
        self.backend = backend.name
        self.local = backend.name == "sqlite"
        #: Exact counts kept in memory, on the store that is its file's only writer.
        self._tally = Tally() if isinstance(backend, SqliteBackend) else None
        # Loading jobs by id, built once per store (the id list is one parameter);
        # locked rows are taken in id order, so two batches never deadlock.
        by_ids = (select(*_JOB_COLUMNS).where(backend.id_in(jobs.c.id, "ids"))
                  .order_by(jobs.c.id))
        self._by_ids = {False: by_ids, True: by_ids.with_for_update()}
        for stmt in (*self._by_ids.values(), _LEASE_KIND, _TOUCH_NODE, _NEXT_WAKEUP,
                     _NEXT_EXPIRY, _IN_FLIGHT, _LAST_SEQ, _EXPIRED, _PING):
            backend.compiler.prepare(stmt)

    # -- shared writes -------------------------------------------------------------------
    def _save(self, tx: Tx, changed: Sequence[Change]) -> None:
        """Write changed jobs (only the columns that changed), then append their
        events: always the transaction's last statements (see :meth:`_append_events`)."""
        if not changed:
            return
        # A job changed twice in one batch is written once, from its first old value
        # to its last new one, so grouping by column set cannot reorder its writes.
        spans: dict[str, tuple[Job, Job]] = {}
        for old, new, _ in changed:
            first = spans.get(new.id)
            spans[new.id] = (old if first is None else first[0], new)
        by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        delta = self._delta(tx)
        for old, new in spans.values():
            if delta is not None and old.state is not new.state:
                delta.move(new.namespace, new.kind, STATE_TEXT[old.state],
                           STATE_TEXT[new.state])
            row = codec.job_changes(old, new)
            if len(row) > 1:
                by_columns.setdefault(tuple(row), []).append(row)
        for rows in by_columns.values():
            self._b.rows.update(tx, jobs, rows)
        blob_rows = [
            {"job_id": job.id, "digest": digest}
            for _, job, _ in changed
            if job.result is not None
            for digest in {b.digest for b in job.result.blobs}
        ]
        if blob_rows:
            self._insert_blob_refs(tx, blob_rows)
        leasable = {job.kind for _, job, _ in changed if job.state in LEASABLE_STATES}
        if leasable:  # other coordinators only need waking for work they can lease
            self._b.notify(tx, leasable)
        self._append_events(tx, [ev for _, _, ev in changed if ev is not None])

    def _append_events(self, tx: Tx, events: Sequence[Event]) -> None:
        """Append history so that ``seq`` order is commit order (watchers follow the
        feed with ``after=<last seq>`` and must never skip an event). The backend
        serialises appends until commit; nothing may be waited on after this."""
        if events:
            self._b.order_events(tx)
            self._b.rows.insert(tx, job_events, [codec.event_to_row(e) for e in events])

    def _insert_blob_refs(self, tx: Tx, rows: list[dict[str, str]]) -> None:
        existing = {
            (job_id, digest)
            for job_id, digest in tx.rows(
                select(job_blobs.c.job_id, job_blobs.c.digest).where(
                    job_blobs.c.job_id.in_(sorted({r["job_id"] for r in rows}))))
        }
        fresh = [r for r in rows if (r["job_id"], r["digest"]) not in existing]
        self._b.rows.insert(tx, job_blobs, fresh)

    def _load(self, tx: Tx, ids: Iterable[str], *, lock: bool) -> dict[str, Job]:
        wanted = sorted(set(ids))
        if not wanted:
            return {}
        rows = tx.rows(self._by_ids[lock], {"ids": self._b.id_list(wanted)})
        return {row[0]: codec.job_from_values(row) for row in rows}

    def _load_one(self, tx: Tx, job_id: str, *, lock: bool) -> Job:
        found = self._load(tx, [job_id], lock=lock).get(job_id)
        if found is None:
            raise NotFound(f"job {job_id} does not exist (it may have been purged by retention)")
        return found

    # -- jobs ----------------------------------------------------------------------------
    def submit(self, specs: Sequence[JobSpec], *, now: float,
               new_id: Callable[[], str],
               grants: Mapping[int, Grant] | None = None) -> list[Submitted]:
        # Two transactions racing on one idempotency key: the loser's insert violates
        # the unique constraint; run it again and it finds the winner's job.
        for _ in range(3):
            try:
                return self._submit(specs, now, new_id, grants or {})
            except Conflict:
                if not any(s.idempotency_key for s in specs):
                    raise
        return self._submit(specs, now, new_id, grants or {})

    def _submit(self, specs: Sequence[JobSpec], now: float, new_id: Callable[[], str],
                grants: Mapping[int, Grant]) -> list[Submitted]:
        with self._b.write() as tx:
            keyed = {(s.namespace, s.idempotency_key) for s in specs if s.idempotency_key}
            existing: dict[tuple[str, str], Job] = {}
            if keyed:
                clauses = [and_(jobs.c.namespace == ns, jobs.c.idempotency_key == key)
                           for ns, key in keyed]
                for row in tx.rows(select(*_JOB_COLUMNS).where(or_(*clauses))):
                    found = codec.job_from_values(row)
                    existing[(found.namespace, found.idempotency_key or "")] = found
            out: list[Submitted] = []
            created: list[Job] = []
            events: list[Event] = []
            granted: set[str] = set()
            for index, spec in enumerate(specs):
                key = (spec.namespace, spec.idempotency_key) if spec.idempotency_key else None
                if key is not None and key in existing:
                    out.append(Submitted(existing[key], created=False))
                    continue
                job, ev = tr.create(spec, new_id(), now)
                events.append(ev)
                grant = grants.get(index)
                if grant is not None and job.run_at <= now:
                    job, ev = tr.lease(job, worker=grant.worker, token=grant.token, now=now)
                    events.append(ev)
                    granted.add(grant.worker)
                created.append(job)
                out.append(Submitted(job, created=True))
                if key is not None:
                    existing[key] = job
            if created:
                self._b.rows.insert(tx, jobs, [codec.job_to_row(j) for j in created])
                delta = self._delta(tx)
                if delta is not None:
                    for j in created:
                        delta.add(j.namespace, j.kind, STATE_TEXT[j.state])
                refs = [{"job_id": j.id, "digest": d} for j in created
                        for d in {b.digest for b in j.input_blobs}]
                self._b.rows.insert(tx, job_blobs, refs)
                for worker in sorted(granted):
                    self._touch(tx, worker, now)
                leasable = {j.kind for j in created if j.state in LEASABLE_STATES}
                if leasable:  # other coordinators only need waking for work they can lease
                    self._b.notify(tx, leasable)
                self._append_events(tx, events)
            return out

    def get(self, job_id: str) -> Job:
        with self._b.read() as tx:
            return self._load_one(tx, job_id, lock=False)

    def list_jobs(self, flt: JobFilter, *, limit: int = 100, cursor: str | None = None) -> Page:
        if not 1 <= limit <= 1000:
            raise ValidationError("limit must be between 1 and 1000")
        query = select(jobs.c.seq, *_JOB_COLUMNS).order_by(jobs.c.seq.desc()).limit(limit + 1)
        if cursor is not None:
            if not cursor.startswith("c") or not cursor[1:].isdigit():
                raise ValidationError(f"cursor {cursor[:40]!r} is not valid: pass back the "
                                      "next_cursor of the previous page")
            query = query.where(jobs.c.seq < int(cursor[1:]))
        if flt.namespace:
            query = query.where(jobs.c.namespace == flt.namespace)
        if flt.kinds:
            query = query.where(jobs.c.kind.in_(flt.kinds))
        if flt.states:
            query = query.where(jobs.c.state.in_([s.value for s in flt.states]))
        if flt.worker:
            query = query.where(jobs.c.worker == flt.worker)
        if flt.parent:
            query = query.where(jobs.c.parent == flt.parent)
        for key, value in flt.labels:
            query = query.where(self._b.label_equals(key, value))
        with self._b.read() as tx:
            rows = tx.rows(query)
        more = len(rows) > limit
        rows = rows[:limit]
        found = [codec.job_from_values(r[1:]) for r in rows]
        return Page(found, f"c{rows[-1][0]}" if more and rows else None)

    def events(self, *, job_id: str | None = None, after: int = 0, limit: int = 1000,
               namespace: str | None = None) -> list[Event]:
        query = select(job_events).where(job_events.c.seq > after)
        if job_id is not None:
            query = query.where(job_events.c.job_id == job_id)
        if namespace is not None:
            query = query.where(job_events.c.namespace == namespace)
        query = query.order_by(job_events.c.seq).limit(limit)
        with self._b.read() as tx:
            rows = tx.mappings(query)
            if job_id is not None and not rows:
                self._load_one(tx, job_id, lock=False)  # NotFound once purged
        return [codec.event_from_row(r) for r in rows]

    def last_event_seq(self) -> int:
        with self._b.read() as tx:
            return int(tx.scalar(_LAST_SEQ) or 0)

    # -- leasing and outcomes ------------------------------------------------------------
    def lease(self, *, worker: str, kinds: Sequence[str], limit: int, now: float,
              new_token: Callable[[], str], namespaces: Sequence[str] = ()) -> list[Job]:
        if limit < 1 or not kinds:
            return []
        with self._b.write() as tx:
            self._b.relax(tx)
            candidates: list[Any] = []
            query = _LEASE_KIND_IN if namespaces else _LEASE_KIND
            params: dict[str, Any] = {"now": now, "limit": limit}
            if namespaces:
                params["namespaces"] = list(namespaces)
            for kind in sorted(set(kinds)):
                candidates.extend(tx.rows(query, {**params, "kind": kind}))
            if len(kinds) > 1:
                candidates.sort(key=lambda r: (-r[_PRIORITY], r[_RUN_AT], r[0]))
            changed = []
            for r in candidates[:limit]:
                old = codec.job_from_values(r[1:])
                changed.append((old, *tr.lease(old, worker=worker, token=new_token(), now=now)))
            self._touch(tx, worker, now)
            self._save(tx, changed)
            return [job for _, job, _ in changed]

    def _per_item(self, items: Sequence[_Item], *, worker: str, now: float,
                  step: Callable[[Job, Any], tuple[Job, Event | None]],
                  touch: bool = False, relaxed: bool = False) -> list[ItemResult]:
        """One transaction applying ``step`` to each item's job; an item that fails
        (not found, stale, foreign) is answered alone and changes nothing."""
        with self._b.write() as tx:
            if relaxed:
                self._b.relax(tx)
            current = self._load(tx, (i.job_id for i in items), lock=True)
            results: list[ItemResult] = []
            changed: list[Change] = []
            for item in items:
                try:
                    job = self._own(current, item.job_id, item.token, worker, now)
                    new, ev = step(job, item)
                except HearthError as exc:
                    results.append(ItemResult(item.job_id, error=exc))
                    continue
                current[item.job_id] = new
                changed.append((job, new, ev))
                results.append(ItemResult(item.job_id, job=new))
            if touch:
                self._touch(tx, worker, now)
            self._save(tx, changed)
            return results

    def heartbeat(self, items: Sequence[HeartbeatItem], *, worker: str,
                  now: float) -> list[ItemResult]:
        def step(job: Job, item: HeartbeatItem) -> tuple[Job, Event | None]:
            return tr.heartbeat(job, token=item.token, now=now, progress=item.progress)

        return self._per_item(items, worker=worker, now=now, step=step, touch=True,
                              relaxed=True)

    @staticmethod
    def _own(current: dict[str, Job], job_id: str, token: str, worker: str, now: float) -> Job:
        job = current.get(job_id)
        if job is None:
            raise NotFound(f"job {job_id} does not exist")
        tr.check_lease(job, token, now)
        if job.worker != worker:
            raise Forbidden(f"job {job_id} is leased to another worker, not {worker}")
        return job

    def finish(self, items: Sequence[FinishItem], *, worker: str, now: float,
               rand: Callable[[], float]) -> list[ItemResult]:
        def step(job: Job, item: FinishItem) -> tuple[Job, Event | None]:
            return self._outcome(job, item, now, rand)

        return self._per_item(items, worker=worker, now=now, step=step)

    @staticmethod
    def _outcome(job: Job, item: FinishItem, now: float,
                 rand: Callable[[], float]) -> tuple[Job, Event]:
        if item.outcome == "succeeded":
            return tr.succeed(job, token=item.token, now=now, result=item.result or Result())
        if item.outcome == "failed":
            error = item.error or ErrorInfo("the worker reported a failure without a message")
            return tr.fail(job, token=item.token, now=now, error=error, rand=rand())
        if item.outcome == "cancelled":
            return tr.acknowledge_cancel(job, token=item.token, now=now)
        if item.outcome == "released":
            return tr.release(job, token=item.token, now=now)
        raise ValidationError(f"unknown outcome {item.outcome!r}")

    def expire_leases(self, *, now: float, rand: Callable[[], float],
                      limit: int = 500) -> list[Job]:
        with self._b.write() as tx:
            changed = []
            for r in tx.rows(_EXPIRED, {"now": now, "limit": limit}):
                old = codec.job_from_values(r)
                changed.append((old, *tr.expire(old, now=now, rand=rand())))
            self._save(tx, changed)
            return [job for _, job, _ in changed]

    def cancel(self, job_id: str, *, now: float) -> Job:
        with self._b.write() as tx:
            old = self._load_one(tx, job_id, lock=True)
            new, ev = tr.cancel(old, now=now)
            self._save(tx, [(old, new, ev)])
            return new

    def retry(self, job_id: str, *, now: float) -> Job:
        with self._b.write() as tx:
            old = self._load_one(tx, job_id, lock=True)
            new, ev = tr.retry(old, now=now)
            self._save(tx, [(old, new, ev)])
            return new

    def next_wakeup(self, *, kinds: Sequence[str], now: float) -> float | None:
        if not kinds:
            return None
        soonest = None
        with self._b.read() as tx:
            for kind in sorted(set(kinds)):
                value = tx.scalar(_NEXT_WAKEUP, {"kind": kind, "now": now})
                if value is not None and (soonest is None or value < soonest):
                    soonest = float(value)
        return soonest

    def next_lease_expiry(self) -> float | None:
        with self._b.read() as tx:
            value = tx.scalar(_NEXT_EXPIRY)
        return None if value is None else float(value)

    def counts(self) -> list[QueueCount]:
        if self._tally is None or not isinstance(self._b, SqliteBackend):
            with self._b.read() as tx:
                rows = tx.rows(_COUNTS)
        else:
            with self._b.write() as tx:  # no commit can slip between look and load
                version = self._b.data_version(tx)
                found = self._tally.current(version)
                if found is None:
                    found = self._tally.load(tx.rows(_COUNTS), version)
            rows = [(ns, kind, state, n) for (ns, kind, state), n in found.items()]
        return [QueueCount(ns, kind, JobState(state), int(n))
                for ns, kind, state, n in sorted(rows) if n]

    def purge_finished(self, *, before: float, limit: int = 1000) -> int:
        with self._b.write() as tx:
            found = tx.rows(
                select(jobs.c.id, jobs.c.namespace, jobs.c.kind, jobs.c.state)
                .where(jobs.c.finished_at < before, jobs.c.state.in_(_TERMINAL))
                .order_by(jobs.c.finished_at).limit(limit))
            if not found:
                return 0
            ids = [r[0] for r in found]
            delta = self._delta(tx)
            if delta is not None:
                for _, namespace, kind, state in found:
                    delta.add(namespace, kind, state, -1)
            tx.execute(delete(job_events).where(job_events.c.job_id.in_(ids)))
            tx.execute(delete(job_blobs).where(job_blobs.c.job_id.in_(ids)))
            tx.execute(delete(jobs).where(jobs.c.id.in_(ids)))
            return len(ids)

    def referenced_digests(self, digests: Iterable[str]) -> set[str]:
        wanted = sorted(set(digests))
        found: set[str] = set()
        with self._b.read() as tx:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start:start + 500]
                found.update(r[0] for r in tx.rows(
                    select(job_blobs.c.digest).where(job_blobs.c.digest.in_(chunk)).distinct()))
        return found

    # -- nodes ---------------------------------------------------------------------------
    def register_node(self, node: Node, *, now: float, rand: Callable[[], float]
                      ) -> tuple[Node, list[Job]]:
        with self._b.write() as tx:
            found = tx.mappings(select(nodes).where(nodes.c.name == node.name)
                                .with_for_update())
            row = found[0] if found else None
            registered = row["registered_at"] if row is not None else now
            values = codec.node_to_row(node) | {"registered_at": registered, "last_seen": now}
            released: list[Change] = []
            if row is None:
                tx.execute(insert(nodes).values(values))
            else:
                if row["session"] and node.session and row["session"] != node.session:
                    query = (select(*_JOB_COLUMNS)
                             .where(_IS_LEASED, jobs.c.worker == node.name)
                             .with_for_update())
                    for r in tx.rows(query):
                        old = codec.job_from_values(r)
                        released.append((old, *tr.abandon(old, now=now, rand=rand())))
                    self._save(tx, released)
                tx.execute(update(nodes).where(nodes.c.name == node.name).values(values))
            out = codec.node_from_row(values, in_flight=self._in_flight(tx).get(node.name, 0))
            return replace(out, released=len(released)), [job for _, job, _ in released]

    def _delta(self, tx: Tx) -> Delta | None:
        """Count changes to apply to the tally if ``tx`` commits (None: no tally)."""
        tally = self._tally
        if tally is None:
            return None
        delta = Delta()
        tx.on_commit(lambda: tally.apply(delta))
        return delta

    @staticmethod
    def _touch(tx: Tx, name: str, now: float) -> None:
        tx.execute(_TOUCH_NODE, {"node": name, "seen": now})

    def touch_node(self, name: str, *, now: float) -> None:
        with self._b.write() as tx:
            self._touch(tx, name, now)

    @staticmethod
    def _in_flight(tx: Tx) -> dict[str, int]:
        return {w: int(n) for w, n in tx.rows(_IN_FLIGHT)}

    def list_nodes(self) -> list[Node]:
        with self._b.read() as tx:
            flight = self._in_flight(tx)
            rows = tx.mappings(select(nodes).order_by(nodes.c.name))
        return [codec.node_from_row(r, flight.get(r["name"], 0)) for r in rows]

    # -- notifications and lifecycle -----------------------------------------------------
    def subscribe(self, callback: Callable[[set[str]], None]) -> Callable[[], None] | None:
        return self._b.subscribe(callback)

    def ping(self) -> None:
        with self._b.read() as tx:
            tx.scalar(_PING)

    def close(self) -> None:
        self._b.dispose()


"""The PostgreSQL store's transactions: one pipeline each, on pooled connections that
survive the server dropping them.

Talks to the real server named by ``$HEARTH_TEST_PG_DSN``. Dropping connections is
done as a restart does it: the server terminates the backends
(``pg_terminate_backend``), which closes each connection with a FATAL message.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import pq

from hearth.domain.jobs import JobSpec, JobState
from hearth.errors import Conflict
from hearth.ids import new_job_id
from hearth.store import open_store
from hearth.store.sql.jobs import SqlStore

pytestmark = pytest.mark.postgres


@pytest.fixture
def store(pg_url: str) -> Iterator[SqlStore]:
    opened = open_store(pg_url)
    assert isinstance(opened, SqlStore)
    try:
        yield opened
    finally:
        opened.close()


def submit(store: SqlStore, **spec: object) -> str:
    return store.submit([JobSpec(kind="k", **spec)], now=time.time(),  # type: ignore[arg-type]
                        new_id=new_job_id)[0].job.id


def terminate_backends(pg_url: str) -> int:
    """Drop every connection to the test database but this one, as a restart does."""
    with psycopg.connect(pg_url, autocommit=True) as admin:
        row = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchone()
    time.sleep(0.1)  # the goodbyes reach the client sockets
    return int(row[0]) if row else 0


def test_a_submit_is_one_round_trip(store: SqlStore) -> None:
    submit(store)
    pooled = store._b.pool.raw_connection()  # type: ignore[attr-defined]
    conn = pooled.driver_connection
    pooled.close()  # LIFO: the next transaction takes this same connection
    with tempfile.TemporaryFile("w+") as out:
        conn.pgconn.trace(out.fileno())
        conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        try:
            submit(store)
        finally:
            conn.pgconn.untrace()
        out.flush()
        os.lseek(out.fileno(), 0, os.SEEK_SET)
        lines = out.read().splitlines()
    sent = [line.split("\t")[2].strip() for line in lines if line.startswith("F\t")]
    assert sent.count("Sync") == 1, sent  # the client waited for the server once


def test_a_failed_statement_rolls_the_whole_transaction_back(store: SqlStore) -> None:
    first = store.submit([JobSpec(kind="k", idempotency_key="same")], now=time.time(),
                         new_id=new_job_id)[0]
    again = store.submit([JobSpec(kind="k", idempotency_key="same")], now=time.time(),
                         new_id=new_job_id)[0]
    assert (again.created, again.job.id) == (False, first.job.id)
    # Two jobs, the second with an id already taken: the insert fails at the commit
    # point of the pipeline, and nothing of the batch stays.
    taken = first.job.id
    ids = iter([new_job_id(), taken])
    with pytest.raises(Conflict):
        store.submit([JobSpec(kind="k"), JobSpec(kind="k")], now=time.time(),
                     new_id=lambda: next(ids))
    assert sum(c.count for c in store.counts()) == 1
    submit(store)  # the connection is usable again


def test_connections_the_server_dropped_cost_no_request(store: SqlStore, pg_url: str) -> None:
    for _ in range(3):
        submit(store)
    assert terminate_backends(pg_url) >= 1
    # Used a moment ago, so not pinged for being idle: the goodbye on the socket is
    # what gives them away.
    job_id = submit(store)
    assert store.get(job_id).state is JobState.QUEUED
    leased = store.lease(worker="w", kinds=["k"], limit=10, now=time.time(),
                         new_token=lambda: new_job_id())
    assert len(leased) == 4


def test_a_batch_write_keeps_types_nulls_bytes_and_order(store: SqlStore) -> None:
    """One ``json_to_recordset`` statement per batch: every column comes back with its
    type; bytes in any row (not only the first) survive; inserts keep their order."""
    from sqlalchemy import select

    from hearth.store.sql.bulk import KEY
    from hearth.store.sql.schema import job_events, jobs

    ids = [submit(store) for _ in range(3)]
    rows = [{KEY: ids[0], "result_payload": None, "progress_percent": 12.5,
             "cancel_requested": True, "attempt": 7, "progress_message": "naïve \"q\""},
            {KEY: ids[1], "result_payload": b"\x00\xffraw", "progress_percent": None,
             "cancel_requested": False, "attempt": 0, "progress_message": None},
            {KEY: ids[2], "result_payload": b"", "progress_percent": 0.0,
             "cancel_requested": False, "attempt": 2**31 - 1, "progress_message": ""}]
    events = [{"job_id": ids[i % 3], "namespace": "default", "kind": "k", "type": f"t{i}",
               "at": 1.5 + i, "state": "queued", "attempt": i, "worker": None, "data": "{}"}
              for i in range(50)]
    with store._b.write() as tx:
        store._b.rows.update(tx, jobs, rows)
        store._b.rows.insert(tx, job_events, events)
    with store._b.read() as tx:
        got = {r[0]: tuple(r[1:]) for r in tx.rows(select(
            jobs.c.id, jobs.c.result_payload, jobs.c.progress_percent,
            jobs.c.cancel_requested, jobs.c.attempt, jobs.c.progress_message))}
        types = [r[0] for r in tx.rows(select(job_events.c.type).where(
            job_events.c.type.like("t%")).order_by(job_events.c.seq))]
    assert got[ids[0]] == (None, 12.5, True, 7, "naïve \"q\"")
    assert got[ids[1]] == (b"\x00\xffraw", None, False, 0, None)
    assert got[ids[2]] == (b"", 0.0, False, 2**31 - 1, "")
    assert types == [f"t{i}" for i in range(50)]

"""The small differences between SQLite and PostgreSQL, kept in one place.

Everything else in the SQL store is written once against SQLAlchemy Core and run
through :class:`hearth.store.sql.tx.Tx` on the driver's connection. Here: how to
connect, how a write transaction begins (SQLite: ``BEGIN IMMEDIATE`` on the single
writer connection, so read-modify-write cycles never interleave; PostgreSQL: row
locks with ``FOR UPDATE [SKIP LOCKED]``), label filters over JSON text, one
parameter for a list of ids, and the NOTIFY that wakes other coordinator replicas.
SQLAlchemy engines remain for migrations (Alembic) and, on PostgreSQL, for the
connection pool. Nothing above the store imports ``sqlite3`` or ``psycopg``.
"""

from __future__ import annotations

import contextlib
import logging
import select as io_select
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from sqlalchemy import (
    Engine,
    String,
    bindparam,
    create_engine,
    event,
    func,
    literal_column,
    select,
    text,
)
from sqlalchemy import exc as exc_module
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.elements import ColumnElement

from hearth.errors import ValidationError
from hearth.store.sql.bulk import JsonRowWriter, RowWriter
from hearth.store.sql.schema import jobs
from hearth.store.sql.tx import Compiler, Tx, translate_errors

log = logging.getLogger("hearth.store")
NOTIFY_CHANNEL = "hearth_jobs"

_NOTIFY = text("SELECT pg_notify(:channel, :payload)")
_EVENTS_LOCK = text("SELECT pg_advisory_xact_lock(7843002)")


class Backend:
    name: str
    #: For migrations (Alembic); PostgreSQL also draws its pooled connections from it.
    write_engine: Engine
    compiler: Compiler
    #: Writes batches of rows (one executemany, or one set-based statement).
    rows: RowWriter

    def write(self) -> contextlib.AbstractContextManager[Tx]:
        """A write transaction: committed when the block ends, rolled back if it
        raises; driver errors come out as :mod:`hearth.errors`."""
        raise NotImplementedError

    def read(self) -> contextlib.AbstractContextManager[Tx]:
        """A consistent read snapshot (several statements see one state)."""
        raise NotImplementedError

    def label_equals(self, key: str, value: str) -> ColumnElement[bool]:
        raise NotImplementedError

    def id_in(self, column: ColumnElement[Any], name: str) -> ColumnElement[bool]:
        """``column IN <the list bound as name>``, one bound parameter whatever the
        list's length, so the statement compiles once (see :meth:`id_list`)."""
        raise NotImplementedError

    def id_list(self, values: Sequence[str]) -> Any:
        """The bound value of an :meth:`id_in` parameter."""
        raise NotImplementedError

    def order_events(self, tx: Tx) -> None:
        """Make event ``seq`` order equal commit order until this transaction ends.
        SQLite needs nothing: its single writer commits in ``seq`` order already."""

    def relax(self, tx: Tx) -> None:
        """Let this transaction's commit return before it reaches the disk: only for
        changes a crash may undo without breaking a promise (a lease, a heartbeat).
        SQLite needs nothing: in WAL mode with ``synchronous=NORMAL`` no commit waits
        for the disk (and each survives a crash of the process, not of the machine)."""

    def notify(self, tx: Tx, kinds: set[str]) -> None:
        """Tell other processes sharing the database that jobs changed (no-op here)."""

    def subscribe(self, callback: Callable[[set[str]], None]) -> Callable[[], None] | None:
        return None

    def dispose(self) -> None:
        self.write_engine.dispose()


#: Seconds between two WAL checkpoints while there are commits (see _Checkpointer).
CHECKPOINT_EVERY = 0.25
#: WAL pages (4 KiB each) past which the writer checkpoints after its commit (see
#: _Checkpointer): about 16 MiB.
WAL_PAGES_LIMIT = 4096
#: Milliseconds that writer's checkpoint waits for readers still on old pages.
CATCH_UP_WAIT_MS = 200
#: Milliseconds a connection waits for a lock held by another connection.
BUSY_WAIT_MS = 30_000


class _Checkpointer:
    """Copies committed pages from the WAL into the database file, on its own thread
    and connection, every :data:`CHECKPOINT_EVERY` seconds while there are commits.

    SQLite's automatic checkpoint runs inside the commit that crosses 1,000 WAL
    pages, and in ``synchronous=NORMAL`` it ends with an fsync of the database file:
    a commit on the coordinator's event loop then took several milliseconds, which
    W2 showed as its p99. The writer connections turn it off
    (``wal_autocheckpoint=0``); ``PASSIVE`` checkpoints here never wait for the writer
    or the readers.

    The writer starts the WAL over only when a checkpoint has copied every page in
    it, and under a steady stream of commits one always lands while the checkpoint
    runs: the WAL then grew by about 15 MB/s (W4 with a million jobs queued). So once
    it holds more than :data:`WAL_PAGES_LIMIT` pages, the thread marks itself
    ``behind`` and the writer, after its next commit, runs a ``RESTART`` checkpoint
    itself, with no commit in between (it waits for a checkpoint running on the thread
    and copies the few pages left); the commit after that starts the WAL over. That
    costs one commit a checkpoint's pause, only under heavy write load. The last
    connection to close checkpoints whatever is left."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self.dirty = False
        self.behind = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hearth-sqlite-checkpoint",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        failing = False
        try:
            while not self._stop.wait(CHECKPOINT_EVERY):
                if not self.dirty:
                    continue
                self.dirty = False
                try:
                    if conn is None:
                        conn = sqlite3.connect(self._path, timeout=30, isolation_level=None,
                                               check_same_thread=False)
                    self._checkpoint(conn)
                    failing = False
                except sqlite3.Error as exc:
                    if not failing:  # once per bad spell, not every 250 ms
                        log.warning("cannot checkpoint the SQLite WAL of %s (retrying): %s",
                                    self._path, exc)
                    failing = True
        finally:
            if conn is not None:
                conn.close()

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        # (busy, pages in the WAL, pages copied): the copy always reaches the pages
        # there were when it began, but a WAL past the limit has not started over.
        _, pages, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.behind = pages > WAL_PAGES_LIMIT

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


class SqliteBackend(Backend):
    """One writer connection (``BEGIN IMMEDIATE``) behind a lock, and WAL readers;
    a :class:`_Checkpointer` thread keeps the WAL short.

    ``synchronous=NORMAL`` in WAL mode (the default here) keeps every committed
    transaction across process crashes (``kill -9``); add ``?synchronous=full`` to
    the URL to also survive power loss at the cost of an fsync per commit.
    """

    name = "sqlite"
    #: Idle reader connections kept open (more are opened when needed, then closed).
    READERS = 8

    def __init__(self, path: Path, synchronous: str = "normal") -> None:
        if synchronous not in ("normal", "full"):
            raise ValidationError("sqlite synchronous must be 'normal' or 'full'")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.synchronous = synchronous.upper()
        self.write_engine = create_engine(
            f"sqlite+pysqlite:///{path}", pool_size=1, max_overflow=0, pool_timeout=60,
            connect_args={"check_same_thread": False, "timeout": 30})

        @event.listens_for(self.write_engine, "connect")
        def _connect(dbapi_conn: Any, _record: Any) -> None:
            self._configure(dbapi_conn)

        self.compiler = Compiler(self.write_engine.dialect)
        self.rows = RowWriter()
        self._writer: sqlite3.Connection | None = None
        self._write_lock = threading.Lock()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._checkpointer: _Checkpointer | None = None
        self._closed = False

    def _configure(self, conn: Any) -> None:
        conn.isolation_level = None  # we issue BEGIN ourselves
        cur = conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA wal_autocheckpoint=0")  # the _Checkpointer's job
        cur.execute(f"PRAGMA synchronous={self.synchronous}")
        cur.execute(f"PRAGMA busy_timeout={BUSY_WAIT_MS}")
        cur.execute("PRAGMA foreign_keys=OFF")
        cur.execute("PRAGMA cache_size=-65536")
        cur.close()

    def _connect(self) -> sqlite3.Connection:
        if self._closed:
            raise ValidationError("this store is closed")
        conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False,
                               isolation_level=None)
        self._configure(conn)
        return conn

    @contextlib.contextmanager
    def write(self) -> Iterator[Tx]:
        with translate_errors(), self._write_lock:
            if self._writer is None:
                self._writer = self._connect()
            if self._checkpointer is None:
                self._checkpointer = _Checkpointer(self.path)
            yield from self._transaction(self._writer, "BEGIN IMMEDIATE")
            self._checkpointer.dirty = True
            if self._checkpointer.behind:
                self._catch_up(self._writer)

    def _catch_up(self, writer: Any) -> None:
        """After a commit, when the WAL is not starting over (see
        :class:`_Checkpointer`): a ``RESTART`` checkpoint, waiting for readers on old
        pages at most :data:`CATCH_UP_WAIT_MS`. Its transaction is committed already,
        so a failure here is logged, never raised: the thread tries again."""
        assert self._checkpointer is not None
        self._checkpointer.behind = False
        try:
            writer.execute(f"PRAGMA busy_timeout={CATCH_UP_WAIT_MS}")
            try:
                writer.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
            finally:
                writer.execute(f"PRAGMA busy_timeout={BUSY_WAIT_MS}")
        except sqlite3.Error as exc:
            log.warning("cannot checkpoint the SQLite WAL of %s (retrying): %s",
                        self.path, exc)

    @contextlib.contextmanager
    def read(self) -> Iterator[Tx]:
        with translate_errors():
            with self._readers_lock:
                conn = self._readers.pop() if self._readers else None
            if conn is None:
                conn = self._connect()
            try:
                yield from self._transaction(conn, "BEGIN")
            except BaseException:
                conn.close()
                raise
            with self._readers_lock:
                if len(self._readers) < self.READERS and not self._closed:
                    self._readers.append(conn)
                    conn = None
            if conn is not None:
                conn.close()

    def _transaction(self, conn: sqlite3.Connection, begin: str) -> Iterator[Tx]:
        tx = Tx(self.compiler, conn)
        conn.execute(begin)
        try:
            yield tx
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            tx.close()
        try:
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        for fn in tx.committed:
            fn()

    @staticmethod
    def data_version(tx: Tx) -> int:
        """Changes whenever another connection commits to the file (never for this
        connection's own commits): see :mod:`hearth.store.sql.tally`."""
        return int(tx.conn.execute("PRAGMA data_version").fetchone()[0])

    def label_equals(self, key: str, value: str) -> ColumnElement[bool]:
        path = '$."' + key.replace('"', "") + '"'
        return func.json_extract(jobs.c.labels, path) == value

    def id_in(self, column: ColumnElement[Any], name: str) -> ColumnElement[bool]:
        # The list travels as one JSON array; the planner still looks each id up in
        # the column's index.
        values: Any = select(literal_column("value")).select_from(
            func.json_each(bindparam(name)).table_valued("value"))
        return column.in_(values)

    def id_list(self, values: Sequence[str]) -> Any:
        return orjson.dumps(list(values)).decode()

    def dispose(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
        with self._write_lock, self._readers_lock:
            self._closed = True
            for conn in [*self._readers, *([self._writer] if self._writer else [])]:
                conn.close()
            self._readers.clear()
            self._writer = None
        super().dispose()


#: A pooled PostgreSQL connection idle longer than this is pinged before use.
PING_IDLE = 2.0


class PostgresBackend(Backend):
    """Pooled psycopg 3 connections (SQLAlchemy's pool); NOTIFY wakes the other
    coordinator replicas.

    A transaction is one pipeline (psycopg's pipeline mode) on an autocommit
    connection: ``BEGIN``, the statements and ``COMMIT`` are sent without waiting,
    and only a read (``SELECT ... FOR UPDATE``) or the end of the transaction waits
    for the server. A submit thus costs one round trip instead of seven (BEGIN, a
    ping, each statement, COMMIT), a lease two instead of eight. A driver error
    surfaces at the next read or at the end, still inside the transaction, and is
    translated and rolled back as before. Migrations use a separate engine
    (``write_engine``), with ordinary transactions.

    A restarted server costs no request: a connection that sat idle for over
    :data:`PING_IDLE` seconds, or that has anything to read (the server's goodbye),
    is pinged before use, and one that fails is replaced. A disconnect seen during a
    transaction retires the whole pool, so the other dead connections are never
    handed out."""

    name = "postgres"

    def __init__(self, url: str) -> None:
        self.dsn = url
        sa_url = "postgresql+psycopg://" + url.split("://", 1)[1]
        self.write_engine = create_engine(sa_url, pool_size=1, max_overflow=4,
                                          pool_pre_ping=True)
        # LIFO: the connections in use stay warm; the rest age out and get pinged.
        self.pool = create_engine(sa_url, pool_size=10, max_overflow=10, pool_timeout=30,
                                  pool_use_lifo=True)
        event.listen(self.pool, "connect", _autocommit)
        event.listen(self.pool, "checkout", self._ping_if_idle)
        event.listen(self.pool, "checkin", _note_use)
        self.compiler = Compiler(self.pool.dialect)
        self.rows = JsonRowWriter()
        for stmt in (_NOTIFY, _EVENTS_LOCK):
            self.compiler.prepare(stmt)
        self._listeners: list[_Listener] = []
        #: Tags this process's notifications so its own listener can skip them: the
        #: engine already woke its local waiters when it committed.
        self.sender = uuid.uuid4().hex[:12]

    @contextlib.contextmanager
    def write(self) -> Iterator[Tx]:
        with translate_errors():
            yield from self._transaction()

    # Reads take the same pooled connections; a transaction gives them one snapshot.
    read = write

    def _transaction(self) -> Iterator[Tx]:
        pooled = self.pool.raw_connection()
        conn: Any = pooled.driver_connection
        try:
            with conn.pipeline():
                tx = Tx(self.compiler, conn)
                try:
                    tx.raw("BEGIN")
                    yield tx
                    tx.raw("COMMIT")
                finally:
                    tx.close()
            # Leaving the pipeline waited for every answer, the COMMIT's included.
            for fn in tx.committed:
                fn()
        except BaseException as exc:
            self._abandon(pooled, conn, exc)
            raise
        finally:
            pooled.close()  # back to the pool

    def _ping_if_idle(self, dbapi_conn: Any, record: Any, proxy: Any) -> None:
        """Pool checkout: ping a connection that was idle for long or has something
        to read; a failed ping makes the pool replace it (``DisconnectionError``), so
        no request sees it."""
        used = record.info.get("hearth_used")
        if used is not None and time.monotonic() - used < PING_IDLE and not _readable(dbapi_conn):
            return
        try:
            alive = self.pool.dialect.do_ping(dbapi_conn)
        except Exception as exc:
            raise exc_module.DisconnectionError(f"the pooled connection is gone: {exc}") from exc
        if not alive:
            raise exc_module.DisconnectionError("the pooled connection is gone")

    def _abandon(self, pooled: Any, conn: Any, exc: BaseException) -> None:
        """Roll back; a connection the server dropped is thrown away, not pooled, and
        so are all the others (a restarted server dropped them too)."""
        dialect: Any = self.pool.dialect
        if isinstance(exc, dialect.loaded_dbapi.Error) and dialect.is_disconnect(exc, conn, None):
            pooled.invalidate(exc)
            self.pool.dispose(close=False)
            return
        try:
            conn.rollback()
        except Exception as rollback_failed:  # the connection is gone as well
            pooled.invalidate(rollback_failed)

    def label_equals(self, key: str, value: str) -> ColumnElement[bool]:
        from sqlalchemy import cast

        clause: ColumnElement[bool] = cast(jobs.c.labels, postgresql.JSONB)[key].astext == value
        return clause

    def id_in(self, column: ColumnElement[Any], name: str) -> ColumnElement[bool]:
        return column == func.any(bindparam(name, type_=postgresql.ARRAY(String)))

    def id_list(self, values: Sequence[str]) -> Any:
        return list(values)

    def order_events(self, tx: Tx) -> None:
        # Concurrent transactions draw seq values in one order and may commit in
        # another: a reader at seq N would never see an N-1 committed later. Appends
        # are serialised by a transaction-level advisory lock held to commit; callers
        # take it last, so no one waits on anything while holding it.
        tx.execute(_EVENTS_LOCK)

    def relax(self, tx: Tx) -> None:
        # A lease or heartbeat lost in a server crash (the last ~0.6 s of them) only
        # means the job is leasable again: the worker's outcome is then refused as
        # stale, and at-least-once holds. Any later synchronous commit (a finish)
        # flushes it anyway. Submits, outcomes and everything else stay synchronous.
        tx.raw("SET LOCAL synchronous_commit TO OFF")

    def notify(self, tx: Tx, kinds: set[str]) -> None:
        payload = f"{self.sender}|{','.join(sorted(kinds))}"[:7000]
        tx.execute(_NOTIFY, {"channel": NOTIFY_CHANNEL, "payload": payload})

    def subscribe(self, callback: Callable[[set[str]], None]) -> Callable[[], None] | None:
        listener = _Listener(self.dsn, callback, self.sender)
        listener.start()
        self._listeners.append(listener)
        return listener.stop

    def dispose(self) -> None:
        for listener in self._listeners:
            listener.stop()
        self.pool.dispose()
        super().dispose()


def _readable(dbapi_conn: Any) -> bool:
    """Whether an idle connection has something to read: nothing should arrive on
    one, so it is the server's goodbye (a restart or a terminated backend closes
    every connection with a FATAL message). One ``select`` call, no round trip."""
    try:
        return bool(io_select.select([dbapi_conn.pgconn.socket], [], [], 0)[0])
    except (OSError, ValueError, dbapi_conn.OperationalError):
        return True


def _autocommit(dbapi_conn: Any, record: Any) -> None:
    """Transactions are begun and committed by hand, inside one pipeline."""
    dbapi_conn.autocommit = True


def _note_use(dbapi_conn: Any, record: Any) -> None:
    record.info["hearth_used"] = time.monotonic()


class _Listener(threading.Thread):
    """LISTENs on its own connection; reconnects after failures until stopped."""

    def __init__(self, dsn: str, callback: Callable[[set[str]], None], sender: str) -> None:
        super().__init__(name="hearth-pg-listen", daemon=True)
        self.dsn = dsn
        self.callback = callback
        self.sender = sender
        self._stop_event = threading.Event()

    def stop(self) -> None:
        self._stop_event.set()
        if self.is_alive() and self is not threading.current_thread():
            self.join(timeout=3)

    def run(self) -> None:
        import psycopg

        delay = 0.2
        while not self._stop_event.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    delay = 0.2
                    # A reconnect may have missed notifications: wake everyone once.
                    self.callback(set())
                    while not self._stop_event.is_set():
                        for note in conn.notifies(timeout=0.5):
                            sender, _, kinds = note.payload.partition("|")
                            if sender != self.sender:
                                self.callback(set(filter(None, kinds.split(","))))
            except Exception as exc:  # keep listening across database restarts
                log.warning("LISTEN connection lost (%s); reconnecting", type(exc).__name__)
                self._stop_event.wait(delay)
                delay = min(delay * 2, 5.0)


def backend_for(url: str) -> Backend:
    parts = urlsplit(url)
    if parts.scheme in ("sqlite", "sqlite3"):
        # As in SQLAlchemy: sqlite:///relative.db and sqlite:////absolute/path.db
        path = parts.path[1:]
        if not path:
            raise ValidationError(f"sqlite URL {url!r} names no file: use sqlite:///path/to/db")
        query = parse_qs(parts.query)
        sync = query.get("synchronous", ["normal"])[0].lower()
        return SqliteBackend(Path(path), synchronous=sync)
    if parts.scheme in ("postgres", "postgresql", "postgresql+psycopg"):
        try:
            import psycopg  # noqa: F401
        except ImportError as exc:
            raise ValidationError(
                "PostgreSQL support is not installed: pip install 'hearth[postgres]'"
            ) from exc
        return PostgresBackend("postgresql://" + url.split("://", 1)[1])
    raise ValidationError(
        f"unknown store URL scheme {parts.scheme!r}: use sqlite:///path or postgresql://..."
    )

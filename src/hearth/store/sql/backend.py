"""The small differences between SQLite and PostgreSQL, kept in one place.

Everything else in the SQL store is written once against SQLAlchemy Core. Here:
how to connect, how a write transaction begins (SQLite: ``BEGIN IMMEDIATE`` on a
single writer connection, so read-modify-write cycles never interleave; PostgreSQL:
row locks with ``FOR UPDATE [SKIP LOCKED]``), label filters over JSON text, the
NOTIFY that wakes other coordinator replicas, and driver errors translated into
:mod:`hearth.errors`. Nothing above the store imports ``sqlite3`` or ``psycopg``.
"""

from __future__ import annotations

import contextlib
import logging
import operator
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from sqlalchemy import Connection, Engine, create_engine, event, func, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.elements import ClauseElement, ColumnElement

from hearth.errors import Conflict, HearthError, Unavailable, ValidationError
from hearth.store.sql.schema import jobs

log = logging.getLogger("hearth.store")
NOTIFY_CHANNEL = "hearth_jobs"


@contextlib.contextmanager
def translate_errors() -> Iterator[None]:
    """Turn driver errors into Hearth errors at the adapter boundary."""
    try:
        yield
    except HearthError:
        raise
    except sa_exc.IntegrityError as exc:
        raise Conflict(f"the database refused the change: {exc.orig}") from exc
    except sa_exc.DataError as exc:
        # A value the database cannot hold, e.g. text with a NUL character on
        # PostgreSQL (SQLite keeps it): bad input, not a fault of the coordinator.
        cause = exc.orig or exc
        first = (str(cause).strip().splitlines() or [""])[0][:200]
        raise ValidationError(f"the database cannot store a value of this request: "
                              f"{first}") from exc
    except OverflowError as exc:
        # SQLite's driver refuses integers beyond 64 bits before the database sees them.
        raise ValidationError("a number in this request is too large for the database "
                              "(at most 2**63 - 1)") from exc
    except sa_exc.TimeoutError as exc:
        raise Unavailable("no database connection was free in time; try again") from exc
    except (sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
        cause = exc.orig or exc
        first = (str(cause).strip().splitlines() or [""])[0][:200]
        raise Unavailable(
            f"the database is unavailable ({type(cause).__name__}: {first}); try again"
        ) from exc
    except sa_exc.DBAPIError as exc:
        if exc.connection_invalidated:
            raise Unavailable("the database connection was lost; try again") from exc
        raise


class Backend:
    name: str
    write_engine: Engine
    read_engine: Engine
    #: id(statement) -> (sql text, positional parameter order, statement kept alive)
    _compiled: dict[int, tuple[str, Callable[[Any], Any] | None, ClauseElement]]

    def __init__(self) -> None:
        self._compiled = {}

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        with translate_errors(), self.write_engine.begin() as conn:
            yield conn

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        with translate_errors(), self.read_engine.connect() as conn:
            yield conn
            conn.rollback()

    def label_equals(self, key: str, value: str) -> ColumnElement[bool]:
        raise NotImplementedError

    def executemany(self, conn: Connection, stmt: ClauseElement,
                    rows: Sequence[Mapping[str, Any]]) -> None:
        """Run a Core statement once per row, compiled once per process.

        The hot path (leasing and finishing hundreds of jobs per transaction) spends
        most of its time in SQLAlchemy's per-row parameter processing; the columns
        here are plain numbers, strings and bytes that the driver takes as they are,
        so the statement is compiled once and handed to the driver's executemany.
        """
        if not rows:
            return
        compiled = self._compiled.get(id(stmt))
        if compiled is None:
            built: Any = stmt.compile(dialect=self.write_engine.dialect)  # SQLCompiler
            names = tuple(built.positiontup or ())
            order: Callable[[Any], Any] | None = None
            if built.positional and len(names) > 1:
                order = operator.itemgetter(*names)
            elif built.positional and names:
                order = lambda row, name=names[0]: (row[name],)  # noqa: E731
            compiled = (str(built), order, stmt)
            self._compiled[id(stmt)] = compiled
        sql, order, _ = compiled
        if order is not None:
            params: Any = list(map(order, rows))
        else:
            params = list(rows)
        conn.exec_driver_sql(sql, params)

    def order_events(self, conn: Connection) -> None:
        """Make event ``seq`` order equal commit order until this transaction ends.
        SQLite needs nothing: its single writer commits in ``seq`` order already."""

    def notify(self, conn: Connection, kinds: set[str]) -> None:
        """Tell other processes sharing the database that jobs changed (no-op here)."""

    def subscribe(self, callback: Callable[[set[str]], None]) -> Callable[[], None] | None:
        return None

    def dispose(self) -> None:
        self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            self.read_engine.dispose()


class SqliteBackend(Backend):
    """One writer connection (``BEGIN IMMEDIATE``), several WAL readers.

    ``synchronous=NORMAL`` in WAL mode (the default here) keeps every committed
    transaction across process crashes (``kill -9``); add ``?synchronous=full`` to
    the URL to also survive power loss at the cost of an fsync per commit.
    """

    name = "sqlite"

    def __init__(self, path: Path, synchronous: str = "normal") -> None:
        super().__init__()
        if synchronous not in ("normal", "full"):
            raise ValidationError("sqlite synchronous must be 'normal' or 'full'")
        path.parent.mkdir(parents=True, exist_ok=True)
        url = f"sqlite+pysqlite:///{path}"
        args = {"check_same_thread": False, "timeout": 30}
        self.write_engine = create_engine(url, connect_args=args, pool_size=1,
                                          max_overflow=0, pool_timeout=60)
        self.read_engine = create_engine(url, connect_args=args, pool_size=4,
                                         max_overflow=4, pool_timeout=60)
        for engine, begin in ((self.write_engine, "BEGIN IMMEDIATE"), (self.read_engine, "BEGIN")):
            self._configure(engine, begin, synchronous)

    @staticmethod
    def _configure(engine: Engine, begin: str, synchronous: str) -> None:
        @event.listens_for(engine, "connect")
        def _connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={synchronous.upper()}")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=OFF")
            cur.execute("PRAGMA cache_size=-65536")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            conn.exec_driver_sql(begin)

    def label_equals(self, key: str, value: str) -> ColumnElement[bool]:
        path = '$."' + key.replace('"', "") + '"'
        return func.json_extract(jobs.c.labels, path) == value


class PostgresBackend(Backend):
    """A pooled psycopg 3 engine; NOTIFY wakes the other coordinator replicas."""

    name = "postgres"

    def __init__(self, url: str) -> None:
        super().__init__()
        self.dsn = url
        sa_url = "postgresql+psycopg://" + url.split("://", 1)[1]
        self.write_engine = create_engine(sa_url, pool_size=10, max_overflow=10,
                                          pool_pre_ping=True, pool_timeout=30)
        self.read_engine = self.write_engine
        self._listeners: list[_Listener] = []
        #: Tags this process's notifications so its own listener can skip them: the
        #: engine already woke its local waiters when it committed.
        self.sender = uuid.uuid4().hex[:12]

    def label_equals(self, key: str, value: str) -> ColumnElement[bool]:
        from sqlalchemy import cast

        clause: ColumnElement[bool] = cast(jobs.c.labels, postgresql.JSONB)[key].astext == value
        return clause

    def order_events(self, conn: Connection) -> None:
        # Concurrent transactions draw seq values in one order and may commit in
        # another: a reader at seq N would never see an N-1 committed later. Appends
        # are serialised by a transaction-level advisory lock held to commit; callers
        # take it last, so no one waits on anything while holding it.
        conn.execute(text("SELECT pg_advisory_xact_lock(7843002)"))

    def notify(self, conn: Connection, kinds: set[str]) -> None:
        payload = f"{self.sender}|{','.join(sorted(kinds))}"[:7000]
        conn.execute(text("SELECT pg_notify(:channel, :payload)"),
                     {"channel": NOTIFY_CHANNEL, "payload": payload})

    def subscribe(self, callback: Callable[[set[str]], None]) -> Callable[[], None] | None:
        listener = _Listener(self.dsn, callback, self.sender)
        listener.start()
        self._listeners.append(listener)
        return listener.stop

    def dispose(self) -> None:
        for listener in self._listeners:
            listener.stop()
        super().dispose()


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

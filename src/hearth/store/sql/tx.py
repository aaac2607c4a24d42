"""Transactions on the driver's own connection: SQLAlchemy builds the SQL, the driver runs it.

Every query of the SQL store is written once in SQLAlchemy Core, but SQLAlchemy's
execution layer (connection checkout, events, result metadata built from the cursor
for every call) cost more than the database itself on the hot paths: reading one job
took 360 µs through it and 25 µs through ``sqlite3``. So a statement is compiled by
SQLAlchemy for the backend's dialect, and :class:`Tx` runs the SQL on the DBAPI
connection (``sqlite3`` or ``psycopg``):

- statements built once (module or store constants) are compiled once per process
  (:meth:`Compiler.prepare`); any other statement is compiled when it is run and
  not kept, so per-call statements never pile up;
- rows come back as the driver's tuples, with no SQLAlchemy type processing: numbers,
  strings and bytes as they are, booleans as 0/1 on SQLite. Callers convert (see
  :mod:`hearth.store.sql.codec`);
- driver errors become :mod:`hearth.errors` in :func:`translate_errors`, the one
  place that knows both SQLAlchemy's and the drivers' exception classes.

Never format values into SQL here or anywhere: values are always bound parameters.
"""

from __future__ import annotations

import contextlib
import operator
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.elements import ClauseElement

from hearth.errors import Conflict, HearthError, Unavailable, ValidationError

Params = Mapping[str, Any]


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:200]


def _dbapi_kind(exc: BaseException) -> str | None:
    """The PEP 249 class an exception of either driver belongs to, by name: both
    ``sqlite3`` and ``psycopg`` follow the standard hierarchy."""
    for cls in type(exc).__mro__:
        if cls.__name__ in ("IntegrityError", "DataError", "OperationalError",
                            "InterfaceError", "DatabaseError") and \
                cls.__module__.split(".")[0] in ("sqlite3", "psycopg"):
            return cls.__name__
    return None


@contextlib.contextmanager
def translate_errors() -> Iterator[None]:
    """Turn driver errors (raw, or wrapped by SQLAlchemy) into Hearth errors."""
    try:
        yield
    except HearthError:
        raise
    except OverflowError as exc:
        # SQLite's driver refuses integers beyond 64 bits before the database sees them.
        raise ValidationError("a number in this request is too large for the database "
                              "(at most 2**63 - 1)") from exc
    except sa_exc.TimeoutError as exc:
        raise Unavailable("no database connection was free in time; try again") from exc
    except sa_exc.DBAPIError as exc:
        cause = exc.orig if exc.orig is not None else exc
        _raise_for(cause, exc, invalidated=exc.connection_invalidated)
        raise
    except Exception as exc:
        if _dbapi_kind(exc) is None:
            raise
        _raise_for(exc, exc, invalidated=False)
        raise


def _raise_for(cause: BaseException, exc: BaseException, *, invalidated: bool) -> None:
    kind = _dbapi_kind(cause)
    if kind == "IntegrityError":
        raise Conflict(f"the database refused the change: {cause}") from exc
    if kind == "DataError":
        # A value the database cannot hold, e.g. text with a NUL character on
        # PostgreSQL (SQLite keeps it): bad input, not a fault of the coordinator.
        raise ValidationError(f"the database cannot store a value of this request: "
                              f"{_first_line(cause)}") from exc
    if kind in ("OperationalError", "InterfaceError"):
        raise Unavailable(f"the database is unavailable ({type(cause).__name__}: "
                          f"{_first_line(cause)}); try again") from exc
    if invalidated:
        raise Unavailable("the database connection was lost; try again") from exc


class Compiler:
    """SQL text and parameter order of Core statements, for one dialect."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        #: id(statement) -> (sql, how to order a parameter mapping, the statement kept
        #: alive so its id is never reused while it is here)
        self._prepared: dict[int, tuple[str, Callable[[Params], Any], ClauseElement]] = {}

    def prepare(self, stmt: ClauseElement) -> ClauseElement:
        """Compile ``stmt`` once for good; answer it. Only for statements that live as
        long as the process (constants), never for one built per call."""
        if id(stmt) not in self._prepared:
            built: Any = stmt.compile(dialect=self.dialect)
            self._prepared[id(stmt)] = (str(built), self._orderer(built), stmt)
        return stmt

    @classmethod
    def _orderer(cls, built: Any) -> Callable[[Params], Any]:
        order = cls._by_position(built)
        # Values the statement carries itself (SQLite's "OFFSET 0" after a LIMIT).
        fixed = {name: value for name, value in built.params.items() if value is not None}
        if not fixed:
            return order
        return lambda params: order({**fixed, **params})

    @staticmethod
    def _by_position(built: Any) -> Callable[[Params], Any]:
        if not built.positional:
            return dict
        names = tuple(built.positiontup or ())
        if not names:
            return lambda params: ()
        if len(names) == 1:
            only = names[0]
            return lambda params: (params[only],)
        return operator.itemgetter(*names)

    def bind(self, stmt: ClauseElement, params: Params | None) -> tuple[str, Any]:
        """The SQL and the driver's parameters for one execution of ``stmt``."""
        found = self._prepared.get(id(stmt))
        if found is not None:
            sql, order, _ = found
            return sql, order(params or {})
        built: Any = stmt.compile(dialect=self.dialect)
        state = built.construct_expanded_state(dict(params or {}))
        if built.positional:
            return state.statement, tuple(state.parameters[name]
                                          for name in state.positiontup or ())
        return state.statement, state.parameters

    def order_many(self, stmt: ClauseElement, rows: Sequence[Params]) -> tuple[str, list[Any]]:
        """The SQL and parameter rows of an executemany of a prepared ``stmt``."""
        sql, order, _ = self._prepared[id(self.prepare(stmt))]
        return sql, list(map(order, rows))


class Tx:
    """One transaction, or one read snapshot, on a DBAPI connection."""

    __slots__ = ("_compiler", "_cur", "committed", "conn")

    def __init__(self, compiler: Compiler, conn: Any) -> None:
        self._compiler = compiler
        self.conn = conn
        self._cur = conn.cursor()
        #: Called, in order, right after a successful commit, before the connection
        #: is handed to anyone else (see :meth:`on_commit`).
        self.committed: list[Callable[[], None]] = []

    def on_commit(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` once this transaction has committed (never if it rolls back)."""
        self.committed.append(fn)

    def close(self) -> None:
        self._cur.close()

    @property
    def dialect(self) -> Dialect:
        return self._compiler.dialect

    def prepare(self, stmt: ClauseElement) -> None:
        """Compile ``stmt`` once for good (see :meth:`Compiler.prepare`)."""
        self._compiler.prepare(stmt)

    def rows(self, stmt: ClauseElement, params: Params | None = None) -> list[Any]:
        """Every row of a query, as the driver's tuples."""
        sql, args = self._compiler.bind(stmt, params)
        self._cur.execute(sql, args)
        return self._cur.fetchall()  # type: ignore[no-any-return]

    def first(self, stmt: ClauseElement, params: Params | None = None) -> Any:
        """The first row of a query, or None."""
        sql, args = self._compiler.bind(stmt, params)
        self._cur.execute(sql, args)
        return self._cur.fetchone()

    def scalar(self, stmt: ClauseElement, params: Params | None = None) -> Any:
        row = self.first(stmt, params)
        return None if row is None else row[0]

    def mappings(self, stmt: ClauseElement, params: Params | None = None
                 ) -> list[dict[str, Any]]:
        """Every row of a query as a dict by column name (for the cold paths)."""
        sql, args = self._compiler.bind(stmt, params)
        self._cur.execute(sql, args)
        found = self._cur.fetchall()  # first: in pipeline mode it waits for the answer
        names = [d[0] for d in self._cur.description]
        return [dict(zip(names, row, strict=True)) for row in found]

    def execute(self, stmt: ClauseElement, params: Params | None = None) -> None:
        """Run a statement whose result is not needed. On PostgreSQL it is sent
        without waiting (pipeline mode): an error it causes surfaces at the next read
        or at the commit, still inside this transaction."""
        sql, args = self._compiler.bind(stmt, params)
        self._cur.execute(sql, args)

    def raw(self, sql: str) -> None:
        """Run a fixed SQL command with no parameters (``BEGIN``, ``COMMIT``)."""
        self._cur.execute(sql)

    def executemany(self, stmt: ClauseElement, rows: Sequence[Params]) -> None:
        """Run a statement once per row, in one driver call; ``stmt`` is prepared on
        first use, so pass only statements that live as long as the process."""
        if rows:
            sql, args = self._compiler.order_many(stmt, rows)
            self._cur.executemany(sql, args)


__all__ = ["Compiler", "Params", "Tx", "translate_errors"]

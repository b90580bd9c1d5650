"""Ledger row writes compiled once per statement and dialect, then executed on the driver directly
(SQLAlchemy Core, no Airflow).

SQLAlchemy processes every parameter of every execution in Python (a bound-parameter lookup and, on SQLite, a
``strftime`` per datetime): for a batch's writes that cost more than the database work itself. The statements
here are the same Core statements, compiled once; their parameters are put in the driver's order with each
column's bind processor applied once per distinct value, and passed to ``exec_driver_sql``, which still wraps
driver errors as SQLAlchemy's (an ``IntegrityError`` stays one).

A statement executed for many parameter sets goes to the driver's ``executemany`` only where that is fast
(SQLite in process; MySQL/MariaDB drivers fold an INSERT into one multi-row statement). Elsewhere (psycopg2
sends one statement per set) SQLAlchemy's own batching (``insertmanyvalues``) stays the faster path.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, CursorResult
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import BindParameter

DRIVER_EXECUTEMANY = frozenset({"sqlite", "mysql", "mariadb"})


class DriverStatement:
    """One Core statement compiled for one dialect.

    :param statement: the statement; its parameters are all bound parameters (names as the caller passes
        them) or literals bound at build time (``attempts + 1``)
    :param dialect: the dialect of the connections it runs on
    :param column_keys: for an INSERT, the columns given (the others are left to the database)
    """

    def __init__(
        self, statement: ClauseElement, dialect: Dialect, column_keys: Sequence[str] | None = None
    ) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=list(column_keys or ()) or None)
        if not isinstance(compiled, SQLCompiler):
            raise TypeError(f"not a SQL statement: {statement!r}")
        self.sql = compiled.string
        self.dialect_name = dialect.name
        binds: dict[str, BindParameter[Any]] = compiled.binds
        positional = compiled.positiontup
        self.names: tuple[str, ...] = tuple(positional if positional is not None else binds)
        self.positional = positional is not None
        # a literal bound at build time (``attempts + 1``) keeps its value; a parameter the caller must give
        self.fixed = {
            n: binds[n].value for n in self.names if not binds[n].required and not binds[n].callable
        }
        self.processors: dict[str, Callable[[Any], Any]] = {}
        for name in set(self.names):
            processor = binds[name].type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                self.processors[name] = processor
        # each row's values taken in one C call; only the positions with a processor are visited
        self._take = itemgetter(*self.names) if len(self.names) > 1 else None
        self._processed = tuple(
            (i, name, self.processors[name]) for i, name in enumerate(self.names) if name in self.processors
        )

    def execute(self, conn: Connection, params: Sequence[dict[str, Any]]) -> CursorResult[Any] | None:
        """Run the statement once per parameter set (names as the statement's bound parameters); the
        result of a single execution (its ``lastrowid``), else ``None``."""
        if not params:
            return None
        memo: dict[tuple[str, type, Any], Any] = {}  # a batch's rows mostly share their times and codes
        converted = [self._driver_params(p, memo) for p in params]
        if len(converted) == 1:
            return conn.exec_driver_sql(self.sql, converted[0])
        conn.exec_driver_sql(self.sql, converted)
        return None

    def _driver_params(self, given: dict[str, Any], memo: dict[tuple[str, type, Any], Any]) -> Any:
        if self.fixed:  # the caller may leave a literal out
            given = {**self.fixed, **given}
        try:
            values = self._values(given)
        except KeyError as err:
            raise KeyError(f"no value for the bound parameter {err.args[0]!r}") from None
        for i, name, processor in self._processed:
            value = values[i]
            if value is None:
                continue
            key = (name, type(value), value)
            try:
                values[i] = memo[key]
            except KeyError:
                values[i] = memo[key] = processor(value)
            except TypeError:  # an unhashable value: processed each time
                values[i] = processor(value)
        return tuple(values) if self.positional else dict(zip(self.names, values, strict=True))

    def _values(self, given: dict[str, Any]) -> list[Any]:
        if self._take is not None:
            return list(self._take(given))
        return [given[name] for name in self.names]  # one parameter, or none


class DriverStatements:
    """:class:`DriverStatement` by statement (or key) for one dialect, at most :data:`CACHED` kept."""

    CACHED = 512

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._cache: dict[Any, DriverStatement] = {}

    def get(
        self, key: Any, build: Callable[[], ClauseElement], column_keys: Sequence[str] | None = None
    ) -> DriverStatement:
        found = self._cache.get(key)
        if found is None:
            if len(self._cache) >= self.CACHED:
                self._cache.clear()  # the statements a run uses come back at once
            found = self._cache[key] = DriverStatement(build(), self.dialect, column_keys)
        return found

    def of(self, statement: ClauseElement) -> DriverStatement:
        """``statement`` itself (built and cached elsewhere), compiled once."""
        return self.get(statement, lambda: statement)

    @property
    def has_lastrowid(self) -> bool:
        """Whether the driver tells the id an INSERT gave its row (else ask SQLAlchemy: RETURNING)."""
        return self.dialect.name in DRIVER_EXECUTEMANY

    def runs_many(self, sets: int) -> bool:
        """Whether ``sets`` parameter sets of one statement are best passed to the driver directly."""
        return sets == 1 or self.dialect.name in DRIVER_EXECUTEMANY

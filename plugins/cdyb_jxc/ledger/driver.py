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

On SQLite, unless something listens to SQLAlchemy's cursor events, the statement goes to the connection's
own cursor in the same transaction (SQLAlchemy's execution context cost more than the statement), errors
still wrapped as SQLAlchemy's, and an INSERT of many rows is one multi-row statement: ``executemany`` steps
once per row, and each step hands the GIL to the threads sending requests and then waits to get it back.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Sequence
from itertools import chain
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
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
        # Python's own sqlite3 (pysqlite): its cursor is used directly (see _on_cursor), its errors known
        self.on_cursor = dialect.name == "sqlite" and dialect.driver == "pysqlite" and self.positional
        # an INSERT's head and one row's "(?, ?, …)", for a multi-row INSERT (see _insert_rows)
        self._rows_sql = _values_insert(self.sql) if self.on_cursor else None
        self._by_rows: dict[int, str] = {}

    def execute(self, conn: Connection, params: Sequence[dict[str, Any]]) -> Any:
        """Run the statement once per parameter set (names as the statement's bound parameters); the
        result of a single execution (its ``lastrowid``, its rows), else ``None``."""
        if not params:
            return None
        memo: dict[tuple[str, type, Any], Any] = {}  # a batch's rows mostly share their times and codes
        converted = [self._driver_params(p, memo) for p in params]
        if self.on_cursor and not _observed(conn):
            return self._on_cursor(conn, converted)
        if len(converted) == 1:
            return conn.exec_driver_sql(self.sql, converted[0])
        conn.exec_driver_sql(self.sql, converted)
        return None

    def _on_cursor(self, conn: Connection, converted: list[Any]) -> Any:
        """On the SQLite connection's own cursor, in its transaction; errors wrapped as SQLAlchemy's."""
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            if len(converted) == 1:
                return cursor.execute(self.sql, converted[0])
            if self._rows_sql is None:
                cursor.executemany(self.sql, converted)
            else:
                self._insert_rows(cursor, self._rows_sql, converted)
            cursor.close()
        except sqlite3.Error as err:
            cursor.close()
            raise DBAPIError.instance(self.sql, converted[:1], err, sqlite3.Error) from err
        return None

    def _insert_rows(self, cursor: sqlite3.Cursor, head: tuple[str, str], converted: list[Any]) -> None:
        """An INSERT of many rows as few multi-row statements (within SQLite's parameter limit)."""
        # the limit this SQLite library was built with (a build may keep the old 999)
        variables = cursor.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        per = max(1, min(ROWS_PER_INSERT, variables // max(1, len(self.names))))
        for start in range(0, len(converted), per):
            chunk = converted[start : start + per]
            sql = self._by_rows.get(len(chunk))
            if sql is None:
                if len(self._by_rows) >= 8:  # batch sizes: the profile's limit and a few last batches
                    self._by_rows.clear()
                sql = self._by_rows[len(chunk)] = head[0] + ", ".join([head[1]] * len(chunk))
            cursor.execute(sql, list(chain.from_iterable(chunk)))

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


def _observed(conn: Connection) -> bool:
    """Whether something listens to the statements SQLAlchemy runs (tracing, tests): they then go through
    SQLAlchemy, so it sees each one."""
    dispatch = conn.dispatch
    return bool(dispatch.before_cursor_execute or dispatch.after_cursor_execute)


# Rows of one multi-row INSERT: a batch's rows in one; larger inserts in several, so that the compiled
# statements SQLite keeps stay small
ROWS_PER_INSERT = 200
_VALUES_INSERT = re.compile(r"(INSERT INTO [^()]+ \([^()]*\) VALUES )(\((?:\?, )*\?\))")


def _values_insert(sql: str) -> tuple[str, str] | None:
    """``INSERT INTO t (a, b) VALUES (?, ?)`` split before its row of parameters; ``None`` for any other
    statement (an upsert, ``RETURNING``, a SELECT)."""
    match = _VALUES_INSERT.fullmatch(sql)
    return (match.group(1), match.group(2)) if match else None


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

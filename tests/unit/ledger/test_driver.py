"""Statements compiled once and run on the driver write what SQLAlchemy's own execution writes."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import datetime

import pytest
from sqlalchemy import bindparam, create_engine, event, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from cdyb_jxc.ledger.driver import ROWS_PER_INSERT, DriverStatement, DriverStatements
from cdyb_jxc.ledger.schema import create_tables, upload_row
from tests.conftest import INSTITUTION

AT = datetime(2026, 11, 30, 8, 15, 30, 123456)
LATER = datetime(2026, 11, 30, 9, 0, 0)


@pytest.fixture
def engine(tmp_path) -> Iterator[Engine]:
    eng = create_engine(f"sqlite:///{tmp_path}/driver.db")
    create_tables(eng)
    yield eng
    eng.dispose()


def _row(serial: str, **over: object) -> dict[str, object]:
    values: dict[str, object] = {
        "institution_code": INSTITUTION,
        "serial_no": serial,
        "transaction_code": "JXC003",
        "business_date": "2026-11-30",
        "payload_hash": "h" * 64,
        "state": "PENDING",
        "attempts": 0,
        "held_back": 0,
        "first_seen_at": AT,
        "updated_at": AT,
        "quantity_packages": 1.5,
    }
    return {**values, **over}


def _table(engine: Engine) -> list[dict[str, object]]:
    with engine.connect() as conn:
        rows = conn.execute(select(upload_row).order_by(upload_row.c.serial_no))
        return [dict(r._mapping) for r in rows]


def test_insert_on_the_driver_reads_back_as_an_insert_through_sqlalchemy(engine, tmp_path):
    rows = [_row("D1", detail=None), _row("D2", detail="第二行", updated_at=LATER)]
    columns = tuple(rows[0])
    with engine.begin() as conn:
        DriverStatement(insert(upload_row), engine.dialect, columns).execute(conn, rows)
    reference = create_engine(f"sqlite:///{tmp_path}/reference.db")
    create_tables(reference)
    with reference.begin() as conn:
        conn.execute(insert(upload_row), rows)
    assert _table(engine) == _table(reference)
    assert _table(engine)[0]["first_seen_at"] == AT  # microseconds kept, a datetime again
    reference.dispose()


def test_update_keeps_literals_bound_at_build_time_and_touches_the_named_rows_only(engine):
    with engine.begin() as conn:
        conn.execute(insert(upload_row), [_row("U1"), _row("U2"), _row("U3")])
    t = upload_row.c
    stmt = (
        update(upload_row)
        .where(t.institution_code == bindparam("b_inst"), t.serial_no.in_([bindparam("s0"), bindparam("s1")]))
        .values(state=bindparam("v_state"), updated_at=bindparam("v_at"), attempts=t.attempts + 1)
    )
    with engine.begin() as conn:
        params = {"b_inst": INSTITUTION, "s0": "U1", "s1": "U3", "v_state": "IN_FLIGHT", "v_at": LATER}
        DriverStatement(stmt, engine.dialect).execute(conn, [params])
    got = {r["serial_no"]: (r["state"], r["attempts"], r["updated_at"]) for r in _table(engine)}
    assert got == {"U1": ("IN_FLIGHT", 1, LATER), "U2": ("PENDING", 0, AT), "U3": ("IN_FLIGHT", 1, LATER)}


def test_a_parameter_left_out_is_refused_before_anything_is_written(engine):
    stmt = update(upload_row).where(upload_row.c.serial_no == bindparam("s")).values(state=bindparam("v"))
    with engine.begin() as conn, pytest.raises(KeyError, match="'v'"):
        DriverStatement(stmt, engine.dialect).execute(conn, [{"s": "X"}])


def test_a_taken_key_is_still_sqlalchemys_integrity_error(engine):
    with engine.begin() as conn:
        conn.execute(insert(upload_row), [_row("K1")])
    statement = DriverStatement(insert(upload_row), engine.dialect, tuple(_row("K1")))
    with pytest.raises(IntegrityError), engine.begin() as conn:
        statement.execute(conn, [_row("K2"), _row("K1")])
    assert [r["serial_no"] for r in _table(engine)] == ["K1"]  # the transaction rolled back whole


def test_executemany_goes_to_the_driver_only_where_it_batches(engine):
    from sqlalchemy.dialects import postgresql

    assert DriverStatements(engine.dialect).runs_many(500)
    on_pg = DriverStatements(postgresql.dialect())
    assert on_pg.runs_many(1)
    assert not on_pg.runs_many(2)


def test_statements_are_compiled_once_per_key(engine):
    built: list[int] = []

    def build():
        built.append(1)
        return insert(upload_row)

    cache = DriverStatements(engine.dialect)
    first = cache.get(("insert", ("a",)), build, tuple(_row("C")))
    assert cache.get(("insert", ("a",)), build, tuple(_row("C"))) is first
    assert len(built) == 1


def _insert_traced(engine: Engine, rows: list[dict[str, object]]) -> list[str]:
    """Insert ``rows`` through a DriverStatement; the statements SQLite itself ran."""
    ran: list[str] = []
    with engine.begin() as conn:
        conn.connection.driver_connection.set_trace_callback(ran.append)
        try:
            DriverStatement(insert(upload_row), engine.dialect, tuple(rows[0])).execute(conn, rows)
        finally:
            conn.connection.driver_connection.set_trace_callback(None)
    return [sql for sql in ran if sql.startswith("INSERT")]


def test_many_rows_go_in_a_few_multi_row_inserts_and_read_back_as_sqlalchemys(engine, tmp_path):
    rows = [_row(f"M{n:04d}", detail=f"行{n}" if n % 3 else None) for n in range(ROWS_PER_INSERT * 2 + 7)]
    ran = _insert_traced(engine, rows)
    assert len(ran) == 3  # not one statement per row
    reference = create_engine(f"sqlite:///{tmp_path}/reference.db")
    create_tables(reference)
    with reference.begin() as conn:
        conn.execute(insert(upload_row), rows)
    assert _table(engine) == _table(reference)
    reference.dispose()


def test_a_taken_key_in_a_multi_row_insert_writes_none_of_its_rows(engine):
    with engine.begin() as conn:
        conn.execute(insert(upload_row), [_row("T5")])
    rows = [_row(f"T{n}") for n in range(10)]
    with pytest.raises(IntegrityError, match="UNIQUE"):
        _insert_traced(engine, rows)
    assert [r["serial_no"] for r in _table(engine)] == ["T5"]


def test_statements_go_through_sqlalchemy_while_something_listens_to_its_cursor_events(engine):
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda _c, _cur, sql, *_: seen.append(sql))
    rows = [_row("E1"), _row("E2")]
    with engine.begin() as conn:
        DriverStatement(insert(upload_row), engine.dialect, tuple(rows[0])).execute(conn, rows)
    assert [sql for sql in seen if sql.startswith("INSERT")] == [
        DriverStatement(insert(upload_row), engine.dialect, tuple(rows[0])).sql
    ]
    assert [r["serial_no"] for r in _table(engine)] == ["E1", "E2"]


def test_only_a_plain_insert_becomes_a_multi_row_one():
    from sqlalchemy.dialects import sqlite

    from cdyb_jxc.ledger.rollup import _upsert

    plain = DriverStatement(insert(upload_row), sqlite.dialect(), ("institution_code", "serial_no"))
    assert plain._rows_sql is not None
    assert DriverStatement(_upsert("sqlite"), sqlite.dialect())._rows_sql is None
    assert DriverStatement(select(upload_row.c.state), sqlite.dialect())._rows_sql is None


def test_another_sqlite_driver_keeps_sqlalchemys_execution():
    from sqlalchemy.dialects.sqlite import pysqlcipher

    statement = DriverStatement(insert(upload_row), pysqlcipher.dialect(), ("institution_code", "serial_no"))
    assert not statement.on_cursor  # its errors are its own module's, not sqlite3's


def test_a_multi_row_insert_keeps_within_the_librarys_own_parameter_limit(engine):
    rows = [_row(f"L{n:03d}") for n in range(100)]  # 1,100 parameters in all
    with engine.begin() as conn:
        dbapi = conn.connection.driver_connection
        dbapi.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)  # as a build with the old default
        DriverStatement(insert(upload_row), engine.dialect, tuple(rows[0])).execute(conn, rows)
    assert len(_table(engine)) == 100

"""The four operators in real Airflow runs (dag.test) against the simulator."""

from __future__ import annotations

import json
import sqlite3
from datetime import timedelta

import pytest

from cdyb_jxc.ledger import ACCEPTED, ACCEPTED_RECONCILED, REJECTED, Ledger
from tests.conftest import inbound_row, init_row, outbound_row, stock_row
from tests.dag_factory import upload_task
from tests.integration.operators.conftest import write_csv

NO_DELAY = timedelta(seconds=0)


def _states(ti) -> dict:
    return ti.xcom_pull(task_ids=ti.task_id)["states"]


def test_each_operator_uploads_its_transaction_from_csv(run_dag, centre_conn, tmp_path, store):
    files = {
        "init": write_csv(tmp_path / "init.csv", [init_row("CSH1", 1), init_row("CSH2", 2)]),
        "inbound": write_csv(tmp_path / "in.csv", [inbound_row("RK1", 1)]),
        "outbound": write_csv(
            tmp_path / "out.csv", [outbound_row("CK1", 1), outbound_row("CK2", 2, quantity="0")]
        ),
        "stock": write_csv(tmp_path / "stock.csv", [stock_row("KC1", 1)]),
    }
    ledger = tmp_path / "ledger.db"
    dr = run_dag(
        *(
            upload_task(txn, task_id=txn, source_file=files[txn], ledger_url=f"sqlite:///{ledger}")
            for txn in ("init", "inbound", "outbound", "stock")
        ),
        chain=True,
    )
    assert dr.state == "success"
    tis = {ti.task_id: ti for ti in dr.get_task_instances()}
    assert all(ti.state == "success" for ti in tis.values())  # partial success does not fail the task
    out = tis["outbound"].xcom_pull(task_ids="outbound")
    assert out["states"] == {ACCEPTED: 1, REJECTED: 1}
    assert out["rejects_sample"][0]["serial_no"] == "CK2"
    assert out["rejects_sample"][0]["detail"] == "出库数量(akc226)必须大于0: '0'"
    stored = {(r["transaction_code"], r["serial_no"]) for r in store.accepted_rows()}
    assert stored == {
        ("JXC001", "CSH1"),
        ("JXC001", "CSH2"),
        ("JXC002", "RK1"),
        ("JXC003", "CK1"),
        ("JXC004", "KC1"),
    }
    led = Ledger(f"sqlite:///{ledger}")
    assert led.count_by_state() == {ACCEPTED: 5, REJECTED: 1}
    assert {b["dag_id"] for b in led.batches()} == {dr.dag_id}


def test_sql_source_is_templated_and_read_in_chunks(run_dag, centre_conn, tmp_path, store, monkeypatch):
    his = tmp_path / "his.db"
    with sqlite3.connect(his) as db:
        db.execute("CREATE TABLE dispense (bill TEXT, line INT, day TEXT, item INT, qty REAL, price REAL)")
        db.executemany(
            "INSERT INTO dispense VALUES (?, ?, ?, ?, ?, ?)",
            [
                (f"B{n}", n % 3, "2026-11-20" if n < 7 else "2026-11-21", n % 5 + 1, 1.5, 2.25)
                for n in range(10)
            ],
        )
    monkeypatch.setenv("AIRFLOW_CONN_HIS_DB", f'{{"conn_type": "sqlite", "host": "{his}"}}')
    sql_dir = tmp_path / "sql"
    sql_dir.mkdir()
    (sql_dir / "outbound.sql").write_text(
        """
SELECT 'CK' || replace(day, '-', '') || bill || '-' || line AS serial_no,
       printf('XA%06d', item) AS insurance_item_code, '药品' || item AS hospital_item_name,
       printf('M%04d', item) AS mapping_serial_no, '0' AS split_flag, '盒' AS unit, '21' AS outbound_type,
       price AS sale_price, qty AS quantity, day || ' 08:30:00' AS event_time
FROM dispense WHERE day = '{{ params.day }}'
""",
        encoding="utf-8",
    )
    ledger = tmp_path / "ledger.db"
    dr = run_dag(
        upload_task(
            "outbound",
            task_id="outbound",
            sql="outbound.sql",
            source_conn_id="his_db",
            chunk_size=3,
            ledger_url=f"sqlite:///{ledger}",
        ),
        template_searchpath=[str(sql_dir)],
        params={"day": "2026-11-20"},
    )
    assert dr.state == "success"
    (ti,) = dr.get_task_instances()
    result = ti.xcom_pull(task_ids="outbound")
    assert result["rows_read"] == 7
    assert result["states"] == {ACCEPTED: 7}
    assert {r["serial_no"] for r in store.accepted_rows()} == {f"CK20261120B{n}-{n % 3}" for n in range(7)}
    assert next(store.accepted_rows())["quantity"] == "1.5"


def test_missing_columns_stop_the_task_before_anything_is_sent(run_dag, centre_conn, tmp_path, simulator):
    rows = [{k: v for k, v in outbound_row("CK1").items() if k not in ("unit", "event_time")}]
    src = write_csv(tmp_path / "out.csv", rows)
    dr = run_dag(
        upload_task(
            "outbound",
            task_id="outbound",
            source_file=src,
            ledger_url=f"sqlite:///{tmp_path}/l.db",
            retries=3,
            retry_delay=NO_DELAY,
        )
    )
    (ti,) = dr.get_task_instances()
    assert ti.state == "failed"
    assert ti.try_number == 1  # not retried
    assert simulator.requests == 0


def test_undefined_connection_fails_without_retries_naming_it(run_dag, tmp_path, simulator, capfd):
    src = write_csv(tmp_path / "out.csv", [outbound_row("CK1")])
    dr = run_dag(
        upload_task(
            "outbound",
            task_id="outbound",
            source_file=src,
            cdyb_jxc_conn_id="nosuch_centre",
            ledger_url=f"sqlite:///{tmp_path}/l.db",
            retries=3,
            retry_delay=NO_DELAY,
        )
    )
    (ti,) = dr.get_task_instances()
    assert ti.state == "failed"
    assert ti.try_number == 1  # a missing connection stays missing: not retried
    assert simulator.requests == 0
    out, err = capfd.readouterr()
    assert "AirflowFailException: connection 'nosuch_centre' is not defined" in out + err


def test_rejected_call_fails_without_retries(run_dag, simulator, tmp_path, monkeypatch, store):
    import json

    monkeypatch.setenv(
        "AIRFLOW_CONN_CDYB_JXC_DEFAULT",
        json.dumps(
            {
                "conn_type": "cdyb_jxc",
                "host": simulator.url,
                "login": "his_user",
                "password": "not-the-code",
                "extra": {"institution_code": "H51010400001", "environment": "test"},
            }
        ),
    )
    src = write_csv(tmp_path / "out.csv", [outbound_row("CK1")])
    dr = run_dag(
        upload_task(
            "outbound",
            task_id="outbound",
            source_file=src,
            ledger_url=f"sqlite:///{tmp_path}/l.db",
            retries=3,
            retry_delay=NO_DELAY,
        )
    )
    (ti,) = dr.get_task_instances()
    assert ti.state == "failed"
    assert ti.try_number == 1
    assert simulator.requests == 1
    assert Ledger(f"sqlite:///{tmp_path}/l.db").count_by_state() == {"PENDING": 1}


def test_transport_fault_is_retried_and_the_retry_reconciles(
    run_dag, centre_conn, simulator, tmp_path, store
):
    simulator.set_faults("drop_after_store=1x1")
    src = write_csv(tmp_path / "out.csv", [outbound_row(f"CK{i}") for i in range(3)])
    dr = run_dag(
        upload_task(
            "outbound",
            task_id="outbound",
            source_file=src,
            ledger_url=f"sqlite:///{tmp_path}/l.db",
            resend_attempts=0,
            retries=2,
            retry_delay=NO_DELAY,
        )
    )
    (ti,) = dr.get_task_instances()
    assert ti.state == "success"
    assert ti.try_number == 2
    assert ti.xcom_pull(task_ids="outbound")["states"] == {ACCEPTED_RECONCILED: 3}
    stored = [r["serial_no"] for r in store.accepted_rows()]
    assert sorted(stored) == ["CK0", "CK1", "CK2"]


# --- business_date is checked after rendering, whatever template produced it --------------------------------

INJECTION = "2026-11-20'; DROP TABLE victim; COMMIT; --"


def test_business_date_rendering_to_sql_fails_before_anything_is_queried(
    run_dag, centre_conn, simulator, tmp_path, monkeypatch, pg_database, capfd
):
    """A trigger param reaches ``business_date`` through the DAG's own template (not the packaged macro).
    PostgreSQL runs every statement of a query string, so an unchecked value would drop the table."""
    from sqlalchemy import create_engine, inspect, text
    from sqlalchemy.engine import make_url

    engine = create_engine(pg_database)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS victim"))
        conn.execute(text("CREATE TABLE victim (day TEXT)"))
        conn.execute(text("INSERT INTO victim VALUES ('2026-11-20')"))
    url = make_url(pg_database)
    monkeypatch.setenv(
        "AIRFLOW_CONN_HIS_PG",
        json.dumps(
            {
                "conn_type": "postgres",
                "host": url.host,
                "port": url.port,
                "login": url.username,
                "schema": url.database,
            }
        ),
    )
    sql_dir = tmp_path / "sql"
    sql_dir.mkdir()
    (sql_dir / "outbound.sql").write_text(
        "SELECT day AS serial_no FROM victim WHERE day = '{{ business_date }}'", encoding="utf-8"
    )
    ledger = tmp_path / "ledger.db"
    dr = run_dag(
        upload_task(
            "outbound",
            task_id="outbound",
            sql="outbound.sql",
            source_conn_id="his_pg",
            business_date="{{ params.day }}",
            ledger_url=f"sqlite:///{ledger}",
            retries=3,
            retry_delay=NO_DELAY,
        ),
        template_searchpath=[str(sql_dir)],
        params={"day": INJECTION},
    )
    assert inspect(engine).has_table("victim")  # nothing was queried
    (ti,) = dr.get_task_instances()
    assert ti.state == "failed"
    assert ti.try_number == 1  # not retried: the same value would fail again
    out, err = capfd.readouterr()
    assert f"outbound: business_date must be a date written YYYY-MM-DD, not {INJECTION!r}" in out + err
    assert simulator.requests == 0
    assert Ledger(f"sqlite:///{ledger}").count_by_state() == {}
    engine.dispose()


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-20 ",
        " 2026-11-20",
        "2026-1-120",
        "2026-02-30",
        "20261120",
        "2026-W47-5",
        "2026-11-20T00:00",
        "２０２６-１１-２０",
        "2026-11-20\n",
        "{{ ds }}x",
        20261120,
    ],
)
def test_business_date_that_is_not_a_date_fails_the_task_naming_the_value(value):
    from airflow.sdk.exceptions import AirflowFailException

    from cdyb_jxc.operators.upload import checked_business_date

    with pytest.raises(AirflowFailException) as info:
        checked_business_date(value, "upload_outbound")
    assert str(info.value) == (
        f"upload_outbound: business_date must be a date written YYYY-MM-DD, not {value!r}"
    )


def test_business_date_accepts_a_real_date_a_date_object_or_nothing():
    from datetime import date

    from cdyb_jxc.operators.upload import checked_business_date

    assert checked_business_date("2026-11-20", "t") == "2026-11-20"
    assert checked_business_date(date(2026, 2, 28), "t") == "2026-02-28"
    assert checked_business_date(None, "t") is None
    assert checked_business_date("", "t") is None


def test_business_date_is_checked_when_execute_is_called_without_rendering(centre_conn, simulator, tmp_path):
    from airflow.sdk.exceptions import AirflowFailException

    from cdyb_jxc.operators.upload import CdybJxcOutboundOperator

    src = write_csv(tmp_path / "out.csv", [outbound_row("CK1")])
    op = CdybJxcOutboundOperator(
        task_id="outbound",
        source_file=str(src),
        business_date="1' OR '1'='1",
        ledger_url=f"sqlite:///{tmp_path}/l.db",
    )
    with pytest.raises(AirflowFailException, match="business_date must be a date written YYYY-MM-DD"):
        op.execute({})  # type: ignore[arg-type]
    assert simulator.requests == 0


@pytest.mark.parametrize("k", [0, 9])
def test_max_in_flight_outside_1_to_8_fails_the_task_before_anything_is_sent(
    centre_conn, simulator, tmp_path, k
):
    from airflow.sdk.exceptions import AirflowFailException

    from cdyb_jxc.operators.upload import CdybJxcOutboundOperator

    src = write_csv(tmp_path / "out.csv", [outbound_row("CK1")])
    op = CdybJxcOutboundOperator(
        task_id="outbound", source_file=str(src), ledger_url=f"sqlite:///{tmp_path}/l.db", max_in_flight=k
    )
    with pytest.raises(AirflowFailException) as info:
        op.execute({})  # type: ignore[arg-type]
    assert str(info.value) == f"outbound: max_in_flight must be a whole number from 1 to 8, not {k}"
    assert simulator.requests == 0

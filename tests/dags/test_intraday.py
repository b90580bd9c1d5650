"""The intraday DAG sends day D's inbound and outbound rows during the day; later runs of the day send
nothing twice, the stock waits for the daily run, and a row changed at the source after its intraday
acceptance is a source issue at the daily run, not a second upload."""

from __future__ import annotations

import sqlite3

import pytest

from cdyb_jxc.ledger import Ledger
from tests.dags.test_dags_end_to_end import _run_for, _tis


@pytest.fixture
def intraday_env(demo_env, monkeypatch):
    monkeypatch.setenv("CDYB_JXC_INTRADAY_SCHEDULE", "0 8-22 * * *")
    return demo_env


def _rows_of(ledger: Ledger, day: str) -> dict[str, dict]:
    return {r["serial_no"]: r for r in ledger.iter_rows() if r["business_date"] == day}


def test_intraday_runs_send_the_day_once_and_the_daily_run_adds_the_stock(
    repo_dag, intraday_env, store, simulator
):
    assert repo_dag("cdyb_jxc_init").test().state == "success"
    day = intraday_env["days"][1]
    first = repo_dag("cdyb_jxc_intraday").test(run_conf={"business_date": day})
    assert first.state == "success"
    assert {t: ti.state for t, ti in _tis(first).items()} == dict.fromkeys(
        ("wait_for_initialization", "upload_inbound", "upload_outbound", "resend_returns"), "success"
    )
    ledger = Ledger(intraday_env["ledger_url"])
    rows = _rows_of(ledger, day)
    assert {r["transaction_code"] for r in rows.values()} == {"JXC002", "JXC003"}  # no stock yet
    accepted = {s for s, r in rows.items() if r["state"] == "ACCEPTED"}
    assert len(accepted) > 100
    with sqlite3.connect(intraday_env["his"]) as his:
        sold = his.execute(
            "SELECT count(*) FROM outbound_bill WHERE substr(at, 1, 10) = ?", (day,)
        ).fetchone()[0]
    assert sum(r["transaction_code"] == "JXC003" for r in rows.values()) == sold

    requests, stored = simulator.requests, store.count_rows()
    again = repo_dag("cdyb_jxc_intraday").test(run_conf={"business_date": day})
    assert again.state == "success"
    assert (simulator.requests, store.count_rows()) == (requests, stored)  # nothing twice

    changed = next(s for s in sorted(accepted) if rows[s]["transaction_code"] == "JXC003")
    bill, line = changed.rsplit("-", 1)
    with sqlite3.connect(intraday_env["his"]) as his:
        his.execute("UPDATE outbound_bill SET qty = qty + 1 WHERE bill_no = ? AND line_no = ?", (bill, line))
    daily = repo_dag("cdyb_jxc_daily").test(logical_date=_run_for(day))
    assert daily.state == "success"
    after = _rows_of(ledger, day)
    assert any(r["transaction_code"] == "JXC004" and r["state"] == "ACCEPTED" for r in after.values())
    assert after[changed]["state"] == "ACCEPTED"  # the centre keeps the version it accepted
    assert after[changed]["attempts"] == 1
    issues = [i for i in ledger.iter_source_issues() if i["serial_no"] == changed]
    assert len(issues) == 1
    assert issues[0]["business_date"] == day
    ledger.dispose()

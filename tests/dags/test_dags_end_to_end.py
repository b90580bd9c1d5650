"""The packaged DAGs run end to end with dag.test() against the simulator and a demo HIS."""

from __future__ import annotations

import sqlite3
from datetime import date, datetime, timedelta

import pandas as pd
import pendulum

from cdyb_jxc.ledger import Ledger
from tests.conftest import INSTITUTION

TZ = pendulum.timezone("Asia/Shanghai")


def _run_for(day: str) -> datetime:
    """Logical date of the daily run covering business day ``day`` (its interval starts at D 02:00 +08:00)."""
    d = date.fromisoformat(day) + timedelta(days=1)
    return pendulum.datetime(d.year, d.month, d.day, 2, tz=TZ)


def _tis(dr) -> dict:
    return {ti.task_id: ti for ti in dr.get_task_instances()}


def test_init_then_daily_with_partial_success_takes_the_reject_branch(repo_dag, demo_env, store, simulator):
    init = repo_dag("cdyb_jxc_init").test()
    assert init.state == "success"
    ledger = Ledger(demo_env["ledger_url"])
    assert ledger.milestone(INSTITUTION, "initialization") is not None
    stored_init = [r for r in store.accepted_rows() if r["transaction_code"] == "JXC001"]
    assert len(stored_init) > 100

    day = demo_env["days"][1]
    dr = repo_dag("cdyb_jxc_daily").test(logical_date=_run_for(day))
    assert dr.state == "success"
    tis = _tis(dr)
    assert tis["report_rejects"].state == "success"
    assert tis["all_accepted"].state == "skipped"
    assert tis["done"].state == "success"
    outbound = tis["upload_outbound"].xcom_pull(task_ids="upload_outbound")
    assert outbound["states"].get("ACCEPTED", 0) > 100
    report = tis["report_rejects"].xcom_pull(task_ids="report_rejects")
    assert report["rows"] > 0
    frame = pd.read_excel(report["excel"])
    assert set(frame["业务日期 business_date"]) == {day}
    reasons = set(frame["类别 category"])
    assert reasons & {"字段校验失败", "字符集错误", "未对码"}
    assert frame["原因 reason"].str.len().min() > 5
    assert pd.read_csv(report["csv"]).shape == frame.shape
    # only day D was uploaded, each accepted row stored once at the centre
    days = {r["event_time"][:10] for r in store.accepted_rows() if r["transaction_code"] == "JXC003"}
    assert days == {day}
    stored = {(r["transaction_code"], r["serial_no"]) for r in store.accepted_rows()}
    accepted = {
        (r["transaction_code"], r["serial_no"])
        for r in ledger.iter_rows()
        if r["state"] in ("ACCEPTED", "ACCEPTED_RECONCILED")
    }
    assert stored == accepted


def test_daily_skips_everything_until_initialization(repo_dag, demo_env, simulator):
    dr = repo_dag("cdyb_jxc_daily").test(logical_date=_run_for(demo_env["days"][0]))
    tis = _tis(dr)
    assert tis["wait_for_initialization"].state == "success"
    assert {tis[t].state for t in tis if t != "wait_for_initialization"} == {"skipped"}
    assert simulator.requests == 0


def test_second_initialization_refuses_unless_forced(repo_dag, demo_env, simulator, store):
    dag = repo_dag("cdyb_jxc_init")
    assert dag.test().state == "success"
    sent = simulator.requests
    stored = store.count_rows()
    again = dag.test()
    tis = _tis(again)
    assert again.state == "failed"
    assert tis["check_not_initialized"].state == "failed"
    assert tis["upload_init"].state == "upstream_failed"
    assert simulator.requests == sent
    forced = dag.test(run_conf={"force": True})
    assert forced.state == "success"
    summary = _tis(forced)["upload_init"].xcom_pull(task_ids="upload_init")
    # accepted rows are never sent again; only rows still rejected for a reason that can clear (未对码) go out
    assert summary["already_accepted"] == stored
    assert store.count_rows() == stored


def test_rerun_sends_nothing_twice_and_fixed_rows_go_out_next_run(repo_dag, demo_env, store, simulator):
    assert repo_dag("cdyb_jxc_init").test().state == "success"
    daily = repo_dag("cdyb_jxc_daily")
    day1, day2 = demo_env["days"][1], demo_env["days"][2]
    # five of day 1's outbound lines get quantity 0 at the source: held back as REJECTED (R1)
    with sqlite3.connect(demo_env["his"]) as his:
        broken = his.execute(
            "SELECT bill_no, line_no FROM outbound_bill WHERE substr(at, 1, 10) = ? ORDER BY rowid LIMIT 5",
            (day1,),
        ).fetchall()
        his.executemany("UPDATE outbound_bill SET qty = 0 WHERE bill_no = ? AND line_no = ?", broken)
    assert daily.test(logical_date=_run_for(day1)).state == "success"
    ledger = Ledger(demo_env["ledger_url"])
    rows = {r["serial_no"]: r for r in ledger.iter_rows()}
    zero = [f"{bill}-{line}" for bill, line in broken]
    fixable = [s for s in zero if (rows[s]["state"], rows[s]["field"]) == ("REJECTED", "quantity")]
    assert fixable, [rows[s] for s in zero]  # the demo data is seeded: the same lines every run
    assert rows[fixable[0]]["detail"] == "出库数量(akc226)必须大于0: '0'"
    batches = len(ledger.batches())
    stored = store.count_rows()
    # re-running the same business day sends nothing
    again = daily.test(logical_date=_run_for(day1), run_conf={"business_date": day1})
    assert again.state == "success"
    assert store.count_rows() == stored
    assert len(ledger.batches()) == batches
    # fixed at the source; day 2's run rechecks day 1 and sends them, same 流水号
    with sqlite3.connect(demo_env["his"]) as his:
        his.executemany("UPDATE outbound_bill SET qty = 2 WHERE bill_no = ? AND line_no = ?", broken)
    dr = daily.test(logical_date=_run_for(day2))
    assert dr.state == "success"
    rows = {r["serial_no"]: r for r in ledger.iter_rows()}
    assert {rows[s]["state"] for s in fixable} == {"ACCEPTED"}
    assert set(fixable) <= {r["serial_no"] for r in store.accepted_rows()}
    stored_serials = [r["serial_no"] for r in store.accepted_rows()]
    assert len(stored_serials) == len(set(stored_serials))
    late = [r["late_seconds"] for r in ledger.iter_rows() if r["state"] == "ACCEPTED"]
    assert all(v is not None for v in late)

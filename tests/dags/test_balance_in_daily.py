"""The daily DAG audits the day's 进销存平衡 once its stock is uploaded: the accepted rows beside the
source's, in a balance report; an item the HIS itself does not balance takes the report branch."""

from __future__ import annotations

import csv

from cdyb_jxc.ledger import Ledger
from tests.dags.test_dags_end_to_end import _run_for, _tis


def test_the_daily_run_reports_an_item_the_his_does_not_balance(repo_dag, demo_env, simulator):
    assert repo_dag("cdyb_jxc_init").test().state == "success"
    runs = [repo_dag("cdyb_jxc_daily").test(logical_date=_run_for(day)) for day in demo_env["days"]]
    assert [dr.state for dr in runs] == ["success"] * 3
    last = _tis(runs[-1])
    balance = last["audit_balance"].xcom_pull(task_ids="audit_balance")
    assert balance["items"] > 50
    assert balance["source_imbalance"] >= 1  # the demo HIS counts item 1 one box too many on its last day
    with open(balance["csv"], encoding="utf-8-sig", newline="") as fh:
        rows = {r["mapping_serial_no"]: r for r in csv.DictReader(fh)}
    item_1 = next(r for serial, r in rows.items() if serial.endswith("0001"))
    assert item_1["source_status"] == "imbalance"
    # the monitor's copy: the day's counts and the items that are not ok, item 1 among them
    ledger = Ledger(demo_env["ledger_url"])
    day = demo_env["days"][-1]
    audited = ledger.balance_days(day, day)[day]
    assert (audited["items"], audited["source_imbalance"]) == (balance["items"], balance["source_imbalance"])
    flagged = {r["mapping_serial_no"]: r for r in ledger.balance_items(day)}
    ledger.dispose()
    assert flagged[next(s for s in flagged if s.endswith("0001"))]["source_status"] == "imbalance"
    assert all(r["status"] != "ok" or r["source_status"] != "ok" for r in flagged.values())
    assert last["check_partial_success"].state == "success"
    assert last["report_rejects"].state == "success"

"""The preflight DAG checks day D's rows the evening before, sends nothing, and lists exactly what the
02:00 upload then holds back (held-back rejects and source issues), in a report beside the reject reports."""

from __future__ import annotations

import csv

from cdyb_jxc.ledger import Ledger
from tests.conftest import INSTITUTION
from tests.dags.test_dags_end_to_end import _run_for, _tis


def _report_rows(path: str) -> set[tuple[str, str, str, str, str]]:
    with open(path, encoding="utf-8-sig", newline="") as fh:
        return {
            (r["transaction"], r["serial_no"], r["category"], r["field"], r["detail"])
            for r in csv.DictReader(fh)
        }


def _held_back_on(ledger: Ledger, day: str) -> set[tuple[str, str, str, str, str]]:
    daily = ("JXC002", "JXC003", "JXC004")
    rows = {
        (r["transaction_code"], r["serial_no"], r["category"], r["field"], r["detail"])
        for r in ledger.iter_rows()
        if r["held_back"] and r["business_date"] == day and r["transaction_code"] in daily
    }
    issues = {
        (i["transaction_code"], i["serial_no"] or "", "源数据问题", i["field"], i["detail"])
        for i in ledger.iter_source_issues()
        if i["business_date"] == day
    }
    return rows | issues


def test_preflight_lists_what_the_upload_then_holds_back(repo_dag, demo_env, store, simulator, monkeypatch):
    monkeypatch.setenv("CDYB_JXC_MAPPING_FILE", str(demo_env["his"].with_name("mapping.csv")))
    assert repo_dag("cdyb_jxc_init").test().state == "success"
    day = demo_env["days"][1]
    sent, stored = simulator.requests, store.count_rows()
    ledger = Ledger(demo_env["ledger_url"])
    before = len(list(ledger.iter_rows()))

    preflight = repo_dag("cdyb_jxc_preflight").test(run_conf={"business_date": day})
    assert preflight.state == "success"
    tis = _tis(preflight)
    assert {tis[f"validate_{t}"].state for t in ("inbound", "outbound", "stock")} == {"success"}
    report = tis["report_preflight"].xcom_pull(task_ids="report_preflight")
    assert (simulator.requests, store.count_rows()) == (sent, stored)  # nothing went to the centre
    assert len(list(ledger.iter_rows())) == before  # nor into the ledger
    assert report["csv"].endswith(f"preflight_{INSTITUTION}_{day}.csv")
    listed = _report_rows(report["csv"])
    assert report["rows"] == len(listed) > 0
    assert {category for _, _, category, _, _ in listed} >= {"未对码"}

    daily = repo_dag("cdyb_jxc_daily").test(logical_date=_run_for(day))
    assert daily.state == "success"
    assert listed == _held_back_on(ledger, day)
    ledger.dispose()

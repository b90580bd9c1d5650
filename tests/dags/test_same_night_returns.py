"""A patient return (入库类型 15) of the same day is refused 【原出库记录不存在】 when inbound goes first, and
goes out again in the same daily run once its outbound is accepted; one whose outbound is of a day not sent
yet waits, without being sent again for nothing."""

from __future__ import annotations

import sqlite3

from cdyb_jxc.ledger import Ledger
from tests.dags.test_dags_end_to_end import _run_for, _tis


def test_same_day_returns_are_accepted_in_the_same_run(repo_dag, demo_env, store, simulator):
    assert repo_dag("cdyb_jxc_init").test().state == "success"
    day = demo_env["days"][1]
    with sqlite3.connect(demo_env["his"]) as his:
        returns = his.execute(
            "SELECT b.bill_no || '-' || b.line_no, b.return_of, substr(o.at, 1, 10) FROM inbound_bill b "
            "JOIN outbound_bill o ON o.bill_no || '-' || o.line_no = b.return_of "
            "WHERE b.kind = '15' AND substr(b.at, 1, 10) = ?",
            (day,),
        ).fetchall()
    same_day = {serial for serial, _, sold in returns if sold == day}
    earlier = {serial for serial, _, sold in returns if sold < day}
    assert same_day, "the demo HIS has a same-day return on this day"

    dr = repo_dag("cdyb_jxc_daily").test(logical_date=_run_for(day))
    assert dr.state == "success"
    assert _tis(dr)["resend_returns"].state == "success"
    ledger = Ledger(demo_env["ledger_url"])
    rows = {r["serial_no"]: r for r in ledger.iter_rows()}
    ledger.dispose()
    assert {rows[s]["state"] for s in same_day} == {"ACCEPTED"}
    accepted = {r["serial_no"] for r in store.accepted_rows() if r["transaction_code"] == "JXC002"}
    assert same_day <= accepted
    # an earlier day's outbound was never sent: those returns stay refused, sent once only
    for serial in earlier:
        assert (rows[serial]["state"], rows[serial]["category"]) == ("REJECTED", "原出库记录不存在")
        assert rows[serial]["attempts"] == 1

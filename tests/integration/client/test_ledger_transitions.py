"""Every ledger transition, against the real simulator over loopback; ledger on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cdyb_jxc.exceptions import CallRejectedError, InDoubtError, TransportError
from cdyb_jxc.ledger import (
    ACCEPTED,
    ACCEPTED_RECONCILED,
    DUPLICATE_CONFLICT,
    IN_DOUBT,
    IN_FLIGHT,
    PENDING,
    REJECTED,
    Ledger,
)
from cdyb_jxc.ledger.schema import upload_row
from cdyb_jxc.upload.engine import Uploader
from cdyb_jxc.upload.result import RunInfo
from cdyb_jxc.wire.client import CentreClient
from cdyb_jxc.wire.rules import MappingEntry
from cdyb_jxc.wire.values import row_to_wire
from tests.conftest import INSTITUTION, SECRET, USER, outbound_row


def _uploader(profile, client, ledger, txn_key="outbound", **kw) -> Uploader:
    kw.setdefault("resend_attempts", 0)
    return Uploader(
        profile=profile,
        txn_key=txn_key,
        institution_code=INSTITUTION,
        sender=client,
        ledger=ledger,
        sleep=lambda s: None,
        **kw,
    )


def _rows(ledger: Ledger) -> dict[str, dict]:
    return {r["serial_no"]: r for r in ledger.iter_rows()}


def _stored(store) -> list[str]:
    return sorted(r["serial_no"] for r in store.accepted_rows())


def test_all_rows_accepted(profile, client, ledger, store):
    result = _uploader(profile, client, ledger).run([[outbound_row(f"CK{i}") for i in range(5)]])
    assert result.states == {ACCEPTED: 5}
    rows = _rows(ledger)
    assert {r["state"] for r in rows.values()} == {ACCEPTED}
    assert all(r["attempts"] == 1 and r["accepted_at"] is not None for r in rows.values())
    assert rows["CK0"]["business_date"] == "2026-11-20"
    assert _stored(store) == [f"CK{i}" for i in range(5)]
    (batch,) = ledger.batches()
    assert (batch["outcome"], batch["row_count"], batch["retcode"]) == ("success", 5, "1")
    assert "<jyfwyzm>******</jyfwyzm>" in batch["request"]
    assert f"<jyfwyh>{USER}</jyfwyh>" in batch["request"]  # the request as sent, only the 验证码 redacted
    assert SECRET not in batch["request"]


def test_batches_respect_the_limit(profile, client, ledger, store):
    result = _uploader(profile, client, ledger, batch_limit=40).run(
        [[outbound_row(f"B{i:03d}") for i in range(250)]]
    )
    assert result.batches == 7
    assert [b["row_count"] for b in ledger.batches()] == [40] * 6 + [10]
    assert len(_stored(store)) == 250


def test_rows_that_would_certainly_fail_are_held_back_and_never_sent(profile, client, ledger, store):
    registry = {"M0001": MappingEntry("XA000001")}
    rows = [
        outbound_row("OK1"),
        outbound_row("GBK1", hospital_item_name="艾司唑仑(䓬)"),
        outbound_row("LEN1", lot_no="批" * 16),
        outbound_row("MAP1", 2),
        outbound_row("CTL1", hospital_item_name="坏\x01名"),
    ]
    result = _uploader(profile, client, ledger, registry=registry).run([rows])
    assert result.held_back == 4
    state = _rows(ledger)
    assert state["OK1"]["state"] == ACCEPTED
    assert (state["GBK1"]["state"], state["GBK1"]["category"], state["GBK1"]["field"]) == (
        REJECTED,
        "字符集错误",
        "hospital_item_name",
    )
    assert state["GBK1"]["detail"] == "医院项目名称(yka095)含GBK无法表示的字符'䓬'(U+44EC)"
    assert state["LEN1"]["detail"] == "生产批号(scph)长度超过30字节(实际32字节)"
    assert state["MAP1"]["category"] == "未对码"
    assert state["CTL1"]["detail"] == "医院项目名称(yka095)含控制字符U+0001"
    assert all(
        state[s]["held_back"] == 1 and state[s]["attempts"] == 0 for s in ("GBK1", "LEN1", "MAP1", "CTL1")
    )
    assert _stored(store) == ["OK1"]
    assert ledger.batches()[0]["row_count"] == 1


def test_server_rejections_are_kept_with_category_and_detail(profile, client, ledger, store):
    rows = [outbound_row("A"), outbound_row("B", mapping_serial_no="M9999"), outbound_row("C", 3)]
    result = _uploader(profile, client, ledger).run([rows])
    assert result.states == {ACCEPTED: 2, REJECTED: 1}
    b = _rows(ledger)["B"]
    assert (b["state"], b["category"], b["field"], b["held_back"]) == (
        REJECTED,
        "未对码",
        "mapping_serial_no",
        0,
    )
    assert b["detail"] == "医院对码流水号(ake005)'M9999'未对码"
    assert result.rejects == [
        {
            "serial_no": "B",
            "item": "M9999",
            "item_name": "阿莫西林胶囊1号",
            "category": "未对码",
            "field": "mapping_serial_no",
            "detail": "医院对码流水号(ake005)'M9999'未对码",
        }
    ]
    assert ledger.batches()[0]["outcome"] == "partial"


def test_rejected_row_goes_again_under_the_same_serial_once_fixed(profile, client, ledger, store):
    _uploader(profile, client, ledger).run([[outbound_row("R1", sale_price="-1")]])
    assert _rows(ledger)["R1"]["state"] == REJECTED
    # unchanged: not sent again
    again = _uploader(profile, client, ledger).run([[outbound_row("R1", sale_price="-1")]])
    assert (again.rows_sent, again.states) == (0, {REJECTED: 1})
    # fixed at the source: same 流水号 goes out and is accepted
    fixed = _uploader(profile, client, ledger).run([[outbound_row("R1", sale_price="1")]])
    assert fixed.states == {ACCEPTED: 1}
    row = _rows(ledger)["R1"]
    assert (row["state"], row["category"], row["detail"], row["held_back"]) == (ACCEPTED, None, None, 0)
    assert _stored(store) == ["R1"]


def test_unmapped_rejection_is_retried_unchanged_once_the_mapping_exists(profile, client, ledger, store):
    _uploader(profile, client, ledger).run([[outbound_row("U1", mapping_serial_no="M0777")]])
    assert _rows(ledger)["U1"]["state"] == REJECTED
    # right away (a re-run of the day) it is not sent again ...
    rerun = _uploader(profile, client, ledger).run([[outbound_row("U1", mapping_serial_no="M0777")]])
    assert (rerun.rows_sent, rerun.states) == (0, {REJECTED: 1})
    # ... once the 对码 exists and the resend interval has passed, the unchanged row goes out again
    store.add_mapping([(INSTITUTION, "M0777", "XA000001", False)])
    later = _uploader(profile, client, ledger, resend_rejected_after=timedelta(0))
    assert later.run([[outbound_row("U1", mapping_serial_no="M0777")]]).states == {ACCEPTED: 1}


def test_accepted_rows_are_never_sent_twice(profile, client, ledger, store):
    rows = [outbound_row(f"S{i}") for i in range(3)]
    _uploader(profile, client, ledger).run([rows])
    rerun = _uploader(profile, client, ledger).run([rows])
    assert rerun.rows_sent == 0
    assert rerun.already_accepted == 3
    assert len(ledger.batches()) == 1


def test_in_flight_is_committed_before_the_request_is_sent(profile, client, ledger, ledger_url):
    seen: list[str] = []

    class Spy:
        def send(self, txn_key, rows):
            other = Ledger(ledger_url)  # a separate connection sees only committed state
            seen.extend(other.states(INSTITUTION, [r["serial_no"] for r in rows]).values())
            other.dispose()
            return client.send(txn_key, rows)

    _uploader(profile, Spy(), ledger).run([[outbound_row("F1"), outbound_row("F2")]])
    assert seen == [IN_FLIGHT, IN_FLIGHT]
    assert {r["state"] for r in _rows(ledger).values()} == {ACCEPTED}


def test_reply_lost_after_store_then_retry_is_reconciled(profile, client, ledger, store, simulator):
    rows = [outbound_row(f"L{i}") for i in range(4)]
    simulator.set_faults("drop_after_store=1x1")
    with pytest.raises(InDoubtError):
        _uploader(profile, client, ledger).run([rows])
    assert {r["state"] for r in _rows(ledger).values()} == {IN_DOUBT}
    assert _stored(store) == ["L0", "L1", "L2", "L3"]
    result = _uploader(profile, client, ledger).run([rows])
    assert result.states == {ACCEPTED_RECONCILED: 4}
    state = _rows(ledger)
    assert {r["state"] for r in state.values()} == {ACCEPTED_RECONCILED}
    assert all(r["attempts"] == 2 for r in state.values())
    assert _stored(store) == ["L0", "L1", "L2", "L3"]  # each stored once
    assert [b["outcome"] for b in ledger.batches()] == ["in_doubt", "failure"]


def test_reply_lost_is_resent_within_the_same_run(profile, client, ledger, store, simulator):
    simulator.set_faults("missing_output=1x1")
    result = _uploader(profile, client, ledger, resend_attempts=2).run(
        [[outbound_row("W1"), outbound_row("W2")]]
    )
    assert result.states == {ACCEPTED_RECONCILED: 2}
    assert _stored(store) == ["W1", "W2"]


def test_reply_lost_before_store_then_retry_is_plainly_accepted(profile, client, ledger, store, simulator):
    simulator.set_faults("drop_before_store=1x1")
    with pytest.raises(InDoubtError):
        _uploader(profile, client, ledger).run([[outbound_row("P1")]])
    assert _stored(store) == []
    assert _uploader(profile, client, ledger).run([[outbound_row("P1")]]).states == {ACCEPTED: 1}


def test_partial_reply_without_dataset_leaves_the_unlisted_rows_in_doubt_not_accepted(
    profile, client, ledger, store, simulator
):
    # retcode 2 with failnum 1 but no dataset (SPEC allows a missing dataset): which row failed is unknown
    rows = [outbound_row("N1"), outbound_row("N2", mapping_serial_no="M9999"), outbound_row("N3")]
    simulator.set_faults("no_dataset=1x1")
    with pytest.raises(InDoubtError, match="3 rows are still IN_DOUBT after replies that contradict"):
        _uploader(profile, client, ledger).run([rows])
    state = _rows(ledger)
    assert {r["state"] for r in state.values()} == {IN_DOUBT}
    assert state["N1"]["detail"] == (
        "应答不一致: 返回码2(部分成功)却未列出失败记录; 返回信息: 本次上传3条，成功2条，失败1条"
    )
    assert [b["outcome"] for b in ledger.batches()] == ["in_doubt"]
    # the next try resends them: the saved rows reconcile, the failed one gets the centre's reason
    result = _uploader(profile, client, ledger).run([rows])
    assert result.states == {ACCEPTED_RECONCILED: 2, REJECTED: 1}
    state = _rows(ledger)
    assert state["N2"]["state"] == REJECTED
    assert state["N2"]["category"] == "未对码"
    assert _stored(store) == ["N1", "N3"]


def test_contradicting_batch_does_not_hold_up_the_other_batches(profile, client, ledger, store, simulator):
    """Rows whose reply contradicts itself stay IN_DOUBT; the run still sends every other batch, then asks
    for a retry."""
    rows = [outbound_row("H1"), outbound_row("H2", mapping_serial_no="M9999"), outbound_row("H3")]
    simulator.set_faults("no_dataset=1x1")
    # one request at a time: the fault hits the first call the centre gets, which must be the first batch
    with pytest.raises(InDoubtError, match="2 rows are still IN_DOUBT"):
        _uploader(profile, client, ledger, batch_limit=2, max_in_flight=1).run([rows])
    state = _rows(ledger)
    assert {s: r["state"] for s, r in state.items()} == {"H1": IN_DOUBT, "H2": IN_DOUBT, "H3": ACCEPTED}
    result = _uploader(profile, client, ledger, batch_limit=2).run([rows])
    assert result.states == {ACCEPTED_RECONCILED: 1, REJECTED: 1, ACCEPTED: 1}
    assert _stored(store) == ["H1", "H3"]


def test_reply_that_trims_a_padded_serial_is_matched_to_its_row(profile, client, ledger, store):
    """CHAR(n) sources pad the 流水号; a reply that lists it trimmed still names that row."""
    rows = [outbound_row("PAD1  ", mapping_serial_no="M9999"), outbound_row("PAD2")]
    result = _uploader(profile, client, ledger).run([rows])
    assert result.states == {REJECTED: 1, ACCEPTED: 1}
    assert _rows(ledger)["PAD1  "]["category"] == "未对码"


def test_all_failed_reply_without_dataset_is_in_doubt_not_a_rejected_call(
    profile, client, ledger, store, simulator
):
    rows = [outbound_row("V1"), outbound_row("V2")]
    simulator.set_faults("drop_after_store=1x1")
    with pytest.raises(InDoubtError):
        _uploader(profile, client, ledger).run([rows])  # stored, reply lost
    # the resend is answered -1 (both 【数据重复上传】) with failnum 2 but no dataset: not a refused call
    simulator.set_faults("no_dataset=1x1")
    with pytest.raises(InDoubtError, match="2 rows are still IN_DOUBT after replies that contradict"):
        _uploader(profile, client, ledger).run([rows])
    assert {r["state"] for r in _rows(ledger).values()} == {IN_DOUBT}
    assert _uploader(profile, client, ledger).run([rows]).states == {ACCEPTED_RECONCILED: 2}
    assert _stored(store) == ["V1", "V2"]


def test_self_contradicting_reply_is_resolved_within_the_same_run(profile, client, ledger, store, simulator):
    rows = [outbound_row("Q1"), outbound_row("Q2", mapping_serial_no="M9999")]
    simulator.set_faults("no_dataset=1x1")
    result = _uploader(profile, client, ledger, resend_attempts=1).run([rows])
    assert result.states == {ACCEPTED_RECONCILED: 1, REJECTED: 1}
    assert [(r["serial_no"], r["category"]) for r in result.rejects] == [("Q2", "未对码")]
    assert _stored(store) == ["Q1"]


def test_duplicate_for_a_row_never_sent_is_a_conflict(profile, client, ledger, store):
    # another system already stored CK-X at the centre under this institution
    other = CentreClient(
        profile, endpoint=client.endpoint, user=USER, verification_code=SECRET, institution_code=INSTITUTION
    )
    assert other.send("outbound", [outbound_row("CK-X")]).reply.status == "success"
    result = _uploader(profile, client, ledger).run(
        [[outbound_row("CK-X", quantity="3"), outbound_row("CK-Y")]]
    )
    assert result.states == {DUPLICATE_CONFLICT: 1, ACCEPTED: 1}
    row = _rows(ledger)["CK-X"]
    assert row["state"] == DUPLICATE_CONFLICT
    assert row["detail"] == "流水号(yka105)'CK-X'已上传（本客户端从未发送过该流水号）"
    # a conflict is not sent again on the next run
    assert _uploader(profile, client, ledger).run([[outbound_row("CK-X", quantity="3")]]).rows_sent == 0


def test_in_doubt_row_changed_at_the_source_is_a_conflict_not_reconciled(
    profile, client, ledger, store, simulator
):
    simulator.set_faults("empty_200=1x1")
    with pytest.raises(InDoubtError):
        _uploader(profile, client, ledger).run([[outbound_row("D1", quantity="2")]])
    result = _uploader(profile, client, ledger).run([[outbound_row("D1", quantity="5")]])
    assert result.states == {DUPLICATE_CONFLICT: 1}
    assert _rows(ledger)["D1"]["detail"].endswith("（在途记录内容已变化）")


def test_crash_leaves_in_flight_rows_that_the_next_run_reconciles(profile, client, ledger, store):
    """A worker killed after sending leaves IN_FLIGHT rows; the next run treats them as in doubt."""

    class Crash(BaseException):
        pass

    class SendThenDie:
        def send(self, txn_key, rows):
            client.send(txn_key, rows)  # the centre stores the rows …
            raise Crash  # … and the worker dies before the reply is recorded

    with pytest.raises(Crash):
        _uploader(profile, SendThenDie(), ledger).run([[outbound_row("K1"), outbound_row("K2")]])
    assert {r["state"] for r in _rows(ledger).values()} == {IN_FLIGHT}
    result = _uploader(profile, client, ledger).run([[outbound_row("K1"), outbound_row("K2")]])
    assert result.states == {ACCEPTED_RECONCILED: 2}
    assert _stored(store) == ["K1", "K2"]


def test_unreachable_endpoint_leaves_rows_pending(profile, ledger):
    dead = CentreClient(
        profile,
        endpoint="http://127.0.0.1:9/services/SjcjService",
        user=USER,
        verification_code=SECRET,
        institution_code=INSTITUTION,
        timeout=2,
    )
    with pytest.raises(TransportError, match="could not reach"):
        _uploader(profile, dead, ledger).run([[outbound_row("T1")]])
    row = _rows(ledger)["T1"]
    assert row["state"] == PENDING
    assert row["detail"].startswith("未发送: could not reach http://127.0.0.1:9/services/SjcjService")
    assert ledger.batches()[0]["outcome"] == "not_sent"


def test_whole_call_rejected_is_not_retried_and_rows_stay_pending(profile, simulator, ledger, store):
    wrong = CentreClient(
        profile,
        endpoint=simulator.url,
        user=USER,
        verification_code="wrong-code",
        institution_code=INSTITUTION,
    )
    # one call out at a time: with more, a second batch is out before the first one's answer is back
    uploader = _uploader(profile, wrong, ledger, resend_attempts=3, max_in_flight=1)
    with pytest.raises(CallRejectedError, match="用户名或验证码错误") as info:
        uploader.run([[outbound_row("C1")], [outbound_row("C2")]])
    assert info.value.category == "用户名或验证码错误"
    assert _rows(ledger)["C1"]["state"] == PENDING
    # stopped at the first rejected call: the next chunk may have been planned while the call was out
    # (recorded PENDING), but it never went out
    assert _rows(ledger).get("C2", {"state": PENDING})["state"] == PENDING
    assert [b["outcome"] for b in ledger.batches()] == ["rejected"]
    assert simulator.requests == 1


def test_whole_call_rejection_keeps_in_doubt_rows_in_doubt(profile, client, simulator, ledger, store):
    simulator.set_faults("drop_after_store=1x1")
    with pytest.raises(InDoubtError):
        _uploader(profile, client, ledger).run([[outbound_row("Z1")]])
    wrong = CentreClient(
        profile, endpoint=simulator.url, user=USER, verification_code="wrong", institution_code=INSTITUTION
    )
    with pytest.raises(CallRejectedError):
        _uploader(profile, wrong, ledger).run([[outbound_row("Z1")]])
    assert _rows(ledger)["Z1"]["state"] == IN_DOUBT
    assert _uploader(profile, client, ledger).run([[outbound_row("Z1")]]).states == {ACCEPTED_RECONCILED: 1}


def test_serial_repeated_in_the_source_is_uploaded_once_and_reported(profile, client, ledger, store):
    result = _uploader(profile, client, ledger).run(
        [[outbound_row("S1"), outbound_row("S2")], [outbound_row("S1")]]
    )
    assert result.duplicate_in_source == 1
    assert result.rejects[0]["serial_no"] == "S1"
    assert _stored(store) == ["S1", "S2"]


def test_lateness_against_t_plus_one_is_recorded(profile, client, ledger, store):
    _uploader(profile, client, ledger).run([[outbound_row("OLD", event_time="2026-01-05 10:00:00")]])
    row = _rows(ledger)["OLD"]
    assert row["late_seconds"] > 300 * 86400  # months after 2026-01-06 24:00 Asia/Shanghai


def test_run_stamps_dag_and_run_ids(profile, client, ledger, store):
    run = RunInfo(
        token="t1", dag_id="cdyb_jxc_daily", run_id="scheduled__2026-11-21", task_id="upload_outbound"
    )
    _uploader(profile, client, ledger, run=run).run([[outbound_row("R1")]])
    assert _rows(ledger)["R1"]["run_id"] == "scheduled__2026-11-21"
    assert ledger.batches()[0]["task_id"] == "upload_outbound"


def test_ledger_schema_creates_itself(ledger_url):
    from sqlalchemy import inspect

    Ledger(ledger_url).dispose()
    names = set(inspect(Ledger(ledger_url).engine).get_table_names())
    assert {upload_row.name, "cdyb_jxc_upload_batch", "cdyb_jxc_milestone"} <= names


def test_long_run_ids_names_and_bad_serials_fit_the_ledger(profile, client, ledger, store):
    """Airflow run tokens are long and source data can be anything: the ledger must still record it."""
    run = RunInfo(
        token="cdyb_jxc_daily:scheduled__2026-11-21T18:00:00+00:00:upload_outbound:-1:1" * 3,
        dag_id="cdyb_jxc_daily",
        run_id="scheduled__2026-11-21T18:00:00+00:00",
        task_id="upload_outbound",
    )
    rows = [outbound_row("OK1", hospital_item_name="药" * 400), outbound_row("X" * 300), outbound_row("")]
    result = _uploader(profile, client, ledger, run=run).run([rows])
    assert (result.missing_serial, result.source_issues) == (2, 2)
    assert sorted(i["row_key"] for i in ledger.iter_source_issues()) == ["#3", "X" * 40 + "…#2"]
    state = _rows(ledger)
    assert state["OK1"]["state"] == REJECTED
    assert state["OK1"]["detail"] == "医院项目名称(yka095)长度超过200字节(实际800字节)"
    assert len(state) == 1


def test_serial_used_by_another_transaction_is_a_source_issue_not_counted_accepted(
    profile, client, ledger, store
):
    from tests.conftest import inbound_row

    inbound = _uploader(profile, client, ledger, "inbound")
    assert inbound.run([[inbound_row("SAME-1")]]).states == {ACCEPTED: 1}
    result = _uploader(profile, client, ledger).run([[outbound_row("SAME-1"), outbound_row("OUT-2")]])
    # SPEC: 流水号 is unique per institution across the four transactions; the outbound row never went out
    assert result.states == {ACCEPTED: 1}
    assert result.source_issues == 1
    (issue,) = ledger.iter_source_issues()
    assert (issue["transaction_code"], issue["row_key"], issue["category"]) == (
        "JXC003",
        "SAME-1",
        "数据重复上传",
    )
    assert issue["detail"] == "流水号已用于JXC002的记录(状态ACCEPTED)，本条未上传；请为本条使用新的流水号"
    assert _rows(ledger)["SAME-1"]["transaction_code"] == "JXC002"
    assert _stored(store) == ["OUT-2", "SAME-1"]


def test_row_changed_after_acceptance_is_reported_until_the_source_is_restored(
    profile, client, ledger, store
):
    _uploader(profile, client, ledger).run([[outbound_row("CH1", quantity="2")]])
    result = _uploader(profile, client, ledger).run([[outbound_row("CH1", quantity="7")]])
    assert (result.states, result.changed_after_accept, result.source_issues) == ({ACCEPTED: 1}, 1, 1)
    (issue,) = ledger.iter_source_issues()
    assert issue["category"] == "接收后源数据变更"
    # the source goes back to what the centre holds: the next run of that day drops the issue
    result = _uploader(profile, client, ledger).run([[outbound_row("CH1", quantity="2")]])
    assert result.source_issues == 0
    assert list(ledger.iter_source_issues()) == []
    assert ledger.open_dates(INSTITUTION, "JXC003", "2026-11-01", "2026-12-01") == []


def test_source_issues_are_in_the_reject_report_and_mark_the_day_open(
    profile, client, ledger, store, tmp_path
):
    from cdyb_jxc.upload.reports import write_reject_report

    _uploader(profile, client, ledger, business_date="2026-11-20").run(
        [[outbound_row("G1"), outbound_row(""), outbound_row("G1")]]
    )
    assert ledger.open_dates(INSTITUTION, "JXC003", "2026-11-01", "2026-12-01") == ["2026-11-20"]
    report = write_reject_report(ledger, INSTITUTION, ["2026-11-20"], tmp_path, "r")
    assert report.rows == 2
    text = report.csv_path.read_text(encoding="utf-8-sig")
    assert "SOURCE_ISSUE" in text
    assert "源数据第2行: 流水号(yka105)不能为空" in text
    assert "流水号在数据源中重复(源数据第3行)，仅上传第一条" in text


def test_one_upload_at_a_time_per_transaction(profile, client, ledger, store):
    """A backfill beside the scheduled run, or the CLI beside a DAG: the second upload of the same transaction
    waits for the first (then gives up with a retryable error), instead of racing it into false conflicts."""
    import threading

    from cdyb_jxc.exceptions import UploadBusyError
    from cdyb_jxc.ledger.lock import UploadLock
    from tests.conftest import inbound_row

    held = UploadLock(ledger, INSTITUTION, "JXC003").__enter__()
    try:
        with pytest.raises(UploadBusyError) as info:
            _uploader(profile, client, ledger, lock_wait=0.2).run([[outbound_row("LK1")]])
        assert str(info.value) == (
            f"another upload of JXC003 of {INSTITUTION} is running on ledger {ledger.url}; "
            "waited 0 s, try again later"
        )
        assert _rows(ledger) == {}  # nothing recorded, nothing sent
        # another transaction is not held up
        inbound = _uploader(profile, client, ledger, "inbound")
        assert inbound.run([[inbound_row("LK-IN")]]).states == {ACCEPTED: 1}
        # a waiting upload goes ahead as soon as the first one is done
        threading.Timer(0.5, held.release).start()
        result = _uploader(profile, client, ledger, lock_wait=30).run([[outbound_row("LK1")]])
        assert result.states == {ACCEPTED: 1}
    finally:
        held.release()
    assert _stored(store) == ["LK-IN", "LK1"]


def test_source_issue_stays_until_fixed_when_other_files_of_the_day_are_uploaded(
    profile, client, ledger, store
):
    """The CLI may upload a day in several files: a file without the bad row does not clear its issue."""
    _uploader(profile, client, ledger).run([[outbound_row("PF1"), outbound_row("")]])
    _uploader(profile, client, ledger).run([[outbound_row("PF2")]])
    assert [i["row_key"] for i in ledger.iter_source_issues()] == ["#2"]
    # a whole-day run (the DAG's SQL reads the whole business day) without the bad row drops it
    _uploader(profile, client, ledger, complete_days=["2026-11-20"]).run(
        [[outbound_row("PF1"), outbound_row("PF2")]]
    )
    assert list(ledger.iter_source_issues()) == []


def test_serial_repeated_in_a_later_chunk_after_acceptance_is_a_repeat_not_counted_twice(
    profile, client, ledger, store
):
    _uploader(profile, client, ledger).run([[outbound_row("RC1")]])
    result = _uploader(profile, client, ledger).run(
        [[outbound_row("RC1")], [outbound_row("RC1", quantity="5")]]
    )
    assert result.states == {ACCEPTED: 1}
    assert (result.duplicate_in_source, result.changed_after_accept) == (1, 0)
    (issue,) = ledger.iter_source_issues()
    assert issue["detail"] == "流水号在数据源中重复(源数据第2行)，仅上传第一条"


def test_lost_lock_connection_stops_the_upload_and_unlocking_never_raises(pg_database):
    """A PostgreSQL lock lives as long as its connection: once an idle timeout or a network fault ends it,
    the upload must stop before the next batch (a second upload could already be running)."""
    from sqlalchemy import text

    from cdyb_jxc.exceptions import TransportError
    from cdyb_jxc.ledger.lock import UploadLock

    ledger = Ledger(pg_database)
    lock = UploadLock(ledger, INSTITUTION, "JXC003").__enter__()
    try:
        lock.check()  # held
        pid = lock._conn.execute(text("SELECT pg_backend_pid()")).scalar()
        lock._conn.commit()
        with ledger.engine.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with pytest.raises(TransportError, match="lost the upload lock of JXC003"):
            lock.check()
    finally:
        lock.release()  # the connection is dead: logs, does not raise
    # and the lock is free again
    with UploadLock(ledger, INSTITUTION, "JXC003", wait_seconds=2):
        pass
    ledger.dispose()


def test_four_batches_in_flight_through_the_real_client(profile, client, ledger, store, simulator):
    rows = [outbound_row(f"KF{i:03d}") for i in range(120)]
    simulator.set_faults("latency=0.1")  # each call outlasts the launch of the next three
    result = _uploader(profile, client, ledger, batch_limit=10, max_in_flight=4).run([rows])
    assert result.states == {ACCEPTED: 120}
    assert _stored(store) == sorted(r["serial_no"] for r in rows)  # each stored once
    batches = ledger.batches()
    assert [b["outcome"] for b in batches] == ["success"] * 12
    # the audit rows open at once (sent → reply back): four, never a fifth
    spans = [(b["started_at"], b["finished_at"]) for b in batches]
    assert max(sum(1 for s, f in spans if s <= t < f) for t, _ in spans) == 4
    for batch in batches:  # each audited as sent, only the 验证码 redacted
        assert f"<jyfwyh>{USER}</jyfwyh>" in batch["request"]
        assert "<jyfwyzm>******</jyfwyzm>" in batch["request"]
        assert SECRET not in batch["request"]
    by_batch = {b["id"]: b["request"] for b in batches}
    assert all(s in by_batch[r["last_batch_id"]] for s, r in _rows(ledger).items())


def test_one_client_called_from_four_threads_keeps_each_calls_reply_apart(profile, client, store):
    import html
    import threading

    results: dict[int, tuple[int, object, bytes | None]] = {}
    start = threading.Barrier(4, timeout=30)

    def send(n: int) -> None:
        rows = [
            row_to_wire(profile.transaction("outbound"), outbound_row(f"TH{n}-{i}")) for i in range(n + 1)
        ]
        start.wait()
        exchange = client.send("outbound", rows)
        results[n] = (exchange.reply.succnum, client.transport, client.transport.last_body)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert {n: succ for n, (succ, _, _) in results.items()} == {0: 1, 1: 2, 2: 3, 3: 4}
    assert len({id(transport) for _, transport, _ in results.values()}) == 4  # one per thread
    for n, (_, _, body) in results.items():  # each thread's last reply is its own call's
        assert body is not None
        assert f"<succnum>{n + 1}</succnum>" in html.unescape(body.decode("utf-8"))
    assert len(_stored(store)) == 10

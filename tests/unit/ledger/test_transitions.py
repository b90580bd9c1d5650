"""Each named transition of the ledger, on a SQLite file in a temp dir: the state it writes and whether it
clears or keeps what the centre said of the row (category, field, detail)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from cdyb_jxc.ledger import Ledger, LedgerState
from cdyb_jxc.ledger.transitions import ReplyFates, held_back, kept_in_doubt, to_send
from tests.conftest import INSTITUTION

S = LedgerState
NOW = datetime(2026, 11, 21, 12, 0, 0)
LATER = NOW + timedelta(minutes=5)


@pytest.fixture
def ledger(tmp_path) -> Iterator[Ledger]:
    led = Ledger(f"sqlite:///{tmp_path}/ledger.db")
    yield led
    led.dispose()


def planned(serial: str, state_values: dict[str, Any]) -> dict[str, Any]:
    """A new ledger row as the engine plans it, with the state part of ``state_values``."""
    return {
        "institution_code": INSTITUTION,
        "serial_no": serial,
        "transaction_code": "JXC003",
        "business_date": "2026-11-20",
        "payload_hash": f"hash-{serial}",
        "first_seen_at": NOW,
        "updated_at": NOW,
        "attempts": 0,
        **state_values,
    }


def rows(ledger: Ledger) -> dict[str, dict[str, Any]]:
    return {r["serial_no"]: r for r in ledger.iter_rows()}


def reason(record: dict[str, Any]) -> tuple[Any, Any, Any]:
    return record["category"], record["field"], record["detail"]


def sent(ledger: Ledger, *serials: str, batch_id: int = 7) -> None:
    """Plan ``serials`` to send and put them in flight."""
    ledger.add_planned([planned(s, to_send(None)) for s in serials])
    ledger.mark_in_flight(INSTITUTION, [(s, f"hash-{s}") for s in serials], batch_id, NOW)


def test_a_new_row_to_send_is_pending_without_a_reason():
    assert to_send(None) == {
        "state": S.PENDING,
        "category": None,
        "field": None,
        "detail": None,
        "held_back": 0,
    }


@pytest.mark.parametrize(
    ("prior", "state"),
    [
        (S.PENDING, S.PENDING),
        (S.REJECTED, S.PENDING),  # changed at the source, or its reason may have cleared: sent as new
        (S.IN_DOUBT, S.IN_DOUBT),  # the centre may hold it: stays in doubt until an answer reconciles it
        (S.IN_FLIGHT, S.IN_FLIGHT),  # left in flight by a run that died
    ],
)
def test_a_row_planned_again_keeps_its_doubt_and_loses_its_old_reason(ledger, prior, state):
    ledger.add_planned([planned("P1", held_back("未对码", "mapping_serial_no", "未对码"))])
    ledger.update_rows(INSTITUTION, [{"serial_no": "P1", "state": prior}])

    ledger.replan(INSTITUTION, [{"serial_no": "P1", **to_send(prior)}])

    record = rows(ledger)["P1"]
    assert record["state"] == state
    assert reason(record) == (None, None, None)
    assert record["held_back"] == 0


def test_a_row_held_back_is_rejected_unsent_with_its_reason(ledger):
    ledger.add_planned([planned("H1", held_back("未对码", "mapping_serial_no", "对码流水号M9未对码"))])

    record = rows(ledger)["H1"]
    assert record["state"] == S.REJECTED
    assert reason(record) == ("未对码", "mapping_serial_no", "对码流水号M9未对码")
    assert (record["held_back"], record["attempts"], record["last_sent_at"]) == (1, 0, None)


def test_a_sent_row_whose_source_cannot_be_written_any_more_stays_in_doubt_with_the_reason(ledger):
    sent(ledger, "K1")
    ledger.mark_in_doubt(INSTITUTION, ["K1"], "应答丢失", LATER)

    ledger.replan(INSTITUTION, [{"serial_no": "K1", **kept_in_doubt("字段校验失败", "unit", "含非法字符")}])

    record = rows(ledger)["K1"]
    assert record["state"] == S.IN_DOUBT  # not REJECTED: the centre may hold what was sent before
    assert reason(record) == ("字段校验失败", "unit", "含非法字符")
    assert record["held_back"] == 0


def test_in_flight_records_the_send_and_counts_an_attempt(ledger):
    ledger.add_planned([planned("F1", to_send(None)), planned("F2", to_send(None))])

    ledger.mark_in_flight(INSTITUTION, [("F1", "hash-F1"), ("F2", "earlier-hash")], 42, NOW)
    ledger.mark_in_flight(INSTITUTION, [("F1", "hash-F1")], 43, LATER)

    f1, f2 = rows(ledger)["F1"], rows(ledger)["F2"]
    assert (f1["state"], f1["attempts"], f1["last_batch_id"], f1["last_sent_at"]) == (
        S.IN_FLIGHT,
        2,
        43,
        LATER,
    )
    assert (f2["state"], f2["attempts"], f2["last_batch_id"], f2["sent_hash"]) == (
        S.IN_FLIGHT,
        1,
        42,
        "earlier-hash",
    )


def test_in_flight_without_an_earlier_hash_records_the_rows_own_payload_as_sent(ledger):
    ledger.add_planned([planned(s, to_send(None)) for s in ("O1", "O2", "E1")])

    ledger.mark_in_flight(INSTITUTION, [("O1", None), ("E1", "earlier-hash"), ("O2", None)], 9, NOW)

    got = {
        s: (r["state"], r["sent_hash"], r["attempts"], r["last_batch_id"]) for s, r in rows(ledger).items()
    }
    assert got == {
        "O1": (S.IN_FLIGHT, "hash-O1", 1, 9),
        "O2": (S.IN_FLIGHT, "hash-O2", 1, 9),
        "E1": (S.IN_FLIGHT, "earlier-hash", 1, 9),
    }
    assert ledger.count_by_state() == {S.IN_FLIGHT: 3}


def test_not_sent_puts_rows_back_to_pending_or_keeps_them_in_doubt(ledger):
    sent(ledger, "N1", "N2")

    ledger.mark_not_sent(INSTITUTION, [("N1", False), ("N2", True)], "未发送: connection refused", LATER)

    n1, n2 = rows(ledger)["N1"], rows(ledger)["N2"]
    assert (n1["state"], n1["detail"], n1["updated_at"]) == (S.PENDING, "未发送: connection refused", LATER)
    assert (n2["state"], n2["detail"]) == (S.IN_DOUBT, "未发送: connection refused")


def test_in_doubt_keeps_what_the_reply_said_of_each_row(ledger):
    sent(ledger, "D1", "D2")

    ledger.mark_in_doubt(
        INSTITUTION, ["D1", "D2"], "应答不一致: 成功却列出失败", LATER, {"D1": "; 应答称: 未对码"}
    )

    d1, d2 = rows(ledger)["D1"], rows(ledger)["D2"]
    assert (d1["state"], d1["detail"]) == (S.IN_DOUBT, "应答不一致: 成功却列出失败; 应答称: 未对码")
    assert (d2["state"], d2["detail"]) == (S.IN_DOUBT, "应答不一致: 成功却列出失败")


def test_a_reply_saves_refuses_and_reconciles_rows_in_one_write(ledger):
    sent(ledger, "OK", "RC", "RJ", "CF")
    # an earlier answer's words on every row: a saved row must not keep them
    ledger.mark_in_doubt(INSTITUTION, ["OK", "RC", "RJ", "CF"], "应答丢失", NOW)
    ledger.mark_in_flight(INSTITUTION, [(s, f"hash-{s}") for s in ("OK", "RC", "RJ", "CF")], 8, NOW)
    fates = ReplyFates(LATER)

    states = [
        fates.accepted("OK", 3600.0),
        fates.accepted("RC", None, reconciled=True),
        fates.rejected("RJ", "字段校验失败", "quantity", "出库数量(akc226)超出库存"),
        fates.conflict("CF", "数据重复上传", "流水号CF已上传（本客户端从未发送过该流水号）"),
    ]
    ledger.record_fates(INSTITUTION, fates)

    assert states == [S.ACCEPTED, S.ACCEPTED_RECONCILED, S.REJECTED, S.DUPLICATE_CONFLICT]
    got = rows(ledger)
    assert (got["OK"]["state"], got["OK"]["accepted_at"], got["OK"]["late_seconds"]) == (
        S.ACCEPTED,
        LATER,
        3600.0,
    )
    assert (got["RC"]["state"], got["RC"]["accepted_at"]) == (S.ACCEPTED_RECONCILED, LATER)
    assert reason(got["OK"]) == reason(got["RC"]) == (None, None, None)
    assert got["RJ"]["state"] == S.REJECTED
    assert reason(got["RJ"]) == ("字段校验失败", "quantity", "出库数量(akc226)超出库存")
    assert got["RJ"]["accepted_at"] is None
    assert got["CF"]["state"] == S.DUPLICATE_CONFLICT
    assert reason(got["CF"]) == ("数据重复上传", "serial_no", "流水号CF已上传（本客户端从未发送过该流水号）")
    assert {r["updated_at"] for r in got.values()} == {LATER}


def test_mark_seen_stamps_the_run_without_changing_the_state(ledger):
    ledger.add_planned([planned("A1", {**to_send(None), "state": S.ACCEPTED, "run_token": "old-run"})])

    ledger.mark_seen(INSTITUTION, ["A1"], "new-run")

    record = rows(ledger)["A1"]
    assert (record["state"], record["run_token"]) == (S.ACCEPTED, "new-run")


def test_planning_a_serial_another_upload_inserted_meanwhile_leaves_it_out(ledger):
    ledger.add_planned([planned("T1", {**to_send(None), "transaction_code": "JXC002"})])

    taken = ledger.add_planned([planned("T1", to_send(None)), planned("T2", to_send(None))])

    assert set(taken) == {"T1"}
    assert taken["T1"].transaction_code == "JXC002"
    assert {s: r["transaction_code"] for s, r in rows(ledger).items()} == {"T1": "JXC002", "T2": "JXC003"}

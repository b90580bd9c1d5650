"""The upload engine against an in-process centre (:class:`FakeCentre`) and a SQLite ledger in a temp dir.

Each test runs :meth:`Uploader.run` the way the operators and the CLI do and reads back what a user sees: the
run's result, the ledger's rows and audit, the requests the centre received.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from cdyb_jxc.exceptions import InDoubtError, TransportError
from cdyb_jxc.ledger import Ledger, LedgerState
from cdyb_jxc.ledger.lock import UploadLock
from cdyb_jxc.upload.engine import Decision, Uploader
from cdyb_jxc.upload.sender import BatchSender
from tests.conftest import INSTITUTION, make_uploader, outbound_row
from tests.unit.upload.fake_centre import LOST_REPLY_TEXT, FakeCentre

S = LedgerState


@pytest.fixture
def ledger(tmp_path) -> Iterator[Ledger]:
    led = Ledger(f"sqlite:///{tmp_path}/ledger.db")
    yield led
    led.dispose()


@pytest.fixture
def centre(profile) -> FakeCentre:
    return FakeCentre(profile)


def _rows(ledger: Ledger) -> dict[str, dict[str, Any]]:
    return {r["serial_no"]: r for r in ledger.iter_rows()}


def _states(ledger: Ledger) -> dict[str, str]:
    return {s: r["state"] for s, r in _rows(ledger).items()}


def _outcomes(ledger: Ledger) -> list[str]:
    return [b["outcome"] for b in ledger.batches()]


def test_uploader_owns_its_batch_sender_instead_of_inheriting_it(profile, centre, ledger):
    uploader = make_uploader(profile, centre, ledger)
    assert isinstance(uploader.sending, BatchSender)
    assert not isinstance(uploader, BatchSender)
    assert uploader.sending.centre is centre
    assert uploader.sending.result is uploader.result


def test_rows_the_centre_saves_are_accepted_in_batches_of_the_limit(profile, centre, ledger):
    result = make_uploader(profile, centre, ledger, batch_limit=2).run(
        [[outbound_row(f"A{i}") for i in range(3)]]
    )

    assert result.states == {S.ACCEPTED: 3}
    assert (result.rows_read, result.rows_sent, result.batches) == (3, 3, 2)
    assert centre.requests == [["A0", "A1"], ["A2"]]
    rows = _rows(ledger)
    assert {r["state"] for r in rows.values()} == {"ACCEPTED"}
    assert all(r["attempts"] == 1 and r["accepted_at"] is not None for r in rows.values())
    assert all(r["business_date"] == "2026-11-20" for r in rows.values())
    assert _outcomes(ledger) == ["success", "success"]
    assert result.as_dict()["states"] == {"ACCEPTED": 3}


def test_accepted_rows_are_not_sent_again_on_the_next_run(profile, centre, ledger):
    rows = [outbound_row("A1"), outbound_row("A2")]
    make_uploader(profile, centre, ledger).run([rows])

    again = make_uploader(profile, centre, ledger).run([rows])

    assert len(centre.requests) == 1
    assert again.already_accepted == 2
    assert again.states == {S.ACCEPTED: 2}
    assert again.batches == 0


def test_row_the_centre_refuses_is_rejected_with_category_field_and_reason(profile, centre, ledger):
    centre.refuse["R1"] = "【字段校验失败】出库数量(akc226)超出库存"

    result = make_uploader(profile, centre, ledger).run([[outbound_row("OK1"), outbound_row("R1")]])

    assert result.states == {S.ACCEPTED: 1, S.REJECTED: 1}
    assert result.rejected == 1
    rejected = _rows(ledger)["R1"]
    assert (rejected["state"], rejected["category"], rejected["field"]) == (
        "REJECTED",
        "字段校验失败",
        "quantity",
    )
    assert rejected["detail"] == "出库数量(akc226)超出库存"
    assert not rejected["held_back"]
    (sample,) = result.rejects
    assert (sample["serial_no"], sample["field"], sample["item"]) == ("R1", "quantity", "M0001")
    assert _outcomes(ledger) == ["partial"]


def test_unchanged_rejected_row_is_not_sent_again(profile, centre, ledger):
    centre.refuse["R1"] = "【字段校验失败】出库数量(akc226)超出库存"
    make_uploader(profile, centre, ledger).run([[outbound_row("R1")]])

    again = make_uploader(profile, centre, ledger).run([[outbound_row("R1")]])

    assert again.states == {S.REJECTED: 1}
    assert len(centre.requests) == 1


def test_transport_error_resends_the_batch_unchanged_then_records_the_answer(profile, centre, ledger):
    centre.faults = ["transport"]
    sleeps: list[float] = []
    uploader = make_uploader(profile, centre, ledger, resend_attempts=1, backoff=0.5)
    uploader.sending.sleep = sleeps.append

    result = uploader.run([[outbound_row("T1"), outbound_row("T2")]])

    assert centre.requests == [["T1", "T2"], ["T1", "T2"]]
    assert sleeps == [0.5]
    assert result.states == {S.ACCEPTED: 2}
    assert {r["attempts"] for r in _rows(ledger).values()} == {2}
    assert _outcomes(ledger) == ["not_sent", "success"]


def test_transport_error_after_the_last_resend_raises_and_the_next_run_sends_the_rows(
    profile, centre, ledger
):
    centre.faults = ["transport"]
    with pytest.raises(TransportError):
        make_uploader(profile, centre, ledger).run([[outbound_row("T1")]])
    pending = _rows(ledger)["T1"]
    assert pending["state"] == "PENDING"
    assert pending["detail"].startswith("未发送: could not reach the centre")

    result = make_uploader(profile, centre, ledger).run([[outbound_row("T1")]])

    assert result.states == {S.ACCEPTED: 1}
    assert _states(ledger) == {"T1": "ACCEPTED"}


def test_lost_reply_leaves_rows_in_doubt_and_the_next_run_reconciles_them_from_the_duplicate_answer(
    profile, centre, ledger
):
    rows = [outbound_row("D1"), outbound_row("D2")]
    centre.faults = ["lose_reply"]
    with pytest.raises(InDoubtError):
        make_uploader(profile, centre, ledger).run([rows])
    assert _states(ledger) == {"D1": "IN_DOUBT", "D2": "IN_DOUBT"}
    assert _rows(ledger)["D1"]["detail"].startswith("应答丢失: reply lost")
    (audit,) = ledger.batches()
    assert (audit["outcome"], audit["reply"]) == ("in_doubt", LOST_REPLY_TEXT)

    result = make_uploader(profile, centre, ledger).run([rows])

    assert result.states == {S.ACCEPTED_RECONCILED: 2}
    assert _states(ledger) == {"D1": "ACCEPTED_RECONCILED", "D2": "ACCEPTED_RECONCILED"}
    assert sorted(centre.stored) == ["D1", "D2"]  # stored once, by the send whose reply was lost


def test_in_doubt_row_stays_in_doubt_when_a_run_stops_before_sending_it(profile, centre, ledger, monkeypatch):
    centre.faults = ["lose_reply"]
    with pytest.raises(InDoubtError):
        make_uploader(profile, centre, ledger).run([[outbound_row("D1")]])

    def lost(self):
        raise TransportError("lost the upload lock")

    # the next run plans the row, then loses its lock before the batch leaves
    with monkeypatch.context() as patch:
        patch.setattr(UploadLock, "check", lost)
        with pytest.raises(TransportError, match="lost the upload lock"):
            make_uploader(profile, centre, ledger).run([[outbound_row("D1")]])
    assert _states(ledger) == {"D1": "IN_DOUBT"}
    assert len(centre.requests) == 1

    result = make_uploader(profile, centre, ledger).run([[outbound_row("D1")]])

    assert result.states == {S.ACCEPTED_RECONCILED: 1}


def test_in_doubt_row_changed_at_the_source_is_a_conflict_not_reconciled(profile, centre, ledger):
    centre.faults = ["lose_reply"]
    with pytest.raises(InDoubtError):
        make_uploader(profile, centre, ledger).run([[outbound_row("D1")]])

    result = make_uploader(profile, centre, ledger).run([[outbound_row("D1", quantity="3")]])

    assert result.states == {S.DUPLICATE_CONFLICT: 1}
    conflict = _rows(ledger)["D1"]
    assert (conflict["state"], conflict["field"]) == ("DUPLICATE_CONFLICT", "serial_no")
    assert conflict["detail"].endswith("（在途记录内容已变化）")


def test_duplicate_answer_for_a_row_never_sent_is_a_conflict(profile, centre, ledger):
    centre.stored["X1"] = {"serial_no": "X1"}  # sent by another client

    result = make_uploader(profile, centre, ledger).run([[outbound_row("X1")]])

    assert result.states == {S.DUPLICATE_CONFLICT: 1}
    assert result.rejected == 1
    assert _rows(ledger)["X1"]["detail"].endswith("（本客户端从未发送过该流水号）")


def test_row_that_would_certainly_fail_is_held_back_and_never_sent(profile, centre, ledger):
    rows = [outbound_row("OK1"), outbound_row("BAD1", quantity="abc")]

    result = make_uploader(profile, centre, ledger).run([rows])

    assert centre.requests == [["OK1"]]
    assert result.held_back == 1
    assert result.states == {S.ACCEPTED: 1, S.REJECTED: 1}
    held = _rows(ledger)["BAD1"]
    assert (held["state"], held["held_back"], held["attempts"]) == ("REJECTED", 1, 0)
    assert (held["category"], held["field"]) == ("字段校验失败", "quantity")
    assert "akc226" in held["detail"]


def test_held_back_row_fixed_at_the_source_goes_out_on_the_next_run(profile, centre, ledger):
    make_uploader(profile, centre, ledger).run([[outbound_row("BAD1", quantity="abc")]])

    result = make_uploader(profile, centre, ledger).run([[outbound_row("BAD1")]])

    assert centre.requests == [["BAD1"]]
    assert result.states == {S.ACCEPTED: 1}
    fixed = _rows(ledger)["BAD1"]
    assert (fixed["state"], fixed["held_back"], fixed["detail"]) == ("ACCEPTED", 0, None)


def test_serial_repeated_in_the_source_is_sent_once_and_listed_as_a_source_issue(profile, centre, ledger):
    first, repeat = outbound_row("S1"), outbound_row("S1", quantity="5")

    result = make_uploader(profile, centre, ledger).run(
        [[first, outbound_row("S2"), repeat], [outbound_row("S1")]]
    )

    assert centre.requests == [["S1", "S2"]]
    assert centre.stored["S1"]["quantity"] == "2"  # the first row is the one uploaded
    assert result.duplicate_in_source == 2  # the repeat in the same chunk and the one in the next chunk
    assert result.source_issues == 2
    assert result.states == {S.ACCEPTED: 2}
    issues = list(ledger.iter_source_issues())
    assert sorted(i["source_row"] for i in issues) == [3, 4]
    assert all(i["serial_no"] == "S1" and "重复" in i["detail"] for i in issues)


def test_row_without_serial_is_a_source_issue_and_the_others_go_out(profile, centre, ledger):
    result = make_uploader(profile, centre, ledger).run([[outbound_row(""), outbound_row("K1")]])

    assert centre.requests == [["K1"]]
    assert (result.missing_serial, result.source_issues) == (1, 1)
    (issue,) = ledger.iter_source_issues()
    assert (issue["source_row"], issue["field"]) == (1, "serial_no")


@pytest.mark.parametrize(
    ("state", "decision"),
    [
        (None, Decision.SEND),
        (S.ACCEPTED, Decision.KEEP),
        (S.DUPLICATE_CONFLICT, Decision.KEEP),
        (S.IN_DOUBT, Decision.SEND),
        (S.PENDING, Decision.SEND),
    ],
)
def test_decide_answers_with_a_decision(profile, centre, ledger, state, decision):
    uploader: Uploader = make_uploader(profile, centre, ledger)
    row = outbound_row("Q1")
    if state is not None:
        make_uploader(profile, centre, ledger).run([[row]])
        ledger.update_rows(INSTITUTION, [{"serial_no": "Q1", "state": state}])
    planned = uploader._plan([row])
    (plan,) = planned.values()
    plan.prior = ledger.lookup(INSTITUTION, ["Q1"]).get("Q1")

    assert uploader._decide(plan) is decision


@pytest.mark.parametrize("fails", [False, True], ids=["answered", "raised"])
def test_replies_take_the_gil_sooner_while_the_run_sends_and_not_after(profile, centre, ledger, fails):
    import sys

    from cdyb_jxc.upload.switching import SWITCH_INTERVAL

    seen: list[float] = []
    send = centre.send

    def observed(txn_key: str, rows: Any) -> Any:
        seen.append(sys.getswitchinterval())
        if fails:
            raise TransportError("boom")
        return send(txn_key, rows)

    centre.send = observed  # type: ignore[method-assign]
    before = sys.getswitchinterval()
    uploader = make_uploader(profile, centre, ledger, resend_attempts=0)
    if fails:
        with pytest.raises(TransportError):
            uploader.run([[outbound_row("A1")]])
    else:
        uploader.run([[outbound_row("A1")]])
    assert seen
    assert all(s <= SWITCH_INTERVAL < before for s in seen)
    assert sys.getswitchinterval() == before

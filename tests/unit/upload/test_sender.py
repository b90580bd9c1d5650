"""The half of the upload that talks to the centre (:class:`BatchSender`), against an in-process centre and
a SQLite ledger in a temp dir: what the ledger and its audit hold before, during and after each request."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest

from cdyb_jxc.exceptions import CallRejectedError, InDoubtError, TransportError
from cdyb_jxc.ledger import Ledger, LedgerEntry, LedgerState
from cdyb_jxc.ledger.store import utcnow
from cdyb_jxc.ledger.transitions import to_send
from cdyb_jxc.upload.result import RunInfo, UploadResult, payload_hash
from cdyb_jxc.upload.sender import BatchSender, Planned
from cdyb_jxc.wire.client import Exchange
from cdyb_jxc.wire.codec import FAILURE, SUCCESS, BatchReply, RowFailure
from cdyb_jxc.wire.values import row_to_wire
from tests.conftest import INSTITUTION, outbound_row
from tests.unit.upload.fake_centre import LOST_REPLY_TEXT, FakeCentre

S = LedgerState
DAY = "2026-11-20"


@pytest.fixture
def ledger_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path}/ledger.db"


@pytest.fixture
def ledger(ledger_url) -> Iterator[Ledger]:
    led = Ledger(ledger_url)
    yield led
    led.dispose()


@pytest.fixture
def centre(profile) -> FakeCentre:
    return FakeCentre(profile)


def sender(profile, ledger: Ledger, centre: Any, **kw: Any) -> BatchSender:
    values: dict[str, Any] = {
        "batch_limit": 100,
        "resend_attempts": 0,
        "backoff": 1.0,
        "sleep": lambda s: None,
        "progress": None,
    }
    values.update(kw)
    return BatchSender(
        ledger=ledger,
        profile=profile,
        txn_key="outbound",
        institution_code=INSTITUTION,
        centre=centre,
        result=UploadResult(transaction="outbound"),
        run=RunInfo(token="run-1", dag_id="dag", run_id="run", task_id="task"),
        **values,
    )


def planned(profile, ledger: Ledger, *serials: str, prior: S | None = None, **extra: str) -> list[Planned]:
    """Rows recorded in the ledger as the engine records them before sending (PENDING, or ``prior``: a
    state an earlier send left them in, with its hash as the payload sent)."""
    txn = profile.transaction("outbound")
    plans, now = [], utcnow()
    for serial in serials:
        wire = row_to_wire(txn, outbound_row(serial, **extra))
        digest = payload_hash(wire)
        entry = None if prior is None else LedgerEntry(serial, prior, digest, digest, None, False, "run-0")
        state = to_send(prior)
        ledger.add_planned(
            [
                {
                    "institution_code": INSTITUTION,
                    "serial_no": serial,
                    "transaction_code": txn.code,
                    "business_date": DAY,
                    "payload_hash": digest,
                    "sent_hash": digest if prior else None,
                    "first_seen_at": now,
                    "updated_at": now,
                    "attempts": 0,
                    **state,
                }
            ]
        )
        plans.append(Planned(serial, wire, digest, DAY, entry))
    return plans


def rows(ledger: Ledger) -> dict[str, dict[str, Any]]:
    return {r["serial_no"]: r for r in ledger.iter_rows()}


def states(ledger: Ledger) -> dict[str, str]:
    return {s: r["state"] for s, r in rows(ledger).items()}


class Replying:
    """A centre answering every call with ``reply``."""

    def __init__(self, reply: BatchReply) -> None:
        self.reply = reply
        self.calls = 0

    def send(self, txn_key: str, rows: Sequence[Mapping[str, str | None]]) -> Exchange:
        self.calls += 1
        return Exchange(request="<sent/>", reply_text="<return/>", reply=self.reply, seconds=0.0)


def test_rows_are_committed_in_flight_before_the_centre_sees_them(profile, ledger, ledger_url, centre):
    seen: list[dict[str, S]] = []

    class Watching:
        def send(self, txn_key, wire_rows):
            other = Ledger(ledger_url)  # its own connection: sees only what was committed
            seen.append(other.states(INSTITUTION, [r["serial_no"] for r in wire_rows]))
            other.dispose()
            return centre.send(txn_key, wire_rows)

    sender(profile, ledger, Watching()).send_batch(planned(profile, ledger, "F1", "F2"))

    assert seen == [{"F1": S.IN_FLIGHT, "F2": S.IN_FLIGHT}]
    assert states(ledger) == {"F1": S.ACCEPTED, "F2": S.ACCEPTED}
    assert {r["attempts"] for r in rows(ledger).values()} == {1}
    (batch,) = ledger.batches()
    assert {r["last_batch_id"] for r in rows(ledger).values()} == {batch["id"]}
    assert (batch["outcome"], batch["row_count"], batch["run_token"], batch["task_id"]) == (
        "success",
        2,
        "run-1",
        "task",
    )


def test_transport_error_puts_rows_back_to_pending_as_never_sent(profile, ledger, centre):
    centre.faults = ["transport"]

    with pytest.raises(TransportError):
        sender(profile, ledger, centre).send_batch(planned(profile, ledger, "T1", "T2"))

    assert states(ledger) == {"T1": S.PENDING, "T2": S.PENDING}
    assert rows(ledger)["T1"]["detail"].startswith("未发送: could not reach the centre")
    (batch,) = ledger.batches()
    assert batch["outcome"] == "not_sent"
    assert "ConnectionRefusedError" in batch["error"]
    # the request as built here is audited, the 验证码 masked
    assert "T1" in batch["request"]
    assert "******" in batch["request"]


def test_transport_error_keeps_a_row_an_earlier_send_left_in_doubt_in_doubt(profile, ledger, centre):
    centre.faults = ["transport"]
    batch = planned(profile, ledger, "D1", prior=S.IN_DOUBT) + planned(profile, ledger, "N1")

    with pytest.raises(TransportError):
        sender(profile, ledger, centre).send_batch(batch)

    assert states(ledger) == {"D1": S.IN_DOUBT, "N1": S.PENDING}


def test_lost_reply_leaves_the_rows_in_doubt_and_audits_what_came_back(profile, ledger, centre):
    centre.faults = ["lose_reply"]

    with pytest.raises(InDoubtError):
        sender(profile, ledger, centre).send_batch(planned(profile, ledger, "L1", "L2"))

    assert states(ledger) == {"L1": S.IN_DOUBT, "L2": S.IN_DOUBT}
    assert rows(ledger)["L1"]["detail"].startswith("应答丢失: reply lost")
    (batch,) = ledger.batches()
    assert (batch["outcome"], batch["reply"]) == ("in_doubt", LOST_REPLY_TEXT)


def test_batch_resent_after_a_lost_reply_is_reconciled_from_the_duplicate_answer(profile, ledger, centre):
    centre.faults = ["lose_reply"]
    sleeps: list[float] = []
    batch_sender = sender(profile, ledger, centre, resend_attempts=2, backoff=0.5, sleep=sleeps.append)

    batch_sender.send_batch(planned(profile, ledger, "R1", "R2"))

    assert centre.requests == [["R1", "R2"], ["R1", "R2"]]  # the same batch, unchanged
    assert states(ledger) == {"R1": S.ACCEPTED_RECONCILED, "R2": S.ACCEPTED_RECONCILED}
    assert sleeps == [0.5]
    assert [b["outcome"] for b in ledger.batches()] == ["in_doubt", "failure"]  # every row answered 重复上传
    assert {r["attempts"] for r in rows(ledger).values()} == {2}


def test_resends_wait_twice_as_long_each_time_then_the_error_is_raised(profile, ledger, centre):
    centre.faults = ["transport", "transport", "transport"]
    sleeps: list[float] = []
    batch_sender = sender(profile, ledger, centre, resend_attempts=2, backoff=0.5, sleep=sleeps.append)

    with pytest.raises(TransportError):
        batch_sender.send_batch(planned(profile, ledger, "B1"))

    assert sleeps == [0.5, 1.0]
    assert len(centre.requests) == 3
    assert states(ledger) == {"B1": S.PENDING}


def test_rows_a_reply_refuses_get_its_category_field_and_reason(profile, ledger, centre):
    centre.refuse["X1"] = "【字段校验失败】出库数量(akc226)超出库存"
    batch_sender = sender(profile, ledger, centre)

    batch_sender.send_batch(planned(profile, ledger, "OK1", "X1"))

    got = rows(ledger)
    assert got["OK1"]["state"] == S.ACCEPTED
    assert (got["X1"]["state"], got["X1"]["category"], got["X1"]["field"], got["X1"]["detail"]) == (
        S.REJECTED,
        "字段校验失败",
        "quantity",
        "出库数量(akc226)超出库存",
    )
    result = batch_sender.result
    assert result.states == {S.ACCEPTED: 1, S.REJECTED: 1}
    (sample,) = result.rejects
    assert (sample["serial_no"], sample["category"], sample["field"]) == ("X1", "字段校验失败", "quantity")
    assert ledger.batches()[0]["outcome"] == "partial"


def test_duplicate_answer_for_a_row_this_client_never_sent_is_a_conflict(profile, ledger, centre):
    centre.stored["C1"] = {}  # someone else uploaded this 流水号

    sender(profile, ledger, centre).send_batch(planned(profile, ledger, "C1"))

    record = rows(ledger)["C1"]
    assert (record["state"], record["category"], record["field"]) == (
        S.DUPLICATE_CONFLICT,
        profile.category("duplicate"),
        "serial_no",
    )
    assert record["detail"].endswith("（本客户端从未发送过该流水号）")


def test_duplicate_answer_for_an_in_doubt_row_whose_payload_changed_is_a_conflict(profile, ledger, centre):
    (plan,) = planned(profile, ledger, "C2", prior=S.IN_DOUBT)
    plan.hash = "hash of the row as it is now"  # changed at the source since it was sent
    centre.stored["C2"] = {}

    sender(profile, ledger, centre).send_batch([plan])

    record = rows(ledger)["C2"]
    assert record["state"] == S.DUPLICATE_CONFLICT
    assert record["detail"].endswith("（在途记录内容已变化）")


def test_whole_call_refused_puts_rows_back_and_raises_not_retryable(profile, ledger):
    refusal = BatchReply(
        status=FAILURE, retcode=profile.return_codes[FAILURE], retmsg="【用户名或验证码错误】"
    )
    centre = Replying(refusal)

    with pytest.raises(CallRejectedError) as info:
        sender(profile, ledger, centre, resend_attempts=3).send_batch(planned(profile, ledger, "W1"))

    assert centre.calls == 1  # never resent: the same call cannot succeed
    assert info.value.category == "用户名或验证码错误"
    assert not info.value.retryable
    assert states(ledger) == {"W1": S.PENDING}
    assert rows(ledger)["W1"]["detail"].startswith("整批被拒")
    assert ledger.batches()[0]["outcome"] == "rejected"


def test_reply_contradicting_itself_leaves_the_rows_in_doubt_and_counts_them(profile, ledger):
    contradiction = BatchReply(
        status=SUCCESS,
        retcode=profile.return_codes[SUCCESS],
        retmsg="成功",
        failures=(RowFailure("Y1", "【未对码】对码流水号未对码"),),
    )
    centre = Replying(contradiction)
    answered: list[int] = []
    batch_sender = sender(profile, ledger, centre, progress=answered.append)

    batch_sender.send_batch(planned(profile, ledger, "Y1", "Y2"))  # no raise: the other batches go on

    assert states(ledger) == {"Y1": S.IN_DOUBT, "Y2": S.IN_DOUBT}
    assert rows(ledger)["Y1"]["detail"].endswith("; 应答称: 【未对码】对码流水号未对码")
    assert batch_sender.left_in_doubt == 2
    assert answered == [0]
    (batch,) = ledger.batches()
    assert batch["outcome"] == "in_doubt"
    assert "全部成功" in batch["error"]


def test_rows_go_in_batches_of_the_limit_and_progress_counts_the_answered(profile, ledger, centre):
    answered: list[int] = []
    batch_sender = sender(profile, ledger, centre, batch_limit=2, progress=answered.append)

    batch_sender.send_all(planned(profile, ledger, "P1", "P2", "P3", "P4", "P5"))

    assert centre.requests == [["P1", "P2"], ["P3", "P4"], ["P5"]]
    assert answered == [2, 2, 1]
    assert (batch_sender.result.batches, batch_sender.result.rows_sent) == (3, 5)
    # the request as the client sent it replaces the copy built before sending
    assert {b["request"] for b in ledger.batches()} == {"<redacted request/>"}


def test_a_lost_upload_lock_stops_the_batch_before_anything_is_in_flight(profile, ledger, centre):
    class LostLock:
        def check(self) -> None:
            raise TransportError("lost the upload lock")

    batch_sender = sender(profile, ledger, centre)
    batch_sender.lock = LostLock()  # type: ignore[assignment]

    with pytest.raises(TransportError, match="lost the upload lock"):
        batch_sender.send_batch(planned(profile, ledger, "K1"))

    assert centre.requests == []
    assert states(ledger) == {"K1": S.PENDING}
    assert ledger.batches() == []

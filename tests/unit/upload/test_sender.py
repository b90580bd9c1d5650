"""The half of the upload that talks to the centre (:class:`BatchSender`), against an in-process centre and
a SQLite ledger in a temp dir: what the ledger and its audit hold before, during and after each request."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import pytest
from sqlalchemy import event

import cdyb_jxc.upload.batches as batches_module
import cdyb_jxc.upload.sender as sender_module
from cdyb_jxc.exceptions import CallRejectedError, ConnectionConfigError, InDoubtError, TransportError
from cdyb_jxc.ledger import Ledger, LedgerEntry, LedgerState
from cdyb_jxc.ledger.batch_store import utcnow
from cdyb_jxc.ledger.transitions import to_send
from cdyb_jxc.upload.result import RunInfo, UploadResult, payload_hash
from cdyb_jxc.upload.sender import BatchSender, Planned
from cdyb_jxc.wire.client import Exchange, Request
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


def _never_taken(plan: Planned, entry: Any) -> None:
    raise AssertionError(f"{plan.serial} reported taken by another upload")


def sender(profile, ledger: Ledger, centre: Any, **kw: Any) -> BatchSender:
    values: dict[str, Any] = {
        "batch_limit": 100,
        "resend_attempts": 0,
        "backoff": 1.0,
        "sleep": lambda s: None,
        "progress": None,
        "taken": _never_taken,
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


# -- batches in flight at once ----------------------------------------------------------------------------
WAIT = 10.0  # seconds a test centre waits for what it expects before it gives up (a test never hangs)


def wait_until(what: str, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting: {what}")
        time.sleep(0.005)


def committed(ledger_url: str, *serials: str) -> dict[str, dict[str, Any]]:
    """The rows as another connection sees them: what was committed."""
    other = Ledger(ledger_url)
    try:
        return {r["serial_no"]: r for r in other.iter_rows() if r["serial_no"] in serials}
    finally:
        other.dispose()


class Gate:
    """A centre whose calls each wait until ``k`` calls are waiting together, then are answered."""

    def __init__(self, centre: FakeCentre, k: int) -> None:
        self.centre = centre
        self.barrier = threading.Barrier(k, timeout=WAIT)
        self.lock = threading.Lock()
        self.waiting = 0
        self.most = 0

    def send(self, txn_key: str, wire_rows: Sequence[Mapping[str, str | None]]) -> Exchange:
        with self.lock:
            self.waiting += 1
            self.most = max(self.most, self.waiting)
        self.barrier.wait()
        with self.lock:
            self.waiting -= 1
            return self.centre.send(txn_key, wire_rows)


@pytest.mark.parametrize("k", [2, 4])
def test_k_batches_are_out_at_once_each_committed_in_flight_before_it_left(profile, ledger, ledger_url, k):
    fake = FakeCentre(profile)
    gate = Gate(fake, k)
    seen: list[set[str]] = []

    class Watching(Gate):
        def send(self, txn_key, wire_rows):
            serials = [str(r["serial_no"]) for r in wire_rows]
            seen.append({r["state"] for r in committed(ledger_url, *serials).values()})
            return gate.send(txn_key, wire_rows)

    serials = [f"K{n:02d}" for n in range(4 * k)]
    batch_sender = sender(profile, ledger, Watching(fake, k), batch_limit=2, max_in_flight=k)

    batch_sender.send_all(planned(profile, ledger, *serials))

    assert gate.most == k  # never more, and the barrier proves k at once
    assert seen == [{S.IN_FLIGHT}] * (2 * k)
    assert states(ledger) == dict.fromkeys(serials, S.ACCEPTED)
    assert sorted(fake.requests) == [serials[n : n + 2] for n in range(0, 4 * k, 2)]
    batches = ledger.batches()
    assert [b["outcome"] for b in batches] == ["success"] * (2 * k)
    assert all(b["finished_at"] is not None for b in batches)
    by_batch: dict[int, list[str]] = {}
    for row in rows(ledger).values():
        by_batch.setdefault(row["last_batch_id"], []).append(row["serial_no"])
    assert set(by_batch) == {b["id"] for b in batches}
    assert sorted(sorted(group) for group in by_batch.values()) == sorted(fake.requests)


def test_replies_that_come_back_out_of_order_are_each_applied_to_their_own_rows(profile, ledger, ledger_url):
    fake = FakeCentre(profile)
    fake.refuse["A2"] = "【字段校验失败】出库数量(akc226)超出库存"
    answered: list[int] = []

    class SlowFirst:
        def send(self, txn_key, wire_rows):
            if wire_rows[0]["serial_no"] == "A1":
                # batch A's reply comes back only once batch B's is recorded
                wait_until("B recorded", lambda: committed(ledger_url, "B1")["B1"]["state"] == S.ACCEPTED)
            return fake.send(txn_key, wire_rows)

    batch_sender = sender(
        profile, ledger, SlowFirst(), batch_limit=3, max_in_flight=2, progress=answered.append
    )

    batch_sender.send_all(planned(profile, ledger, "A1", "A2", "A3", "B1", "B2"))

    assert answered == [2, 3]  # B (2 rows) answered first, then A (3 rows, one refused)
    assert states(ledger) == {
        "A1": S.ACCEPTED,
        "A2": S.REJECTED,
        "A3": S.ACCEPTED,
        "B1": S.ACCEPTED,
        "B2": S.ACCEPTED,
    }
    a, b = ledger.batches()
    assert (a["outcome"], a["succnum"], a["failnum"], b["outcome"], b["succnum"]) == (
        "partial",
        2,
        1,
        "success",
        2,
    )
    assert b["finished_at"] < a["finished_at"]
    got = rows(ledger)
    assert {got[s]["last_batch_id"] for s in ("A1", "A2", "A3")} == {a["id"]}
    assert {got[s]["last_batch_id"] for s in ("B1", "B2")} == {b["id"]}
    assert got["A2"]["category"] == "字段校验失败"
    assert batch_sender.result.states == {S.ACCEPTED: 4, S.REJECTED: 1}


def test_a_call_rejected_while_others_are_out_stops_sending_records_the_others_then_raises(
    profile, ledger, ledger_url
):
    fake = FakeCentre(profile)
    refusal = BatchReply(
        status=FAILURE, retcode=profile.return_codes[FAILURE], retmsg="【用户名或验证码错误】"
    )
    started: list[str] = []

    class RefusingFirst:
        def send(self, txn_key, wire_rows):
            first = str(wire_rows[0]["serial_no"])
            started.append(first)
            if first == "W1":
                wait_until("three calls out", lambda: len(started) == 3)
                return Exchange(request="<sent/>", reply_text="<return/>", reply=refusal, seconds=0.0)
            # still out when the refusal is recorded; answered (and recorded) after it
            wait_until("W1 refused", lambda: committed(ledger_url, "W1")["W1"]["state"] == S.PENDING)
            return fake.send(txn_key, wire_rows)

    batch_sender = sender(profile, ledger, RefusingFirst(), batch_limit=2, max_in_flight=3, resend_attempts=2)

    with pytest.raises(CallRejectedError) as info:
        batch_sender.send_all(planned(profile, ledger, "W1", "W2", "X1", "X2", "Y1", "Y2", "Z1", "Z2"))

    assert info.value.category == "用户名或验证码错误"
    assert sorted(started) == ["W1", "X1", "Y1"]  # Z never went out; W not resent
    got = rows(ledger)
    assert {s: r["state"] for s, r in got.items()} == {
        "W1": S.PENDING,
        "W2": S.PENDING,
        "X1": S.ACCEPTED,
        "X2": S.ACCEPTED,
        "Y1": S.ACCEPTED,
        "Y2": S.ACCEPTED,
        "Z1": S.PENDING,
        "Z2": S.PENDING,
    }
    assert got["W1"]["detail"].startswith("整批被拒")
    assert (got["Z1"]["detail"], got["Z1"]["attempts"]) == (None, 0)
    batches = ledger.batches()
    assert sorted(b["outcome"] for b in batches) == ["rejected", "success", "success"]
    assert all(b["finished_at"] is not None for b in batches)


def test_a_transport_fault_with_others_out_resends_that_batch_after_the_same_backoff(profile, ledger):
    fake = FakeCentre(profile)
    fake.faults = ["transport"]  # the first call to arrive
    lock = threading.Lock()

    class OneAtATime:  # FakeCentre's fault script is not for several threads
        def send(self, txn_key, wire_rows):
            with lock:
                return fake.send(txn_key, wire_rows)

    sleeps: list[float] = []
    batch_sender = sender(
        profile, ledger, OneAtATime(), batch_limit=2, max_in_flight=3, resend_attempts=2, backoff=0.5,
        sleep=sleeps.append,
    )  # fmt: skip

    batch_sender.send_all(planned(profile, ledger, "T1", "T2", "T3", "T4", "T5", "T6"))

    assert sleeps == [0.5]
    assert len(fake.requests) == 4
    assert states(ledger) == dict.fromkeys(["T1", "T2", "T3", "T4", "T5", "T6"], S.ACCEPTED)
    assert sorted(r["attempts"] for r in rows(ledger).values()) == [1, 1, 1, 1, 2, 2]
    assert sorted(b["outcome"] for b in ledger.batches()) == ["not_sent", "success", "success", "success"]


def test_a_batch_that_keeps_failing_with_others_out_raises_once_they_are_recorded(profile, ledger):
    fake = FakeCentre(profile)
    lock, g_out = threading.Lock(), threading.Event()

    class FailsF:
        def send(self, txn_key, wire_rows):
            if wire_rows[0]["serial_no"] == "F1":
                g_out.wait(10)  # fails only once the other batch is out
                raise TransportError("could not reach the centre: ConnectionRefusedError")
            g_out.set()
            with lock:
                return fake.send(txn_key, wire_rows)

    batch_sender = sender(profile, ledger, FailsF(), batch_limit=2, max_in_flight=2, resend_attempts=1)

    with pytest.raises(TransportError):
        batch_sender.send_all(planned(profile, ledger, "F1", "F2", "G1", "G2"))

    assert states(ledger) == {"F1": S.PENDING, "F2": S.PENDING, "G1": S.ACCEPTED, "G2": S.ACCEPTED}
    assert all(b["finished_at"] is not None for b in ledger.batches())


@pytest.mark.parametrize("k", [0, 9, True, 2.0])
def test_max_in_flight_outside_1_to_8_is_refused(profile, ledger, centre, k):
    with pytest.raises(ConnectionConfigError, match="max_in_flight must be a whole number from 1 to 8"):
        sender(profile, ledger, centre, max_in_flight=k)


# -- ledger transactions and request building per batch ---------------------------------------------------
@pytest.mark.parametrize("k", [1, 3])
def test_each_batch_costs_two_ledger_transactions(profile, ledger, centre, k):
    centre.refuse["C3"] = "【字段校验失败】出库数量(akc226)超出库存"
    plans = planned(profile, ledger, *[f"C{n}" for n in range(9)])
    commits: list[int] = []
    event.listen(ledger.engine, "commit", lambda conn: commits.append(1))

    sender(profile, ledger, centre, batch_limit=2, max_in_flight=k).send_all(plans)

    assert len(ledger.batches()) == 5
    assert len(commits) == 2 * 5  # IN_FLIGHT with the audit row, then the answers with its close
    assert states(ledger)["C3"] == S.REJECTED


def test_a_failed_attempt_costs_two_ledger_transactions_too(profile, ledger, centre):
    centre.faults = ["transport", "lose_reply"]
    plans = planned(profile, ledger, "E1", "E2")
    commits: list[int] = []
    event.listen(ledger.engine, "commit", lambda conn: commits.append(1))

    sender(profile, ledger, centre, resend_attempts=2).send_batch(plans)

    assert [b["outcome"] for b in ledger.batches()] == ["not_sent", "in_doubt", "failure"]
    assert len(commits) == 2 * 3


class Preparing:
    """A centre building each request once (as the client does): counts builds and sends."""

    def __init__(self, centre: FakeCentre) -> None:
        self.centre = centre
        self.prepared: list[Request] = []
        self.sent: list[Request] = []

    def prepare(self, txn_key: str, wire_rows: Sequence[Mapping[str, str | None]]) -> Request:
        serials = "".join(f"<row>{r['serial_no']}</row>" for r in wire_rows)
        request = Request(audit=f"<redacted>{serials}</redacted>", text=f"<secret>{serials}</secret>")
        self.prepared.append(request)
        self._rows = list(wire_rows)
        return request

    def send_request(self, request: Request) -> Exchange:
        self.sent.append(request)
        exchange = self.centre.send("outbound", self._rows)
        return Exchange(request.audit, exchange.reply_text, exchange.reply, 0.0)

    def send(self, txn_key: str, wire_rows: Sequence[Mapping[str, str | None]]) -> Exchange:
        raise AssertionError("a preparing centre is sent what it prepared")


def test_the_request_is_built_and_compressed_once_and_audited_before_it_leaves(
    profile, ledger, ledger_url, centre, monkeypatch
):
    prepared = Preparing(centre)
    audited: list[str | None] = []
    send_request = prepared.send_request

    def watched(request: Request) -> Exchange:
        (batch,) = committed_batches(ledger_url)
        audited.append(batch["request"])
        return send_request(request)

    prepared.send_request = watched  # type: ignore[method-assign]
    compressed: list[str | None] = []
    real = sender_module.compress
    for module in (sender_module, batches_module):  # every zlib call of the sender
        monkeypatch.setattr(module, "compress", lambda text, *a: compressed.append(text) or real(text, *a))

    sender(profile, ledger, prepared).send_batch(planned(profile, ledger, "Q1", "Q2"))

    assert prepared.sent == prepared.prepared  # what was built is what went out, built once
    assert len(prepared.prepared) == 1
    audit = "<redacted><row>Q1</row><row>Q2</row></redacted>"
    assert audited == [audit]  # in the ledger before the call
    assert compressed == [audit, "<return>success</return>"]  # the request once, the reply once
    (batch,) = ledger.batches()
    assert (batch["request"], batch["outcome"]) == (audit, "success")


def committed_batches(ledger_url: str) -> list[dict[str, Any]]:
    other = Ledger(ledger_url)
    try:
        return other.batches()
    finally:
        other.dispose()


class _FirstCallBreaks(FakeCentre):
    """The first call fails with ``error`` once the others are out; the others answer a little later."""

    def __init__(self, profile, error: BaseException) -> None:
        super().__init__(profile)
        self.error, self.calls, self.guard = error, 0, threading.Lock()

    def send(self, txn_key: str, rows: Sequence[Mapping[str, str | None]]) -> Exchange:
        with self.guard:
            self.calls += 1
            first = self.calls == 1
        if first:
            time.sleep(0.05)
            raise self.error
        time.sleep(0.3)
        return super().send(txn_key, rows)


def test_a_second_failure_while_stopping_neither_hides_the_first_nor_strands_the_other_batches(
    profile, ledger, monkeypatch
):
    centre = _FirstCallBreaks(profile, RuntimeError("the first error"))
    send = sender(profile, ledger, centre, batch_limit=2, max_in_flight=3)
    plans = planned(profile, ledger, *[f"S{i}" for i in range(6)])
    record_fates, failures = ledger.record_fates, []

    def hiccup_once(*args: Any, **kwargs: Any) -> None:
        if not failures:
            failures.append(1)
            raise OSError("ledger hiccup")
        record_fates(*args, **kwargs)

    monkeypatch.setattr(ledger, "record_fates", hiccup_once)
    with pytest.raises(RuntimeError, match="the first error"):
        send.send_all(plans)
    # without close(): every batch that was out is recorded before send_all raises
    final = states(ledger)
    assert list(final.values()).count(S.ACCEPTED) == 2, final
    assert list(final.values()).count(S.IN_FLIGHT) == 4, final  # the failed call's and the hiccup's rows


def test_an_answer_back_when_the_next_launch_stops_the_run_is_still_recorded(profile, ledger, centre):
    class LockLostAfterOne:
        def __init__(self) -> None:
            self.checks = 0

        def check(self) -> None:
            self.checks += 1
            if self.checks > 1:
                raise TransportError("lost the upload lock")

    batch_sender = sender(profile, ledger, centre, batch_limit=1, max_in_flight=1)
    batch_sender.lock = LockLostAfterOne()  # type: ignore[assignment]

    with pytest.raises(TransportError, match="lost the upload lock"):
        batch_sender.send_all(planned(profile, ledger, "L1", "L2"))

    # L1's answer came back before L2 could leave: recorded, not left in flight
    assert states(ledger) == {"L1": S.ACCEPTED, "L2": S.PENDING}
    assert len(centre.requests) == 1


def test_an_answer_back_frees_its_slot_while_the_next_batches_are_built(profile, ledger, monkeypatch):
    fake, answered = FakeCentre(profile), threading.Semaphore(0)

    class Answering:
        def send(self, txn_key, wire_rows):
            try:
                return fake.send(txn_key, wire_rows)
            finally:
                answered.release()

    out_when_built: list[int] = []
    build = BatchSender._flight

    def flight(self, batch, attempt=0):
        if out_when_built:  # from the second batch on: the one before is back, its future done
            assert answered.acquire(timeout=10), "the batch before was not sent while this one was built"
            deadline = time.monotonic() + 10
            while not all(f.done() for f in self._flying) and time.monotonic() < deadline:
                time.sleep(0.001)
        out_when_built.append(self.result.batches)
        return build(self, batch, attempt)

    monkeypatch.setattr(BatchSender, "_flight", flight)
    batch_sender = sender(profile, ledger, Answering(), batch_limit=2, max_in_flight=1)
    batch_sender.submit_all(planned(profile, ledger, *[f"W{n}" for n in range(6)]))
    batch_sender.drain()
    # each batch went out as soon as the one before it was back, not once the chunk's last was built
    assert out_when_built == [0, 1, 2]
    assert set(states(ledger).values()) == {S.ACCEPTED}

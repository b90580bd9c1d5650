"""What the sender (:mod:`cdyb_jxc.upload.sender`) works with (no Airflow): the centre it talks to, the
rows of a batch (:class:`Planned`), one request of a batch (:class:`Flight`), and what a reply says of each
row (:class:`ReplyRecorder`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from cdyb_jxc.ledger import DOUBT_STATES, Ledger, LedgerEntry, LedgerState
from cdyb_jxc.ledger.batch_store import compress, utcnow
from cdyb_jxc.ledger.transitions import ReplyFates
from cdyb_jxc.safety.textcap import PART_MAX, REQUEST_MAX, TEXT_MAX, cap
from cdyb_jxc.upload.result import UploadResult, deadline_utc, field_of
from cdyb_jxc.wire.codec import BatchReply, RowFailure, match_failures, reply_contradiction
from cdyb_jxc.wire.profile import Profile

log = logging.getLogger(__name__)


class Exchange(Protocol):
    """What a :class:`Sender` returns (:class:`cdyb_jxc.wire.client.Exchange`): the parsed reply and its
    text, and optionally the request as it went out (验证码 redacted)."""

    @property
    def reply(self) -> BatchReply: ...

    @property
    def reply_text(self) -> str: ...


class Sender(Protocol):
    """The centre: sends one batch of wire rows (:meth:`cdyb_jxc.wire.client.CentreClient.send`)."""

    def send(self, txn_key: str, rows: Sequence[Mapping[str, str | None]]) -> Exchange: ...


class Prepared(Protocol):
    """A request built once (:class:`cdyb_jxc.wire.client.Request`): ``audit`` is its redacted text."""

    @property
    def audit(self) -> str: ...


@runtime_checkable
class Preparing(Protocol):
    """A centre that builds a batch's request before sending it (:class:`~cdyb_jxc.wire.client.CentreClient`,
    the hook): the audit then holds the very text that goes out, built and compressed once.
    :meth:`send_request` may be called from several threads at once."""

    def prepare(self, txn_key: str, rows: Sequence[Mapping[str, str | None]]) -> Prepared: ...

    def send_request(self, request: Any) -> Exchange: ...


@dataclass
class Planned:
    """One source row on its way: wire values, payload hash, business day, what the ledger knew."""

    serial: str
    wire: dict[str, str | None]
    hash: str
    business_date: str
    prior: LedgerEntry | None
    row: int = 0  # number of the row in the source (1 = first data row)

    @property
    def sent_before(self) -> bool:
        """Sent earlier without a trusted answer: the centre may hold it (a duplicate answer reconciles)."""
        return self.prior is not None and self.prior.state in DOUBT_STATES

    @property
    def sent_hash(self) -> str:
        """The payload the centre may hold: that of the earlier in-doubt send, else this one."""
        prior = self.prior
        return prior.sent_hash if prior is not None and self.sent_before and prior.sent_hash else self.hash

    def now_in_doubt(self) -> None:
        """Its send ended in doubt: the ledger now holds it IN_DOUBT, its sent payload kept (a duplicate
        answer to the next send reconciles it)."""
        self.prior = LedgerEntry(
            self.serial, LedgerState.IN_DOUBT, self.hash, self.sent_hash, None, False, None
        )


@dataclass
class Flight:
    """One request of a batch: what goes out, its audit row, and which attempt it is (0: the first)."""

    batch: list[Planned]
    attempt: int
    request: Any  # a Prepared request, or the wire rows for a plain Sender
    audit: str  # the request as the audit keeps it (验证码 redacted)
    request_gz: bytes | None
    batch_id: int = 0
    started_at: datetime | None = None
    seconds: float = 0.0  # wall time of the call (set by the worker)
    finished_at: datetime | None = None  # when the call ended (set by the worker)
    reply_gz: bytes | None = None  # the reply as the audit keeps it, compressed (set by the worker)


def call_executor(k: int) -> Executor:
    """Where the calls run: ``k`` worker threads, so that even with one call out the calling thread plans
    the next rows meanwhile."""
    return ThreadPoolExecutor(k, thread_name_prefix="cdyb-jxc-send")


def answer_audit(flight: Flight, exchange: Exchange) -> dict[str, Any]:
    """The audit values of an answered request."""
    reply = exchange.reply
    audit = {
        "retcode": reply.retcode,
        "retmsg": reply.retmsg,
        "succnum": reply.succnum,
        "failnum": reply.failnum,
        "reply_gz": flight.reply_gz if flight.reply_gz is not None else compress(exchange.reply_text),
    }
    sent = getattr(exchange, "request", None)
    if sent and sent != flight.audit:
        # the request exactly as a plain Sender says it went out (验证码 redacted), replacing the copy
        # recorded before sending
        audit["request_gz"] = compress(sent, REQUEST_MAX)
    return audit


class ReplyRecorder:
    """Writes what a reply says of each row of its batch (the caller holds the ledger transaction).

    :param ledger: the ledger
    :param profile: the interface profile
    :param txn_key: ``init``, ``inbound``, ``outbound`` or ``stock``
    :param institution_code: 定点机构编码
    :param result: the run's result (counts, reject sample)
    """

    def __init__(
        self, *, ledger: Ledger, profile: Profile, txn_key: str, institution_code: str, result: UploadResult
    ) -> None:
        self.ledger = ledger
        self.profile = profile
        self.txn = profile.transaction(txn_key)
        self.institution = institution_code
        self.result = result
        self.offset = int(profile.service["timezone_offset_hours"])

    def record(self, batch: list[Planned], reply: BatchReply) -> tuple[list[Planned], str | None]:
        """Record each row's fate; returns the rows left in doubt and why (a contradicting reply)."""
        serials = [p.serial for p in batch]
        match = match_failures(reply, serials)
        contradiction = reply_contradiction(reply, serials, match)
        if not contradiction:
            self._record_fates(batch, match[0])
            return [], None
        # it quotes the reply's retmsg, which is the centre's to size: logged and stored once per row
        contradiction = cap(contradiction, PART_MAX)
        log.warning("%s reply contradicts itself: %s", self.txn.code, contradiction)
        said = {s: f"; 应答称: {cap(f.message, PART_MAX)}" for s, f in match[0].items()}
        self.ledger.mark_in_doubt(self.institution, serials, f"应答不一致: {contradiction}", utcnow(), said)
        return list(batch), contradiction

    def _record_fates(self, batch: list[Planned], failures: Mapping[str, RowFailure]) -> None:
        """Listed rows were not saved (refused, or a duplicate); the others were."""
        fates = ReplyFates(utcnow())
        dup = self.profile.category("duplicate")
        for plan in batch:
            failure = failures.get(plan.serial)
            if failure is None:
                self._accepted(fates, plan)
            elif failure.category == dup:
                self._duplicate(fates, plan, failure, dup)
            else:
                # the centre's text, sized by the centre: capped before it is searched, stored and counted
                detail = cap(failure.detail, TEXT_MAX)
                fld = field_of(self.txn, detail)
                state = fates.rejected(plan.serial, failure.category, fld, detail)
                self.result.count_reject(state, plan.serial, plan.wire, failure.category, fld, detail)
        self.ledger.record_fates(self.institution, fates)

    def _duplicate(self, fates: ReplyFates, plan: Planned, failure: RowFailure, dup: str) -> None:
        """重复上传: the payload sent before in doubt is reconciled; anything else is a conflict."""
        prior = plan.prior
        if prior is not None and plan.sent_before and (prior.sent_hash or prior.payload_hash) == plan.hash:
            self._accepted(fates, plan, reconciled=True)
            return
        reason = "在途记录内容已变化" if plan.sent_before else "本客户端从未发送过该流水号"
        detail = f"{cap(failure.detail, PART_MAX)}（{reason}）"
        state = fates.conflict(plan.serial, dup, detail)
        self.result.count_reject(state, plan.serial, plan.wire, dup, fates.CONFLICT_FIELD, detail)

    def _accepted(self, fates: ReplyFates, plan: Planned, *, reconciled: bool = False) -> None:
        deadline = deadline_utc(plan.business_date, self.offset)
        late = (fates.now - deadline).total_seconds() if deadline else None
        self.result.states[fates.accepted(plan.serial, late, reconciled=reconciled)] += 1

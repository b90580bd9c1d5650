"""Sending batches and recording the centre's answers: the half of the upload engine that talks to the
centre (no Airflow). :class:`~cdyb_jxc.upload.engine.Uploader` plans the rows and owns a :class:`BatchSender`.

One batch: check the lock → record the request (audit) → rows IN_FLIGHT → send → record the answer (each
row ACCEPTED, REJECTED, … or the batch back to PENDING / IN_DOUBT) → close the audit row. A transport fault or
a lost reply sends the batch again unchanged; rows a self-contradicting reply left in doubt go again too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol

from cdyb_jxc.exceptions import CallRejectedError, CdybJxcError, InDoubtError, TransportError
from cdyb_jxc.ledger import DOUBT_STATES, Ledger, LedgerEntry, LedgerState
from cdyb_jxc.ledger.lock import UploadLock
from cdyb_jxc.ledger.store import compress, utcnow
from cdyb_jxc.ledger.transitions import ReplyFates
from cdyb_jxc.safety.textcap import PART_MAX, REQUEST_MAX, TEXT_MAX, cap
from cdyb_jxc.upload.result import RunInfo, UploadResult, deadline_utc, field_of
from cdyb_jxc.wire.codec import BatchReply, RowFailure, build_request, match_failures, reply_contradiction
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


class BatchSender:
    """Sends planned rows in batches and records every answer in the ledger (IN_FLIGHT first).

    :param ledger: the ledger
    :param profile: the interface profile
    :param txn_key: ``init``, ``inbound``, ``outbound`` or ``stock``
    :param institution_code: 定点机构编码
    :param centre: the centre (see :class:`Sender`)
    :param result: the run's result (counts, timings, reject sample)
    :param run: who is uploading
    :param batch_limit: rows per request
    :param resend_attempts: in-run resends of a batch after a transport fault or lost reply
    :param backoff: seconds before the first resend, doubled each time
    :param sleep: how to wait before a resend
    :param progress: called with the number of rows answered after each batch
    """

    def __init__(
        self,
        *,
        ledger: Ledger,
        profile: Profile,
        txn_key: str,
        institution_code: str,
        centre: Sender,
        result: UploadResult,
        run: RunInfo,
        batch_limit: int,
        resend_attempts: int,
        backoff: float,
        sleep: Callable[[float], None],
        progress: Callable[[int], None] | None,
    ) -> None:
        self.ledger = ledger
        self.profile = profile
        self.txn_key = txn_key
        self.txn = profile.transaction(txn_key)
        self.institution = institution_code
        self.centre = centre
        self.result = result
        self.run = run
        self.batch_limit = batch_limit
        self.resend_attempts = resend_attempts
        self.backoff = backoff
        self.sleep = sleep
        self.progress = progress
        self.offset = int(profile.service["timezone_offset_hours"])
        self.left_in_doubt = 0  # rows still IN_DOUBT after self-contradicting replies (the run raises)
        self.lock: UploadLock | None = None  # the run's lock, checked before each batch leaves

    def send_all(self, rows: Sequence[Planned]) -> None:
        """Send ``rows`` in batches of at most :attr:`batch_limit`."""
        for start in range(0, len(rows), self.batch_limit):
            self.send_batch(list(rows[start : start + self.batch_limit]))

    def send_batch(self, batch: list[Planned]) -> None:
        """Send one batch; resend it unchanged after a transport fault or lost reply (``resend_attempts``
        times, then raise), and resend the rows a self-contradicting reply left in doubt (then give up on
        them for this run: :attr:`left_in_doubt`, raised by the caller once every batch went out)."""
        attempt = 0
        while True:
            try:
                doubtful = self._send_once(batch)
            except CdybJxcError as err:
                # asked again only when the error says so: the request never arrived, or its fate is unknown
                if not err.retryable or attempt >= self.resend_attempts:
                    raise
                self._before_resend(batch, str(err), attempt, in_doubt=isinstance(err, InDoubtError))
                attempt += 1
                continue
            if not doubtful:
                return
            if attempt >= self.resend_attempts:
                self._give_up(doubtful)
                return
            batch = doubtful
            self._before_resend(batch, "reply contradicts itself", attempt, in_doubt=True)
            attempt += 1

    def _give_up(self, doubtful: list[Planned]) -> None:
        self.left_in_doubt += len(doubtful)
        log.error(
            "%s: %d rows stay IN_DOUBT after replies that contradict themselves; the run goes on "
            "and they go out again on the next try",
            self.txn.code,
            len(doubtful),
        )

    def _before_resend(self, batch: list[Planned], why: str, attempt: int, *, in_doubt: bool) -> None:
        delay, why = self.backoff * (2**attempt), cap(why, PART_MAX)  # why may quote the centre at length
        log.warning(
            "%s batch of %d rows: %s; resending unchanged in %.1fs (%d/%d)",
            self.txn.code,
            len(batch),
            why,
            delay,
            attempt + 1,
            self.resend_attempts,
        )
        self.sleep(delay)
        if in_doubt:
            # the rows may have been stored: a duplicate answer now reconciles them
            for plan in batch:
                plan.prior = _in_doubt(plan)

    # -- one request -----------------------------------------------------------------------------------------
    def _send_once(self, batch: list[Planned]) -> list[Planned]:
        """Send one batch and record the answer; returns the rows a self-contradicting reply left in doubt."""
        if self.lock is not None:
            self.lock.check()
        batch_id = self._open_audit(batch)
        sent = [(p.serial, p.sent_hash) for p in batch]
        self.ledger.mark_in_flight(self.institution, sent, batch_id, utcnow())
        self.result.batches += 1
        self.result.rows_sent += len(batch)
        exchange = self._exchange(batch, batch_id)
        reply, audit = exchange.reply, _audit(exchange)
        if reply.whole_call_rejected:
            self._call_rejected(batch, batch_id, reply, audit)
        doubtful, contradiction = self._record_reply(batch, reply)
        outcome = "in_doubt" if contradiction else reply.status
        self.ledger.finish_batch(batch_id, outcome=outcome, error=contradiction, **audit)
        if self.progress:
            self.progress(len(batch) - len(doubtful))
        return doubtful

    def _open_audit(self, batch: list[Planned]) -> int:
        """The batch's audit row, with the request as built here (验证码 redacted) until the sent one."""
        redacted = build_request(
            self.profile,
            self.txn,
            [p.wire for p in batch],
            user="-",
            verification_code="******",
            institution_code=self.institution,
        )
        return self.ledger.start_batch(
            institution_code=self.institution,
            transaction_code=self.txn.code,
            run_token=self.run.token,
            dag_id=self.run.dag_id,
            run_id=self.run.run_id,
            task_id=self.run.task_id,
            row_count=len(batch),
            request_gz=compress(redacted, REQUEST_MAX),
        )

    def _exchange(self, batch: list[Planned], batch_id: int) -> Exchange:
        """Send the batch; on an error, record what it means for the rows, close the audit row, raise."""
        started = time.perf_counter()
        try:
            return self.centre.send(self.txn_key, [p.wire for p in batch])
        except TransportError as err:
            self._not_sent(batch, f"未发送: {err}")
            self.ledger.finish_batch(batch_id, outcome="not_sent", error=str(err))
            raise
        except InDoubtError as err:
            self.ledger.mark_in_doubt(
                self.institution, [p.serial for p in batch], f"应答丢失: {err}", utcnow()
            )
            reply_gz = compress(err.reply_text)
            self.ledger.finish_batch(batch_id, outcome="in_doubt", error=str(err), reply_gz=reply_gz)
            raise
        except CallRejectedError as err:
            self._not_sent(batch, f"整批被拒: {err}")
            self.ledger.finish_batch(batch_id, outcome="rejected", error=str(err))
            raise
        finally:
            self.result.send_seconds += time.perf_counter() - started

    def _call_rejected(
        self, batch: list[Planned], batch_id: int, reply: BatchReply, audit: dict[str, Any]
    ) -> NoReturn:
        self._not_sent(batch, f"整批被拒: {reply.retmsg}")
        self.ledger.finish_batch(batch_id, outcome="rejected", **audit)
        raise CallRejectedError(cap(reply.retmsg, PART_MAX), reply.category)

    def _not_sent(self, batch: list[Planned], detail: str) -> None:
        """Nothing was stored: rows go back to PENDING, or stay IN_DOUBT if an earlier send was in doubt."""
        rows = [(p.serial, p.sent_before) for p in batch]
        self.ledger.mark_not_sent(self.institution, rows, detail, utcnow())

    # -- the answer ------------------------------------------------------------------------------------------
    def _record_reply(self, batch: list[Planned], reply: BatchReply) -> tuple[list[Planned], str | None]:
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


def _audit(exchange: Exchange) -> dict[str, Any]:
    """The audit values of an answered request."""
    reply = exchange.reply
    audit = {
        "retcode": reply.retcode,
        "retmsg": reply.retmsg,
        "succnum": reply.succnum,
        "failnum": reply.failnum,
        "reply_gz": compress(exchange.reply_text),
    }
    sent = getattr(exchange, "request", None)
    if sent:
        # the request exactly as it went out (验证码 redacted by the client), replacing the copy
        # recorded before sending
        audit["request_gz"] = compress(sent, REQUEST_MAX)
    return audit


def _in_doubt(plan: Planned) -> LedgerEntry:
    """What the ledger now holds of a row whose send ended in doubt (its sent payload kept)."""
    return LedgerEntry(plan.serial, LedgerState.IN_DOUBT, plan.hash, plan.sent_hash, None, False, None)

"""Sending batches and recording the centre's answers: the half of the upload engine that talks to the
centre (no Airflow). :class:`~cdyb_jxc.upload.engine.Uploader` plans the rows and inherits this."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

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
    LedgerEntry,
)
from cdyb_jxc.ledger.store import compress, utcnow
from cdyb_jxc.safety.textcap import PART_MAX, REQUEST_MAX, TEXT_MAX, cap
from cdyb_jxc.upload.result import RunInfo, UploadResult, deadline_utc, field_of
from cdyb_jxc.wire.codec import RowFailure, build_request, match_failures, reply_contradiction
from cdyb_jxc.wire.profile import Profile, TransactionSpec

log = logging.getLogger(__name__)

DOUBT_STATES = frozenset({IN_DOUBT, IN_FLIGHT})


class Sender(Protocol):
    def send(self, txn_key: str, rows: Sequence[Mapping[str, str | None]]) -> Any: ...


@dataclass
class Planned:
    """One source row on its way: wire values, payload hash, business day, what the ledger knew."""

    serial: str
    wire: dict[str, str | None]
    hash: str
    business_date: str
    prior: LedgerEntry | None
    row: int = 0  # number of the row in the source (1 = first data row)


class BatchSending:
    """Send planned rows in batches and record every answer in the ledger (IN_FLIGHT first)."""

    profile: Profile
    txn: TransactionSpec
    txn_key: str
    institution: str
    sender: Sender
    ledger: Ledger
    result: UploadResult
    run_info: RunInfo
    resend_attempts: int
    backoff: float
    sleep: Callable[[float], None]
    progress: Callable[[int], None] | None
    offset: int
    left_in_doubt: int  # rows still IN_DOUBT after self-contradicting replies (the run raises at its end)
    lock: Any  # the run's UploadLock, checked before each batch leaves

    def _count_reject(
        self,
        serial: str,
        plan: Planned,
        category: str | None,
        fld: str | None,
        detail: str,
        state: str = REJECTED,
    ) -> None:
        self.result.states[state] += 1
        self.result.reject(
            serial_no=serial,
            item=plan.wire.get("mapping_serial_no"),
            item_name=plan.wire.get("hospital_item_name"),
            category=category,
            field=fld,
            detail=detail,
        )

    def _update_grouped(self, updates: list[dict[str, Any]]) -> None:
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for u in updates:
            groups.setdefault(tuple(sorted(u)), []).append(u)
        for rows in groups.values():
            self.ledger.update_rows(self.institution, rows)

    # -- sending ----------------------------------------------------------------------------------------
    def _send_batch(self, batch: list[Planned]) -> None:
        """Send one batch; resend it unchanged after a transport fault or lost reply (``resend_attempts``
        times, then raise), and resend the rows a self-contradicting reply left in doubt (then give up on
        them for this run: :attr:`left_in_doubt`, raised by the caller once every batch went out)."""
        attempt = 0
        while True:
            try:
                doubtful = self._send_once(batch)
            except (TransportError, InDoubtError) as err:
                if attempt >= self.resend_attempts:
                    raise
                self._before_resend(batch, str(err), attempt, in_doubt=isinstance(err, InDoubtError))
                attempt += 1
                continue
            if not doubtful:
                return
            if attempt >= self.resend_attempts:
                self.left_in_doubt += len(doubtful)
                log.error(
                    "%s: %d rows stay IN_DOUBT after replies that contradict themselves; the run goes on "
                    "and they go out again on the next try",
                    self.txn.code,
                    len(doubtful),
                )
                return
            batch = doubtful
            self._before_resend(batch, "reply contradicts itself", attempt, in_doubt=True)
            attempt += 1

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

    def _send_once(self, batch: list[Planned]) -> list[Planned]:
        """Send one batch and record the answer; returns the rows a self-contradicting reply left in doubt."""
        res, ledger = self.result, self.ledger
        if self.lock is not None:
            self.lock.check()
        wire_rows = [p.wire for p in batch]
        redacted = build_request(
            self.profile,
            self.txn,
            wire_rows,
            user="-",
            verification_code="******",
            institution_code=self.institution,
        )
        batch_id = ledger.start_batch(
            institution_code=self.institution,
            transaction_code=self.txn.code,
            run_token=self.run_info.token,
            dag_id=self.run_info.dag_id,
            run_id=self.run_info.run_id,
            task_id=self.run_info.task_id,
            row_count=len(batch),
            request_gz=compress(redacted, REQUEST_MAX),
        )
        now = utcnow()
        # IN_FLIGHT is committed before the request leaves;
        # sent_hash keeps the hash of an earlier in-doubt send
        ledger.update_rows(
            self.institution,
            [
                {
                    "serial_no": p.serial,
                    "state": IN_FLIGHT,
                    "last_sent_at": now,
                    "last_batch_id": batch_id,
                    "sent_hash": p.prior.sent_hash
                    if p.prior and p.prior.state in DOUBT_STATES and p.prior.sent_hash
                    else p.hash,
                    "updated_at": now,
                }
                for p in batch
            ],
            count_attempt=True,
        )
        res.batches += 1
        res.rows_sent += len(batch)
        started = time.perf_counter()
        try:
            exchange = self.sender.send(self.txn_key, wire_rows)
        except TransportError as err:
            self._restore(batch, f"未发送: {err}")
            ledger.finish_batch(batch_id, outcome="not_sent", error=str(err))
            raise
        except InDoubtError as err:
            self._mark_in_doubt(batch, f"应答丢失: {err}")
            ledger.finish_batch(
                batch_id,
                outcome="in_doubt",
                error=str(err),
                reply_gz=compress(getattr(err, "reply_text", None)),
            )
            raise
        except CallRejectedError as err:
            self._restore(batch, f"整批被拒: {err}")
            ledger.finish_batch(batch_id, outcome="rejected", error=str(err))
            raise
        finally:
            res.send_seconds += time.perf_counter() - started
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
        if reply.whole_call_rejected:
            self._restore(batch, f"整批被拒: {reply.retmsg}")
            ledger.finish_batch(batch_id, outcome="rejected", **audit)
            raise CallRejectedError(cap(reply.retmsg, PART_MAX), reply.category)
        match = match_failures(reply, [p.serial for p in batch])
        contradiction = reply_contradiction(reply, [p.serial for p in batch], match)
        if contradiction:
            # it quotes the reply's retmsg, which is the centre's to size: logged and stored once per row
            contradiction = cap(contradiction, PART_MAX)
        doubtful = self._apply(batch, match[0], contradiction)
        ledger.finish_batch(
            batch_id, outcome="in_doubt" if contradiction else reply.status, error=contradiction, **audit
        )
        if self.progress:
            self.progress(len(batch) - len(doubtful))
        return doubtful

    def _restore(self, batch: list[Planned], detail: str) -> None:
        """Nothing was stored: rows go back to PENDING, or stay IN_DOUBT if an earlier send was in doubt."""
        now = utcnow()
        self.ledger.update_rows(
            self.institution,
            [
                {
                    "serial_no": p.serial,
                    "state": IN_DOUBT if p.prior and p.prior.state in DOUBT_STATES else PENDING,
                    "detail": detail,
                    "updated_at": now,
                }
                for p in batch
            ],
        )

    def _mark_in_doubt(
        self, batch: list[Planned], detail: str, said: Mapping[str, str] | None = None
    ) -> None:
        """The rows may or may not be stored: IN_DOUBT with ``detail`` (plus what the reply said of a row)."""
        now, said = utcnow(), said or {}
        self.ledger.update_rows(
            self.institution,
            [
                {
                    "serial_no": p.serial,
                    "state": IN_DOUBT,
                    "detail": detail + said.get(p.serial, ""),
                    "updated_at": now,
                }
                for p in batch
            ],
        )

    def _apply(
        self, batch: list[Planned], failures: Mapping[str, RowFailure], contradiction: str | None
    ) -> list[Planned]:
        """Record each row's fate from the reply's ``failures`` (batch 流水号 → failure). Listed rows were
        not saved; unlisted rows were, unless the reply contradicts itself (``contradiction``): then no
        row's fate can be trusted, every row is IN_DOUBT (returned) and is sent again."""
        if contradiction:
            log.warning("%s reply contradicts itself: %s", self.txn.code, contradiction)
            said = {s: f"; 应答称: {cap(f.message, PART_MAX)}" for s, f in failures.items()}
            self._mark_in_doubt(batch, f"应答不一致: {contradiction}", said)
            return list(batch)
        dup = self.profile.category("duplicate")
        now = utcnow()
        accepted, rejected = [], []
        for plan in batch:
            failure = failures.get(plan.serial)
            if failure is None:
                accepted.append(self._accepted(plan, ACCEPTED, now))
                continue
            # the centre's text, sized by the centre: capped before it is searched, stored and counted
            detail = cap(failure.detail, TEXT_MAX)
            category: str | None
            fld: str | None
            if failure.category == dup:
                prior = plan.prior
                sent_before = prior is not None and prior.state in DOUBT_STATES
                if sent_before and (prior.sent_hash or prior.payload_hash) == plan.hash:  # type: ignore[union-attr]
                    accepted.append(self._accepted(plan, ACCEPTED_RECONCILED, now))
                    continue
                reason = "在途记录内容已变化" if sent_before else "本客户端从未发送过该流水号"
                state, category, fld = DUPLICATE_CONFLICT, dup, "serial_no"
                detail = f"{cap(failure.detail, PART_MAX)}（{reason}）"
            else:
                state, category, fld = REJECTED, failure.category, field_of(self.txn, detail)
            rejected.append(
                {
                    "serial_no": plan.serial,
                    "state": state,
                    "category": category,
                    "field": fld,
                    "detail": detail,
                    "updated_at": now,
                }
            )
            self._count_reject(plan.serial, plan, category, fld, detail, state)
        self._update_grouped(accepted)
        self._update_grouped(rejected)
        return []

    def _accepted(self, plan: Planned, state: str, now: datetime) -> dict[str, Any]:
        self.result.states[state] += 1
        deadline = deadline_utc(plan.business_date, self.offset)
        late = (now - deadline).total_seconds() if deadline else None
        return {
            "serial_no": plan.serial,
            "state": state,
            "category": None,
            "field": None,
            "detail": None,
            "accepted_at": now,
            "late_seconds": late,
            "updated_at": now,
        }


def _in_doubt(plan: Planned) -> LedgerEntry:
    prior = plan.prior
    sent_hash = prior.sent_hash if prior and prior.state in DOUBT_STATES and prior.sent_hash else plan.hash
    return LedgerEntry(plan.serial, IN_DOUBT, plan.hash, sent_hash, None, False, None)

"""The upload engine shared by the operators and the CLI (no Airflow).

Source rows arrive in chunks. Each chunk is planned (wire values; rows without a usable 流水号 or repeated
become source issues), looked up in the ledger, and each row decided (:class:`Decision`): sent, kept (the
ledger's answer stands) or skipped. Rows to send that would certainly fail are held back; every planned row
is recorded (a row new to the ledger as its batch leaves, see :mod:`cdyb_jxc.upload.unwritten`), and the
rest go out in batches of at most the profile's limit (:class:`BatchSender`). Every
row ends in a ledger state (:class:`~cdyb_jxc.ledger.LedgerState`): ACCEPTED, ACCEPTED_RECONCILED, REJECTED
(with category and detail), IN_DOUBT or DUPLICATE_CONFLICT.
"""

from __future__ import annotations

import enum
import logging
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cdyb_jxc.exceptions import InDoubtError
from cdyb_jxc.ledger import ACCEPTED_STATES, Ledger, LedgerEntry, LedgerState
from cdyb_jxc.ledger.batch_store import utcnow
from cdyb_jxc.ledger.lock import DEFAULT_WAIT_SECONDS, UploadLock
from cdyb_jxc.ledger.schema import SERIAL_MAX
from cdyb_jxc.ledger.transitions import held_back, kept_in_doubt, to_send
from cdyb_jxc.safety.textcap import unstorable
from cdyb_jxc.upload.balance import packages_of
from cdyb_jxc.upload.result import RunInfo, UploadResult, business_date_of, payload_hash
from cdyb_jxc.upload.returns import cleared_originals, original_of
from cdyb_jxc.upload.sender import BatchSender, Planned, Sender
from cdyb_jxc.upload.source_issues import SourceIssues
from cdyb_jxc.upload.switching import sooner_switches
from cdyb_jxc.wire.clean_rows import clean_rows
from cdyb_jxc.wire.connection import DEFAULT_MAX_IN_FLIGHT
from cdyb_jxc.wire.profile import Profile
from cdyb_jxc.wire.rules import XML_ILLEGAL_RE, MappingEntry, RowError, precheck_row
from cdyb_jxc.wire.values import row_to_wire

log = logging.getLogger(__name__)

# Rejections that can clear without the row changing (the 对码 or the original outbound may arrive later).
RESEND_UNCHANGED = frozenset({"unmapped", "mapping_mismatch", "original_missing"})
# ... but at most this often, so re-running a day does not send them again right away.
RESEND_INTERVAL = timedelta(hours=6)
# A source chunk is planned in parts of this many rows, and the sender is polled every POLL_ROWS rows while
# planning: replies are recorded and waiting batches go out while the next rows are prepared, so the centre
# is kept busy (the ledger still has one writer, this thread).
PLAN_ROWS = 1000
POLL_ROWS = 10


class Decision(enum.Enum):
    """What to do with a planned row, given what the ledger knows of it."""

    SEND = "send"  # record it and send it (unless held back)
    KEEP = "keep"  # the ledger's answer stands: counted, not sent
    SKIP = "skip"  # a source issue: neither recorded nor sent


@dataclass
class ChunkPlan:
    """What one chunk writes to the ledger, and the rows it sends."""

    to_send: list[Planned] = field(default_factory=list)
    new: list[dict[str, Any]] = field(default_factory=list)  # rows new to the ledger, held back
    known: list[dict[str, Any]] = field(default_factory=list)  # rows the ledger knows, planned again
    kept: list[str] = field(default_factory=list)  # 流水号 whose ledger answer stands


class Uploader:
    """Uploads one transaction's rows for one institution through ``sender`` and records everything.

    :param profile: the interface profile
    :param txn_key: ``init``, ``inbound``, ``outbound`` or ``stock``
    :param institution_code: 定点机构编码
    :param sender: the centre: an object with ``send(txn_key, wire_rows)`` returning an exchange
        (see :mod:`cdyb_jxc.wire.client`)
    :param ledger: the ledger
    :param batch_limit: rows per request (capped at the profile's limit)
    :param registry: local copy of the 对码 registry for hold-back (R3); ``None`` to skip
    :param business_date: fallback business day for rows without a usable date
    :param resend_attempts: in-run resends of a batch after a transport fault or lost reply
    :param backoff: seconds before the first resend, doubled each time
    :param lock_wait: seconds to wait for another upload of the same transaction to finish
    :param complete_days: business days the source holds in full (see :class:`SourceIssues`)
    :param source: the identity of the source read (see :class:`SourceIssues`), e.g. a file's digest
    :param resend_rejected_after: unchanged rows rejected for a reason that can clear (未对码,
        原出库记录不存在) go out again once this long has passed since they were last sent
    :param max_in_flight: batches out at once (1 to 8); every one is answered before :meth:`run` returns
    :param resend_now: categories (profile keys, e.g. ``original_missing``) of unchanged rejected rows that
        go out again at once, whatever ``resend_rejected_after`` says: a patient return refused because its
        outbound had not been sent yet, once that outbound is accepted
    """

    def __init__(
        self,
        *,
        profile: Profile,
        txn_key: str,
        institution_code: str,
        sender: Sender,
        ledger: Ledger,
        batch_limit: int | None = None,
        registry: Mapping[str, MappingEntry] | None = None,
        business_date: str | None = None,
        run: RunInfo | None = None,
        resend_attempts: int = 2,
        backoff: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        progress: Callable[[int], None] | None = None,
        resend_rejected_after: timedelta = RESEND_INTERVAL,
        lock_wait: float = DEFAULT_WAIT_SECONDS,
        complete_days: Sequence[str] = (),
        source: str | None = None,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        resend_now: Collection[str] = (),
    ) -> None:
        self.profile = profile
        self.txn = profile.transaction(txn_key)
        self.institution = institution_code
        self.ledger = ledger
        self.registry = registry
        self.business_date = business_date
        self.run_info = run or RunInfo()
        self.resend_rejected_after = resend_rejected_after
        self.resend_now = frozenset(resend_now) & RESEND_UNCHANGED
        self._cleared: frozenset[str] = frozenset()  # this chunk's original outbounds accepted since
        self.lock_wait = lock_wait
        self.offset = int(profile.service["timezone_offset_hours"])
        self.result = UploadResult(transaction=txn_key)
        self.sending = BatchSender(
            ledger=ledger,
            profile=profile,
            txn_key=txn_key,
            institution_code=institution_code,
            centre=sender,
            result=self.result,
            run=self.run_info,
            batch_limit=min(batch_limit or profile.batch_limit, profile.batch_limit),
            resend_attempts=resend_attempts,
            backoff=backoff,
            sleep=sleep,
            progress=progress,
            max_in_flight=max_in_flight,
            taken=self._taken_meanwhile,
        )
        self._planned_before: frozenset[str] = frozenset()  # this chunk's 流水号 an earlier chunk planned
        self.issues = SourceIssues(
            ledger=ledger,
            institution_code=institution_code,
            txn=self.txn,
            run=self.run_info,
            result=self.result,
            fallback_date=business_date,
            complete_days=complete_days,
            source=source,
        )

    # -- public ----------------------------------------------------------------------------------------------
    def run(self, chunks: Iterable[Sequence[Mapping[str, Any]]]) -> UploadResult:
        """Upload every chunk, holding the ledger's lock for this institution and transaction.

        Raises after recording: :class:`TransportError`/:class:`InDoubtError` (retry later),
        :class:`CallRejectedError` (do not retry), :class:`UploadBusyError` (another upload of the same rows
        is running; retry later). Source rows that cannot be sent (no 流水号, repeated, …) do not stop the
        run: they are recorded as source issues and counted."""
        started = time.perf_counter()
        lock = UploadLock(self.ledger, self.institution, self.txn.code, wait_seconds=self.lock_wait)
        with lock, ExitStack() as stack:
            stack.enter_context(self.ledger.background_checkpoints())  # commits do not wait for the disk
            stack.enter_context(sooner_switches())  # a reply back takes the GIL sooner (see switching)
            if lock.exclusive:  # this run alone writes its rows: what it wrote need not be read back
                stack.enter_context(self.ledger.sole_writer())
            self.sending.lock = lock
            self._close_abandoned_batches()
            try:
                for chunk in chunks:
                    for start in range(0, len(chunk), PLAN_ROWS):
                        self._chunk(chunk[start : start + PLAN_ROWS])
                self.sending.drain()  # every batch answered before the run's issues settle
                self.issues.settle()
            finally:
                self.sending.close()  # after an error: the batches still out are recorded, none resent
                self.issues.flush()
                self.result.seconds = time.perf_counter() - started
        return self._finish()

    def _close_abandoned_batches(self) -> None:
        # under the lock, a batch still open belongs to a run that died before recording its reply
        abandoned = self.ledger.abandon_open_batches(self.institution, self.txn.code, self.run_info.token)
        if abandoned:
            log.warning(
                "%s: %d request(s) of an earlier run never recorded a reply; their rows are resent and "
                "reconciled",
                self.txn.code,
                abandoned,
            )

    def _finish(self) -> UploadResult:
        left = self.sending.left_in_doubt
        if left:
            raise InDoubtError(
                f"{self.txn.code}: {left} rows are still IN_DOUBT after replies that contradict"
                " themselves (every other row was recorded); they go out again on the next try"
            )
        if self.result.source_issues:
            log.warning(
                "%s: %d source row(s) were not sent and are listed as source issues (reject report, monitor)",
                self.txn.code,
                self.result.source_issues,
            )
        return self.result

    # -- one chunk: plan → look up → decide → hold back → record → send --------------------------------------
    def _chunk(self, chunk: Sequence[Mapping[str, Any]]) -> None:
        # between the steps, the answers of the previous chunk's last batches are recorded and the batches
        # waiting for a slot go out (sending.poll), so that planning does not leave the centre idle
        self.sending.poll()
        planned = self._plan(chunk)
        self.issues.flush()
        if not planned:
            return
        self.sending.poll()
        known = self.ledger.lookup(self.institution, list(planned))
        # planned by an earlier chunk and not yet written (their batch still waits): no poll in between,
        # so a row is either in the ledger or still waiting
        unwritten = self.sending.unwritten
        self._planned_before = frozenset(s for s in planned if s in unwritten) if unwritten else frozenset()
        if "original_missing" in self.resend_now:
            self._cleared = cleared_originals(
                self.ledger, self.institution, self.profile, self.txn, planned, known
            )
        decided = self._decide_chunk(planned, known)
        self.sending.poll()
        self.issues.resolved(list(planned))
        self.issues.flush()
        self._record(decided, planned)
        self.sending.submit_all(decided.to_send)  # the last batches may still be out: see run()

    def _plan(self, chunk: Sequence[Mapping[str, Any]]) -> dict[str, Planned]:
        """The chunk's rows by 流水号, as wire values; a row that cannot be keyed, or repeats a 流水号 of
        the chunk, is a source issue."""
        res, poll = self.result, self.sending.poll
        planned: dict[str, Planned] = {}
        for row in chunk:
            res.rows_read += 1
            if not res.rows_read % POLL_ROWS:
                poll()
            wire = row_to_wire(self.txn, row, self.offset)
            serial = wire.get("serial_no")
            if not serial or len(serial) > SERIAL_MAX or unstorable(serial):
                self._unkeyable(wire)
            elif serial in planned:
                self._duplicate_in_source(serial, wire, res.rows_read)
            else:
                day = business_date_of(self.txn, wire, self.business_date)
                planned[serial] = Planned(serial, wire, payload_hash(wire), day, None, res.rows_read)
        return planned

    def _decide_chunk(self, planned: Mapping[str, Planned], known: Mapping[str, LedgerEntry]) -> ChunkPlan:
        """Decide each row from what the ledger knows of it (``known``) and collect the chunk's writes."""
        decided, poll = ChunkPlan(), self.sending.poll
        now = utcnow()
        to_send: list[Planned] = []
        for n, (serial, plan) in enumerate(planned.items(), 1):
            if not n % POLL_ROWS:
                poll()
            plan.prior = known.get(serial)
            decision = self._decide(plan)
            if decision is Decision.KEEP:
                # stamped with this run, so a repeat in a later chunk is seen as repeated in the source
                decided.kept.append(serial)
            elif decision is Decision.SEND:
                to_send.append(plan)
        # R6 and R1's fast check for the rows to send only, column by column (most rows pass every check)
        clean = clean_rows(self.txn, [p.wire for p in to_send], self.profile.inner_encoding)
        for n, (plan, passed) in enumerate(zip(to_send, clean, strict=True), 1):
            if not n % POLL_ROWS:
                poll()
            self._hold_back_or_send(plan, decided, now, passed)
        return decided

    def _decide(self, plan: Planned) -> Decision:
        """Send a row new to the ledger, or one whose earlier answer can change; keep the ledger's answer
        for the others; skip a 流水号 another transaction uses or this run saw already (source issues)."""
        prior = plan.prior
        if prior is None:
            if plan.serial in self._planned_before:
                self._duplicate_in_source(plan.serial, plan.wire, plan.row)
                return Decision.SKIP
            return Decision.SEND
        if prior.transaction_code and prior.transaction_code != self.txn.code:
            self._used_elsewhere(plan, prior)
            return Decision.SKIP
        if prior.run_token == self.run_info.token:
            self._duplicate_in_source(plan.serial, plan.wire, plan.row)
            return Decision.SKIP
        if prior.state in ACCEPTED_STATES:
            self._already_accepted(plan, prior)
            return Decision.KEEP
        if prior.state == LedgerState.DUPLICATE_CONFLICT or (
            prior.state == LedgerState.REJECTED and self._rejection_stands(plan, prior)
        ):
            self.result.states[prior.state] += 1
            return Decision.KEEP
        return Decision.SEND

    def _rejection_stands(self, plan: Planned, prior: LedgerEntry) -> bool:
        """An unchanged row the centre refused is not sent again, unless its reason can clear (未对码…)
        and it was last sent more than :attr:`resend_rejected_after` ago."""
        if prior.payload_hash != plan.hash or prior.held_back:
            return False
        key = next((k for k, v in self.profile.categories.items() if v == prior.category), None)
        if key in self.resend_now and (key != "original_missing" or self._original_cleared(plan)):
            return False
        recent = prior.last_sent_at is not None and utcnow() - prior.last_sent_at < self.resend_rejected_after
        return key not in RESEND_UNCHANGED or recent

    def _original_cleared(self, plan: Planned) -> bool:
        return original_of(self.txn, plan.wire) in self._cleared

    def _hold_back_or_send(self, plan: Planned, chunk: ChunkPlan, now: datetime, clean: bool) -> None:
        """Check the row (R1-R6, the local 对码 registry) and add its ledger values to ``chunk``: what the
        source says of it and who saw it, then its state (one dict per row, built once).

        :param clean: whether the row passed R6 and R1's fast check (see :func:`clean_rows`)
        """
        error = precheck_row(self.profile, self.txn, plan.wire, self.registry, clean=clean)
        state, send = self._state_values(plan, error)
        if send:
            chunk.to_send.append(plan)
        wire, run = plan.wire, self.run_info
        row = {
            "serial_no": plan.serial,
            "payload_hash": plan.hash,
            "business_date": plan.business_date,
            "mapping_serial_no": wire.get("mapping_serial_no"),
            "item_name": wire.get("hospital_item_name"),
            "quantity_packages": packages_of(self.txn, wire),
            "run_token": run.token,
            "dag_id": run.dag_id,
            "run_id": run.run_id,
            "updated_at": now,
            **state,
        }
        if plan.prior is not None:
            chunk.known.append(row)
            return
        row.update(
            institution_code=self.institution, transaction_code=self.txn.code, first_seen_at=now, attempts=0
        )
        if send:
            self.sending.unwritten.add(plan, row)  # written as its batch leaves
        else:
            chunk.new.append(row)

    def _state_values(self, plan: Planned, error: RowError | None) -> tuple[dict[str, Any], bool]:
        """The ledger state of a row to send or hold back (its values), and whether it goes out."""
        prior = plan.prior.state if plan.prior else None
        if error is None or (plan.sent_before and _writable(plan.wire)):
            # a row sent before in doubt goes again despite its error: a duplicate answer then reconciles it
            return to_send(prior), True
        category = self.profile.category(error.category_key)
        if plan.sent_before:
            self.result.states[LedgerState.IN_DOUBT] += 1
            detail = (
                f"在途记录的源数据现已无法发送({error.detail})；"
                "中心可能已保存此前发送的版本，请修正源数据后重传"
            )
            return kept_in_doubt(category, error.field, detail), False
        self.result.held_back += 1
        self.result.count_reject(
            LedgerState.REJECTED, plan.serial, plan.wire, category, error.field, error.detail
        )
        return held_back(category, error.field, error.detail), False

    def _record(self, decided: ChunkPlan, planned: Mapping[str, Planned]) -> None:
        """Write the chunk's rows held back, planned again or kept (a new row to send is written as its
        batch leaves)."""
        self._insert_new(decided.new, planned)
        self.ledger.replan(self.institution, decided.known)
        self.ledger.mark_seen(self.institution, decided.kept, self.run_info.token)

    def _insert_new(self, inserts: list[dict[str, Any]], planned: Mapping[str, Planned]) -> None:
        """Insert the held-back rows new to the ledger. One whose 流水号 another upload (of another
        transaction: the lock keeps uploads of one apart) inserted since this chunk's lookup is a source
        issue, as if the lookup had seen it; the chunk's other rows go on."""
        taken = self.ledger.add_planned(inserts)
        if not taken:
            return
        for row in inserts:
            serial = row["serial_no"]
            if serial not in taken:
                continue
            if row["held_back"]:  # counted as held back and rejected while planning: it is neither
                self._uncount_held_back(serial)
            self._inserted_elsewhere(planned[serial], taken[serial])
        self.issues.flush()

    def _taken_meanwhile(self, plan: Planned, entry: LedgerEntry) -> None:
        """A row to send that another upload inserted before this one wrote it: a source issue, unless that
        upload was of this transaction (possible only once a lock was lost): the row is its to send."""
        if entry.transaction_code == self.txn.code:
            log.warning(
                "%s 流水号 %s was written by another upload of %s meanwhile (a lost lock?); left to it",
                self.txn.code,
                plan.serial,
                self.txn.code,
            )
            return
        self._inserted_elsewhere(plan, entry)
        self.issues.flush()

    def _inserted_elsewhere(self, plan: Planned, entry: LedgerEntry) -> None:
        log.warning("%s 流水号 %s was inserted by another upload meanwhile", self.txn.code, plan.serial)
        self._used_elsewhere(plan, entry)

    def _uncount_held_back(self, serial: str) -> None:
        res = self.result
        res.held_back -= 1
        res.states[LedgerState.REJECTED] -= 1
        res.states += Counter()  # drops a count that fell to zero
        res.rejects[:] = [r for r in res.rejects if r.get("serial_no") != serial]

    # -- source issues ------------------------------------------------------------------------------------
    def _unkeyable(self, wire: Mapping[str, str | None]) -> None:
        self.result.missing_serial += 1
        self.issues.unkeyable(wire, self.result.rows_read, self.profile.category("field_invalid"))

    def _already_accepted(self, plan: Planned, prior: LedgerEntry) -> None:
        res = self.result
        res.already_accepted += 1
        res.states[prior.state] += 1
        if prior.payload_hash == plan.hash:
            return
        res.changed_after_accept += 1
        log.warning(
            "%s 流水号 %s changed at the source after it was accepted; the centre keeps the "
            "accepted version (send a correction under a new 流水号)",
            self.txn.code,
            plan.serial,
        )
        self.issues.changed_after_accept(plan.wire, plan.row, plan.serial)

    def _used_elsewhere(self, plan: Planned, prior: LedgerEntry) -> None:
        self.issues.used_elsewhere(
            plan.wire, plan.row, plan.serial, self.profile.category("duplicate"), prior
        )

    def _duplicate_in_source(self, serial: str, wire: Mapping[str, str | None], row: int) -> None:
        self.result.duplicate_in_source += 1
        log.error(
            "%s 流水号 %s appears more than once in the source; only the first row is uploaded",
            self.txn.code,
            serial,
        )
        self.issues.repeated(wire, row, serial, self.profile.category("duplicate"))


def _writable(wire: Mapping[str, str | None]) -> bool:
    """Whether every value of a row can be written as XML (no control character, no lone surrogate)."""
    return not any(v and XML_ILLEGAL_RE.search(v) for v in wire.values())

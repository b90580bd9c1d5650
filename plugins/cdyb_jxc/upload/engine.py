"""The upload engine shared by the operators and the CLI (no Airflow).

Source rows arrive in chunks; each chunk is checked against the ledger, rows that would certainly fail are
held back, the rest go out in batches of at most the profile's limit. Every row ends in a ledger state:
ACCEPTED, ACCEPTED_RECONCILED, REJECTED (with category and detail), IN_DOUBT or DUPLICATE_CONFLICT.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from cdyb_jxc.exceptions import InDoubtError
from cdyb_jxc.ledger import (
    ACCEPTED,
    ACCEPTED_RECONCILED,
    DUPLICATE_CONFLICT,
    IN_DOUBT,
    PENDING,
    REJECTED,
    Ledger,
    LedgerEntry,
)
from cdyb_jxc.ledger.lock import DEFAULT_WAIT_SECONDS, UploadLock
from cdyb_jxc.ledger.schema import SERIAL_MAX
from cdyb_jxc.ledger.store import utcnow
from cdyb_jxc.safety.textcap import unstorable
from cdyb_jxc.upload.result import RunInfo, UploadResult, business_date_of, payload_hash
from cdyb_jxc.upload.sender import DOUBT_STATES, BatchSending, Planned, Sender
from cdyb_jxc.upload.source_issues import SourceIssues
from cdyb_jxc.wire.profile import Profile
from cdyb_jxc.wire.rules import XML_ILLEGAL_RE, MappingEntry, RowError, precheck_row
from cdyb_jxc.wire.values import row_to_wire

log = logging.getLogger(__name__)

# Rejections that can clear without the row changing (the 对码 or the original outbound may arrive later).
RESEND_UNCHANGED = frozenset({"unmapped", "mapping_mismatch", "original_missing"})
# ... but at most this often, so re-running a day does not send them again right away.
RESEND_INTERVAL = timedelta(hours=6)


class Uploader(BatchSending):
    """Uploads one transaction's rows for one institution through ``sender`` and records everything.

    :param profile: the interface profile
    :param txn_key: ``init``, ``inbound``, ``outbound`` or ``stock``
    :param institution_code: 定点机构编码
    :param sender: object with ``send(txn_key, wire_rows)`` returning an exchange
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
    ) -> None:
        self.profile = profile
        self.txn = profile.transaction(txn_key)
        self.txn_key = txn_key
        self.institution = institution_code
        self.sender = sender
        self.ledger = ledger
        self.batch_limit = min(batch_limit or profile.batch_limit, profile.batch_limit)
        self.registry = registry
        self.business_date = business_date
        self.run_info = run or RunInfo()
        self.resend_attempts = resend_attempts
        self.backoff = backoff
        self.sleep = sleep
        self.progress = progress
        self.resend_rejected_after = resend_rejected_after
        self.lock_wait = lock_wait
        self.left_in_doubt = 0
        self.lock: UploadLock | None = None
        self.offset = int(profile.service["timezone_offset_hours"])
        self.result = UploadResult(transaction=txn_key)
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

    # -- public -----------------------------------------------------------------------------------------
    def run(self, chunks: Iterable[Sequence[Mapping[str, Any]]]) -> UploadResult:
        """Upload every chunk, holding the ledger's lock for this institution and transaction.

        Raises after recording: :class:`TransportError`/:class:`InDoubtError` (retry later),
        :class:`CallRejectedError` (do not retry), :class:`UploadBusyError` (another upload of the same rows
        is running; retry later). Source rows that cannot be sent (no 流水号, repeated, …) do not stop the
        run: they are recorded as source issues and counted."""
        started = time.perf_counter()
        with UploadLock(self.ledger, self.institution, self.txn.code, wait_seconds=self.lock_wait) as lock:
            self.lock = lock
            # under the lock, a batch still open belongs to a run that died before recording its reply
            abandoned = self.ledger.abandon_open_batches(self.institution, self.txn.code, self.run_info.token)
            if abandoned:
                log.warning(
                    "%s: %d request(s) of an earlier run never recorded a reply; their rows are resent and "
                    "reconciled",
                    self.txn.code,
                    abandoned,
                )
            try:
                for chunk in chunks:
                    self._chunk(chunk)
                self.issues.settle()
            finally:
                self.issues.flush()
                self.result.seconds = time.perf_counter() - started
        if self.left_in_doubt:
            raise InDoubtError(
                f"{self.txn.code}: {self.left_in_doubt} rows are still IN_DOUBT after replies that contradict"
                " themselves (every other row was recorded); they go out again on the next try"
            )
        if self.result.source_issues:
            log.warning(
                "%s: %d source row(s) were not sent and are listed as source issues (reject report, monitor)",
                self.txn.code,
                self.result.source_issues,
            )
        return self.result

    # -- planning ---------------------------------------------------------------------------------------
    def _chunk(self, chunk: Sequence[Mapping[str, Any]]) -> None:
        res = self.result
        planned: dict[str, Planned] = {}
        for row in chunk:
            res.rows_read += 1
            wire = row_to_wire(self.txn, row, self.offset)
            serial = wire.get("serial_no")
            if not serial or len(serial) > SERIAL_MAX or unstorable(serial):
                res.missing_serial += 1
                spec = self.txn.by_name["serial_no"]
                self.issues.add(
                    wire=wire,
                    source_row=res.rows_read,
                    serial=serial[:40] + "…" if serial and len(serial) > 40 else (serial or None),
                    unique_key=False,
                    category=self.profile.category("field_invalid"),
                    field="serial_no",
                    detail=f"源数据第{res.rows_read}行: {_unkeyable(spec.display, serial)}",
                )
                continue
            if serial in planned:
                self._duplicate_in_source(serial, wire, res.rows_read)
                continue
            planned[serial] = Planned(
                serial,
                wire,
                payload_hash(wire),
                business_date_of(self.txn, wire, self.business_date),
                None,
                res.rows_read,
            )
        self.issues.flush()
        if not planned:
            return
        known = self.ledger.lookup(self.institution, list(planned))
        to_send: list[Planned] = []
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        now = utcnow()
        kept: list[dict[str, Any]] = []
        for serial, plan in planned.items():
            plan.prior = known.get(serial)
            decision = self._decide(plan)
            if decision == "skip":
                continue
            if decision == "keep":
                # stamped with this run, so a repeat in a later chunk is seen as repeated in the source
                kept.append({"serial_no": serial, "run_token": self.run_info.token})
                continue
            error = precheck_row(self.profile, self.txn, plan.wire, self.registry)
            base = {
                "payload_hash": plan.hash,
                "business_date": plan.business_date,
                "mapping_serial_no": plan.wire.get("mapping_serial_no"),
                "item_name": plan.wire.get("hospital_item_name"),
                "run_token": self.run_info.token,
                "dag_id": self.run_info.dag_id,
                "run_id": self.run_info.run_id,
                "updated_at": now,
            }
            values, send = self._planned_values(plan, error, base)
            if send:
                to_send.append(plan)
            if plan.prior is None:
                inserts.append(
                    {
                        "institution_code": self.institution,
                        "serial_no": serial,
                        "transaction_code": self.txn.code,
                        "first_seen_at": now,
                        "attempts": 0,
                        **values,
                    }
                )
            else:
                updates.append({"serial_no": serial, **values})
        self.issues.resolved(list(planned))
        self.issues.flush()
        self._insert_new(inserts, planned, to_send)
        self._update_grouped(updates)
        self.ledger.update_rows(self.institution, kept)
        for start in range(0, len(to_send), self.batch_limit):
            self._send_batch(to_send[start : start + self.batch_limit])

    def _planned_values(
        self, plan: Planned, error: RowError | None, base: dict[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        """The ledger values of a row to send or hold back, and whether it goes out."""
        in_doubt = plan.prior is not None and plan.prior.state in DOUBT_STATES
        if error is None or (in_doubt and _writable(plan.wire)):
            # a row sent before in doubt goes again despite its error: a duplicate answer then reconciles it
            state = plan.prior.state if in_doubt and plan.prior else PENDING
            return {
                **base,
                "state": state,
                "category": None,
                "field": None,
                "detail": None,
                "held_back": 0,
            }, True
        category = self.profile.category(error.category_key)
        if in_doubt:
            # it can no longer be written as XML, yet the centre may hold the version sent before: REJECTED
            # would turn that version's later duplicate answer into a false conflict
            self.result.states[IN_DOUBT] += 1
            detail = (
                f"在途记录的源数据现已无法发送({error.detail})；"
                "中心可能已保存此前发送的版本，请修正源数据后重传"
            )
            return {
                **base,
                "state": IN_DOUBT,
                "category": category,
                "field": error.field,
                "detail": detail,
                "held_back": 0,
            }, False
        self.result.held_back += 1
        self._count_reject(plan.serial, plan, category, error.field, error.detail)
        return {
            **base,
            "state": REJECTED,
            "category": category,
            "field": error.field,
            "detail": error.detail,
            "held_back": 1,
        }, False

    def _decide(self, plan: Planned) -> str:
        """``send``; ``keep`` (the ledger's answer stands: counted, not sent); ``skip`` (a source issue)."""
        prior, res = plan.prior, self.result
        if prior is None:
            return "send"
        if prior.transaction_code and prior.transaction_code != self.txn.code:
            self._used_elsewhere(plan, prior)
            return "skip"
        if prior.run_token == self.run_info.token:
            self._duplicate_in_source(plan.serial, plan.wire, plan.row)
            return "skip"
        if prior.state in (ACCEPTED, ACCEPTED_RECONCILED):
            res.already_accepted += 1
            res.states[prior.state] += 1
            if prior.payload_hash != plan.hash:
                res.changed_after_accept += 1
                log.warning(
                    "%s 流水号 %s changed at the source after it was accepted; the centre keeps the "
                    "accepted version (send a correction under a new 流水号)",
                    self.txn.code,
                    plan.serial,
                )
                self.issues.add(
                    wire=plan.wire,
                    source_row=plan.row,
                    serial=plan.serial,
                    category="接收后源数据变更",
                    field=None,
                    detail="该流水号已被医保中心接收，源数据随后被修改；中心保留已接收的版本，"
                    "更正请以新流水号上传(盘盈、盘损、退药等)",
                )
            return "keep"
        if prior.state == DUPLICATE_CONFLICT:
            res.states[DUPLICATE_CONFLICT] += 1
            return "keep"
        if prior.state == REJECTED and prior.payload_hash == plan.hash and not prior.held_back:
            key = next((k for k, v in self.profile.categories.items() if v == prior.category), None)
            recent = (
                prior.last_sent_at is not None and utcnow() - prior.last_sent_at < self.resend_rejected_after
            )
            if key not in RESEND_UNCHANGED or recent:
                res.states[REJECTED] += 1
                return "keep"
        return "send"

    def _used_elsewhere(self, plan: Planned, prior: LedgerEntry) -> None:
        # SPEC: a 流水号 is unique per institution across all four transactions
        self.issues.add(
            wire=plan.wire,
            source_row=plan.row,
            serial=plan.serial,
            category=self.profile.category("duplicate"),
            field="serial_no",
            detail=f"流水号已用于{prior.transaction_code}的记录(状态{prior.state})，本条未上传；"
            "请为本条使用新的流水号",
        )

    def _insert_new(
        self, inserts: list[dict[str, Any]], planned: Mapping[str, Planned], to_send: list[Planned]
    ) -> None:
        """Insert the rows new to the ledger. One whose 流水号 another upload (of another transaction: the
        lock keeps uploads of one apart) inserted since this chunk's lookup is a source issue, as if the
        lookup had seen it; the chunk's other rows go on."""
        taken = self.ledger.insert_rows(inserts)
        if not taken:
            return
        to_send[:] = [p for p in to_send if p.serial not in taken]
        res = self.result
        for row in inserts:
            serial = row["serial_no"]
            if serial not in taken:
                continue
            if row["held_back"]:  # counted as held back and rejected while planning: it is neither
                res.held_back -= 1
                res.states[REJECTED] -= 1
                res.states += Counter()  # drops a count that fell to zero
                res.rejects[:] = [r for r in res.rejects if r.get("serial_no") != serial]
            log.warning("%s 流水号 %s was inserted by another upload meanwhile", self.txn.code, serial)
            self._used_elsewhere(planned[serial], taken[serial])
        self.issues.flush()

    def _duplicate_in_source(self, serial: str, wire: Mapping[str, str | None], row: int) -> None:
        self.result.duplicate_in_source += 1
        log.error(
            "%s 流水号 %s appears more than once in the source; only the first row is uploaded",
            self.txn.code,
            serial,
        )
        self.issues.add(
            wire=wire,
            source_row=row,
            serial=serial,
            unique_key=False,
            category=self.profile.category("duplicate"),
            field="serial_no",
            detail=f"流水号在数据源中重复(源数据第{row}行)，仅上传第一条",
        )


def _unkeyable(display: str, serial: str | None) -> str:
    """Why ``serial`` cannot key a ledger row (empty, too long, or holding a character no ledger database
    can store: NUL, a lone surrogate)."""
    if not serial:
        return f"{display}不能为空"
    if len(serial) > SERIAL_MAX:
        return f"{display}长度{len(serial)}，无法记录"
    bad = unstorable(serial) or "\x00"
    return f"{display}含数据库无法存储的字符U+{ord(bad):04X}，无法记录"


def _writable(wire: Mapping[str, str | None]) -> bool:
    """Whether every value of a row can be written as XML (no control character, no lone surrogate)."""
    return not any(v and XML_ILLEGAL_RE.search(v) for v in wire.values())

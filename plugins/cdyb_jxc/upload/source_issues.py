"""Source rows an upload cannot key by 流水号 or must not send, kept visible in the ledger (no Airflow).

A row without a usable 流水号, a 流水号 repeated in the source, a 流水号 already used by another transaction's
row, or a row changed at the source after the centre accepted it: none of these can go (again) to the
centre, and none may vanish. Each becomes an entry of the ledger's ``source_issue`` table, which the reject
report and the upload monitor read, and a line of the run's reject sample.

An issue is keyed by its 流水号 when that identifies it, else by its source row number — and a row number only
means something within one source: two files of the same day each with a bad second row are two issues. So
a row-numbered key names the source too (``#<row>@<source tag>``, a short digest of :func:`file_source` or
:func:`task_source`); the table and its key are unchanged, so existing ledgers need no migration.
"""

from __future__ import annotations

import codecs
import hashlib
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cdyb_jxc.ledger import Ledger, LedgerEntry
from cdyb_jxc.ledger.batch_store import utcnow
from cdyb_jxc.ledger.schema import SERIAL_MAX
from cdyb_jxc.safety.textcap import unstorable
from cdyb_jxc.upload.result import RunInfo, UploadResult, business_date_of
from cdyb_jxc.wire.profile import TransactionSpec

log = logging.getLogger(__name__)

ROW_KEY_MAX = 200
SOURCE_TAG_LENGTH = 12  # hex digits of the source digest in a row key (row_key holds 250 characters)


def file_source(
    path: str | os.PathLike[str], *, sheet: str | None = None, encoding: str | None = None
) -> str:
    """The identity of a source file: a digest of its content and of how it is read (the sheet of a
    workbook, the encoding of a CSV). The same rows re-uploaded (under any name) replace their issues; a file
    rewritten in place with other rows of the same day, or another sheet of the same workbook, does not.

    :param path: the file
    :param sheet: the workbook's sheet as given (``None``: the only sheet with data)
    :param encoding: the CSV's encoding as given (``None``: UTF-8)
    """
    digest = hashlib.sha256()
    codec = _codec(encoding)
    if sheet is not None or codec is not None:  # the default reading keeps the identity of earlier runs
        # how the bytes are read is part of what the rows are; repr() keeps ("a", None) from (None, "a")
        digest.update(f"sheet={sheet!r}\0encoding={codec!r}\0".encode())
    # a pipe (/dev/stdin) must not be read twice; a missing file is reported later
    if not os.path.isfile(path):
        return f"file:{os.path.realpath(path)}"
    try:
        with open(path, "rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
    except OSError:  # the reader reports the unreadable file
        return f"file:{os.path.realpath(path)}"
    return f"file:sha256:{digest.hexdigest()}"


def _codec(encoding: str | None) -> str | None:
    """The codec's canonical name (``GBK`` and ``gbk`` read the same rows); ``None`` for UTF-8."""
    if encoding is None:
        return None
    try:
        name = codecs.lookup(encoding).name
    except LookupError:  # the reader reports the unknown encoding
        return encoding
    return None if name in ("utf-8", "utf-8-sig") else name


def task_source(dag_id: str, task_id: str, map_index: int | None, source_conn_id: str | None) -> str:
    """The identity of an operator's query: the task (every try and run of it reads the same query,
    rendered for its day) and the connection it runs on.

    :param dag_id: the DAG
    :param task_id: the task
    :param map_index: the mapped task's index (``-1`` or ``None`` when not mapped)
    :param source_conn_id: the source connection
    """
    return f"task:{dag_id}.{task_id}[{map_index if map_index is not None else -1}]@{source_conn_id}"


class SourceIssues:
    """Collects the issues of one upload run and writes them to the ledger.

    :param ledger: the ledger
    :param institution_code: 定点机构编码
    :param txn: the transaction being uploaded
    :param run: who is uploading
    :param result: the run's result (counts and reject sample)
    :param fallback_date: business day for rows without a usable date
    :param complete_days: business days the source holds in full (the DAG's SQL reads whole days): issues
        of those days that this run does not see again are fixed and dropped. Issues keyed by a 流水号 are
        dropped whenever this run sees that 流水号 again without the issue.
    :param source: the identity of what this run reads (:func:`file_source`, :func:`task_source`); issues
        keyed by a source row number name it. ``None``: unnamed (keys ``#<row>`` as before sources were named)
    """

    def __init__(
        self,
        *,
        ledger: Ledger,
        institution_code: str,
        txn: TransactionSpec,
        run: RunInfo,
        result: UploadResult,
        fallback_date: str | None,
        complete_days: Sequence[str] = (),
        source: str | None = None,
    ) -> None:
        self.ledger = ledger
        self.source_tag = (
            "@" + hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()[:SOURCE_TAG_LENGTH]
            if source
            else ""
        )
        self.institution = institution_code
        self.txn = txn
        self.run = run
        self.result = result
        self.fallback_date = fallback_date
        self.complete_days = tuple(complete_days)
        self._pending: list[dict[str, Any]] = []
        self._open: bool | None = None  # whether the ledger holds issues of this transaction (asked once)
        self._raised: set[str] = set()  # 流水号 this run raised an issue for (kept across flushes)

    def add(
        self,
        *,
        wire: Mapping[str, str | None],
        source_row: int,
        category: str,
        field: str | None,
        detail: str,
        serial: str | None = None,
        unique_key: bool = True,
    ) -> None:
        """Record one issue.

        :param serial: the row's 流水号 as it should be shown (``None`` when it has none)
        :param unique_key: the 流水号 identifies the issue; ``False`` keys it by source and source row number
            too (repeats of one 流水号 in the source)
        """
        self.result.source_issues += 1
        if serial:
            self._raised.add(serial)
        key = (serial or "")[:ROW_KEY_MAX]
        if not serial or not unique_key:
            key = f"{key}#{source_row}{self.source_tag}"
        self._pending.append(self._record(wire, source_row, key, serial, category, field, detail))
        self.result.reject(
            serial_no=serial,
            row=source_row,
            item=wire.get("mapping_serial_no"),
            item_name=wire.get("hospital_item_name"),
            category=category,
            field=field,
            detail=detail,
        )

    def _record(
        self,
        wire: Mapping[str, str | None],
        source_row: int,
        key: str,
        serial: str | None,
        category: str,
        field: str | None,
        detail: str,
    ) -> dict[str, Any]:
        """One ``source_issue`` row of this run."""
        return {
            "institution_code": self.institution,
            "transaction_code": self.txn.code,
            "business_date": business_date_of(self.txn, wire, self.fallback_date),
            "row_key": key,
            "serial_no": serial,
            "source_row": source_row,
            "mapping_serial_no": wire.get("mapping_serial_no"),
            "item_name": wire.get("hospital_item_name"),
            "category": category,
            "field": field,
            "detail": detail,
            "run_token": self.run.token,
            "dag_id": self.run.dag_id,
            "run_id": self.run.run_id,
            "seen_at": utcnow(),
        }

    # -- the kinds of issue -------------------------------------------------------------------------------
    def unkeyable(self, wire: Mapping[str, str | None], row: int, category: str) -> None:
        """A row whose 流水号 is empty, too long, or holds a character no ledger database can store."""
        serial = wire.get("serial_no")
        self.add(
            wire=wire,
            source_row=row,
            serial=serial[:40] + "…" if serial and len(serial) > 40 else (serial or None),
            unique_key=False,
            category=category,
            field="serial_no",
            detail=unkeyable_detail(self.txn, serial, row),
        )

    def repeated(self, wire: Mapping[str, str | None], row: int, serial: str, category: str) -> None:
        """A 流水号 repeated in the source: only its first row goes out."""
        self.add(
            wire=wire,
            source_row=row,
            serial=serial,
            unique_key=False,
            category=category,
            field="serial_no",
            detail=repeated_detail(row),
        )

    def used_elsewhere(
        self, wire: Mapping[str, str | None], row: int, serial: str, category: str, other: LedgerEntry
    ) -> None:
        """A 流水号 the ledger holds for another transaction's row (``other``): SPEC makes a 流水号 unique per
        institution across all four transactions."""
        self.add(
            wire=wire,
            source_row=row,
            serial=serial,
            category=category,
            field="serial_no",
            detail=f"流水号已用于{other.transaction_code}的记录(状态{other.state})，本条未上传；"
            "请为本条使用新的流水号",
        )

    def changed_after_accept(self, wire: Mapping[str, str | None], row: int, serial: str) -> None:
        """A row changed at the source after the centre accepted it: the centre keeps the accepted one."""
        self.add(
            wire=wire,
            source_row=row,
            serial=serial,
            category="接收后源数据变更",
            field=None,
            detail="该流水号已被医保中心接收，源数据随后被修改；中心保留已接收的版本，"
            "更正请以新流水号上传(盘盈、盘损、退药等)",
        )

    def resolved(self, serials: Iterable[str]) -> None:
        """These 流水号 were seen by this run; drop earlier issues of them (keyed by the 流水号, or a repeat
        of it keyed by row and source) that this run did not raise again (the row was restored, the
        repeat removed, or its conflict is gone)."""
        if self._open is None:
            self._open = self.ledger.has_source_issues(self.institution, self.txn.code)
        if not self._open:
            return
        # by 流水号, not by key: a repeat's key also names its row and source (``serial#row@tag``)
        clean = [s for s in serials if s not in self._raised]
        self.ledger.drop_resolved_issues(self.institution, self.txn.code, clean, self.run.token)

    def flush(self) -> None:
        """Write the collected issues (a later entry for the same key replaces an earlier one)."""
        if self._pending:
            unique = {(x["business_date"], x["row_key"]): x for x in self._pending}
            self.ledger.record_source_issues(list(unique.values()))
            self._pending.clear()

    def settle(self) -> None:
        """After a complete pass over the source: drop earlier issues of the complete days that this run
        did not see again (they were fixed at the source)."""
        self.flush()
        dropped = self.ledger.clear_source_issues(
            self.institution, self.txn.code, self.complete_days, self.run.token
        )
        if dropped:
            log.info("%s: %d source issue(s) of earlier runs are fixed at the source", self.txn.code, dropped)


def unkeyable_detail(txn: TransactionSpec, serial: str | None, row: int) -> str:
    """The source issue's text for data row ``row``, whose 流水号 cannot key a ledger row."""
    return f"源数据第{row}行: {_unkeyable(txn.by_name['serial_no'].display, serial)}"


def repeated_detail(row: int) -> str:
    """The source issue's text for data row ``row``, which repeats an earlier row's 流水号."""
    return f"流水号在数据源中重复(源数据第{row}行)，仅上传第一条"


def _unkeyable(display: str, serial: str | None) -> str:
    """Why ``serial`` cannot key a ledger row (empty, too long, or holding a character no ledger database
    can store: NUL, a lone surrogate)."""
    if not serial:
        return f"{display}不能为空"
    if len(serial) > SERIAL_MAX:
        return f"{display}长度{len(serial)}，无法记录"
    bad = unstorable(serial) or "\x00"
    return f"{display}含数据库无法存储的字符U+{ord(bad):04X}，无法记录"

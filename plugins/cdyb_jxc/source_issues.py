"""Source rows an upload cannot key by 流水号 or must not send, kept visible in the ledger (no Airflow).

A row without a usable 流水号, a 流水号 repeated in the source, a 流水号 already used by another transaction's
row, or a row changed at the source after the centre accepted it: none of these can go (again) to the
centre, and none may vanish. Each becomes an entry of the ledger's ``source_issue`` table, which the reject
report and the upload monitor read, and a line of the run's reject sample.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from cdyb_jxc.ledger import Ledger
from cdyb_jxc.ledger.store import utcnow
from cdyb_jxc.profile import TransactionSpec
from cdyb_jxc.upload_result import RunInfo, UploadResult, business_date_of

log = logging.getLogger(__name__)

ROW_KEY_MAX = 200


class SourceIssues:
    """Collects the issues of one upload run and writes them to the ledger.

    :param ledger: the ledger
    :param institution_code: 定点机构编码
    :param txn: the transaction being uploaded
    :param run: who is uploading
    :param result: the run's result (counts and reject sample)
    :param fallback_date: business day for rows without a usable date
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
    ) -> None:
        self.ledger = ledger
        self.institution = institution_code
        self.txn = txn
        self.run = run
        self.result = result
        self.fallback_date = fallback_date
        self.dates_seen: set[str] = set()
        self._pending: list[dict[str, Any]] = []

    def business_date(self, wire: Mapping[str, str | None]) -> str:
        """The row's business day, remembered as seen by this run."""
        day = business_date_of(self.txn, wire, self.fallback_date)
        self.dates_seen.add(day)
        return day

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
        :param unique_key: the 流水号 identifies the issue; ``False`` keys it by source row number too
            (repeats of one 流水号 in the source)
        """
        self.result.source_issues += 1
        key = (serial or "")[:ROW_KEY_MAX]
        if not serial or not unique_key:
            key = f"{key}#{source_row}"
        self._pending.append(
            {
                "institution_code": self.institution,
                "transaction_code": self.txn.code,
                "business_date": self.business_date(wire),
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
        )
        self.result.reject(
            serial_no=serial,
            row=source_row,
            item=wire.get("mapping_serial_no"),
            item_name=wire.get("hospital_item_name"),
            category=category,
            field=field,
            detail=detail,
        )

    def flush(self) -> None:
        """Write the collected issues (a later entry for the same key replaces an earlier one)."""
        if self._pending:
            unique = {(x["business_date"], x["row_key"]): x for x in self._pending}
            self.ledger.record_source_issues(list(unique.values()))
            self._pending.clear()

    def settle(self) -> None:
        """After a complete pass over the source: drop earlier issues of the days seen that this run did
        not see again (they were fixed at the source)."""
        self.flush()
        dropped = self.ledger.clear_source_issues(
            self.institution, self.txn.code, self.dates_seen, self.run.token
        )
        if dropped:
            log.info("%s: %d source issue(s) of earlier runs are fixed at the source", self.txn.code, dropped)

"""Results and helpers of an upload run (no Airflow)."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from cdyb_jxc.ledger.states import ATTENTION_STATES, LedgerState
from cdyb_jxc.safety.textcap import TEXT_MAX, fit
from cdyb_jxc.wire.profile import TransactionSpec

REJECT_SAMPLE = 20


@dataclass
class RunInfo:
    """Who is uploading: stamped on ledger rows and audit batches."""

    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    dag_id: str | None = None
    run_id: str | None = None
    task_id: str | None = None


@dataclass
class UploadResult:
    """What one run did; JSON-serialisable through :meth:`as_dict` (for XCom)."""

    transaction: str
    states: Counter[LedgerState] = field(default_factory=Counter)  # rows per final state
    rows_read: int = 0
    rows_sent: int = 0
    batches: int = 0
    held_back: int = 0
    already_accepted: int = 0
    changed_after_accept: int = 0
    duplicate_in_source: int = 0
    missing_serial: int = 0
    # source rows kept as ledger source issues (no 流水号, repeated, used by another transaction, changed)
    source_issues: int = 0
    rejects: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    send_seconds: float = 0.0

    def reject(self, **info: Any) -> None:
        """Keep one rejected row for the sample; texts fitted as in the ledger (they travel as XCom JSON
        and are printed)."""
        if len(self.rejects) < REJECT_SAMPLE:
            self.rejects.append({k: fit(v, TEXT_MAX) if isinstance(v, str) else v for k, v in info.items()})

    def count_reject(
        self,
        state: LedgerState,
        serial: str,
        wire: Mapping[str, str | None],
        category: str | None,
        field: str | None,
        detail: str,
    ) -> None:
        """Count one row refused (REJECTED, held back or by the centre, or DUPLICATE_CONFLICT) and keep it
        for the sample.

        :param wire: the row's wire values (item shown in the sample)
        """
        self.states[state] += 1
        self.reject(
            serial_no=serial,
            item=wire.get("mapping_serial_no"),
            item_name=wire.get("hospital_item_name"),
            category=category,
            field=field,
            detail=detail,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "transaction": self.transaction,
            "states": {str(state): n for state, n in self.states.items()},  # plain text keys for XCom
            "rows_read": self.rows_read,
            "rows_sent": self.rows_sent,
            "batches": self.batches,
            "held_back": self.held_back,
            "already_accepted": self.already_accepted,
            "changed_after_accept": self.changed_after_accept,
            "duplicate_in_source": self.duplicate_in_source,
            "missing_serial": self.missing_serial,
            "source_issues": self.source_issues,
            "rejects_sample": self.rejects,
            "seconds": round(self.seconds, 3),
            "send_seconds": round(self.send_seconds, 3),
            "rows_per_second": round(self.rows_read / self.seconds, 1) if self.seconds else None,
        }

    @property
    def rejected(self) -> int:
        return sum(self.states.get(state, 0) for state in ATTENTION_STATES)


def payload_hash(wire: Mapping[str, str | None]) -> str:
    canonical = json.dumps({k: v for k, v in wire.items() if v}, sort_keys=True, ensure_ascii=False)
    # surrogatepass: a lone surrogate from a broken source still hashes (the row is then refused by R6)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def business_date_of(txn: TransactionSpec, wire: Mapping[str, str | None], fallback: str | None) -> str:
    """The business day of a row: the date of its first required D/DT field (event_time, stock_date)."""
    for spec in txn.fields:
        if spec.type in ("D", "DT") and spec.required == "Y":
            value = wire.get(spec.name) or ""
            try:
                return date.fromisoformat(value[:10]).isoformat()
            except ValueError:
                break
    return fallback or ""


def deadline_utc(business_date: str, offset_hours: int) -> datetime | None:
    """End of D+1 in the centre's zone (T+1 rule), as naive UTC."""
    try:
        day = date.fromisoformat(business_date)
    except ValueError:
        return None
    local_end = datetime.combine(day + timedelta(days=2), datetime.min.time())
    return local_end - timedelta(hours=offset_hours)


def field_of(txn: TransactionSpec, detail: str) -> str | None:
    """The logical field a server detail text names (``…(akc226)…``), if any."""
    for spec in txn.fields:
        if f"({spec.tag})" in detail:
            return spec.name
    return None

"""Results and helpers of an upload run (no Airflow)."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import lru_cache
from itertools import compress
from json.encoder import encode_basestring as _quote  # the C function json.dumps quotes text with
from operator import add, itemgetter
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
    """SHA-256 of the row's non-empty values as JSON with sorted keys (``json.dumps(..., sort_keys=True,
    ensure_ascii=False)``), byte for byte as every earlier version: ledgers store it and compare it with later
    runs, so a changed digest would make every accepted row look changed at the source.

    Written here without :mod:`json`'s encoder set-up for each row: the keys' sorted order and their JSON
    text are kept per key layout (one per transaction), each value is quoted by the encoder's own C function.
    """
    layout = _layout(tuple(wire))
    if layout is None:
        return _json_hash(wire)
    values, prefixes = layout[0](wire), layout[1]
    try:
        body = ", ".join(map(add, compress(prefixes, values), map(_quote, compress(values, values))))
    except TypeError:  # a value that is not text: the JSON encoder decides
        return _json_hash(wire)
    # surrogatepass: a lone surrogate from a broken source still hashes (the row is then refused by R6)
    return hashlib.sha256(("{" + body + "}").encode("utf-8", "surrogatepass")).hexdigest()


def _json_hash(wire: Mapping[str, Any]) -> str:
    """:func:`payload_hash` through :mod:`json` itself (the reference, and any mapping the fast path does
    not take)."""
    canonical = json.dumps({k: v for k, v in wire.items() if v}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


_LAYOUTS: dict[tuple[str, ...], tuple[Callable[[Mapping[str, Any]], tuple[Any, ...]], tuple[str, ...]]] = {}
_LAYOUTS_MAX = 64


def _layout(
    keys: tuple[str, ...],
) -> tuple[Callable[[Mapping[str, Any]], tuple[Any, ...]], tuple[str, ...]] | None:
    """(values in sorted key order, each key's ``"key": ``) for rows with these keys; ``None`` for fewer
    than two keys or a key that is not text."""
    layout = _LAYOUTS.get(keys)
    if layout is None:
        if len(keys) < 2 or not all(type(k) is str for k in keys):
            return None
        ordered = sorted(keys)
        layout = (itemgetter(*ordered), tuple(_quote(k) + ": " for k in ordered))
        if len(_LAYOUTS) < _LAYOUTS_MAX:
            _LAYOUTS[keys] = layout
    return layout


@lru_cache(maxsize=4096)
def _iso_day(text: str) -> str | None:
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError:
        return None


def business_date_of(txn: TransactionSpec, wire: Mapping[str, str | None], fallback: str | None) -> str:
    """The business day of a row: the date of its first required D/DT field (event_time, stock_date)."""
    name = _day_field(txn)
    if name is not None:
        day = _iso_day((wire.get(name) or "")[:10])
        if day is not None:
            return day
    return fallback or ""


_DAY_FIELDS: dict[int, tuple[TransactionSpec, str | None]] = {}


def _day_field(txn: TransactionSpec) -> str | None:
    """The first required D/DT field of ``txn`` (looked up once per transaction)."""
    cached = _DAY_FIELDS.get(id(txn))
    if cached is None or cached[0] is not txn:
        name = next((s.name for s in txn.fields if s.type in ("D", "DT") and s.required == "Y"), None)
        cached = _DAY_FIELDS[id(txn)] = (txn, name)
    return cached[1]


@lru_cache(maxsize=1024)  # a batch's rows share a few days: every answered row asks
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

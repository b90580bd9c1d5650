"""The 进销存平衡 audit: does each item's stock on day D equal D−1's plus what came in minus what went out?

The bureau audits exactly this; the ledger already holds every row the centre accepted, each with its item
(医院对码流水号), business day and quantity in packages (:func:`packages_of`, recorded when it is planned).
Per business day and item::

    opening    = the item's JXC004 stock of D−1 summed over lots (its JXC001 initialization when D−1 is
                 the initialization's day)
    inbound    = the day's accepted JXC002 quantities;  outbound = the day's accepted JXC003 quantities
    closing    = the item's JXC004 stock of D
    difference = closing − (opening + inbound − outbound)

Status: ``ok``, ``imbalance``, ``no_opening``, ``no_closing``, or ``off_hospital`` for 院外配送 items (their
inbound is optional, so they are reported, not flagged). One grouped SQL query per run does the sums; Python
only combines the groups (days × items), never the rows. With ``accepted_only=False`` the audit covers every
row the source gave (whatever the centre answered): what the HIS itself says.
"""

from __future__ import annotations

import enum
import math
from collections import defaultdict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path

from sqlalchemy import func, select

from cdyb_jxc.ledger import ACCEPTED_STATES, Ledger
from cdyb_jxc.ledger.schema import upload_row
from cdyb_jxc.wire.profile import TransactionSpec
from cdyb_jxc.wire.rules import MappingEntry

INIT, INBOUND, OUTBOUND, STOCK = "JXC001", "JXC002", "JXC003", "JXC004"
DEFAULT_TOLERANCE = 0.0001
COLUMNS = (
    "business_date",
    "mapping_serial_no",
    "opening",
    "inbound",
    "outbound",
    "closing",
    "difference",
    "status",
)


class BalanceStatus(enum.StrEnum):
    OK = "ok"
    IMBALANCE = "imbalance"
    NO_OPENING = "no_opening"
    NO_CLOSING = "no_closing"
    OFF_HOSPITAL = "off_hospital"


@dataclass(frozen=True)
class BalanceRow:
    """One business day of one item (quantities in packages; ``None``: no row of that kind)."""

    business_date: str
    mapping_serial_no: str
    opening: float | None
    inbound: float
    outbound: float
    closing: float | None
    difference: float | None
    status: BalanceStatus

    def as_row(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in COLUMNS)


def packages_of(txn: TransactionSpec, wire: Mapping[str, str | None]) -> float | None:
    """A row's quantity in packages: its quantity (库存数量 for stock), divided by 包装换算系数 when it is
    拆零 (是否拆零 = 1); ``None`` when the values are not numbers (the row is refused anyway).

    :param txn: the row's transaction
    :param wire: its wire values
    """
    raw = wire.get("stock_quantity" if "stock_quantity" in txn.by_name else "quantity")
    try:
        quantity = Decimal(raw or "")
        if wire.get("split_flag") == "1":
            ratio = Decimal(wire.get("pack_ratio") or "")
            quantity = quantity / ratio if ratio > 0 else Decimal("NaN")
        packages = float(quantity)
    except (InvalidOperation, ArithmeticError, ValueError):
        return None
    # no database should have to store inf (MySQL refuses it): such a row is refused anyway
    return packages if math.isfinite(packages) else None


def audit_balance(
    ledger: Ledger,
    institution_code: str,
    first: str,
    last: str,
    *,
    registry: Mapping[str, MappingEntry] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    accepted_only: bool = True,
) -> Iterator[BalanceRow]:
    """The balance of every item with a row on a business day in ``[first, last]`` (or stock the day
    before), by day then item.

    :param ledger: the ledger
    :param institution_code: 定点机构编码
    :param first: the first business day (``YYYY-MM-DD``)
    :param last: the last business day
    :param registry: the local 对码 copy: its 院外配送 items get ``off_hospital``
    :param tolerance: the largest difference still ``ok``
    :param accepted_only: sum the rows the centre accepted (``False``: every row the source gave)
    """
    sums = _sums(ledger, institution_code, _day(first, -1), last, accepted_only)
    moved: dict[str, set[str]] = defaultdict(set)  # day → items with a row that day
    counted: dict[str, set[str]] = defaultdict(set)  # day → items with stock (or initialization) that day
    for txn, day_, item in sums:
        moved[day_].add(item)
        if txn in (STOCK, INIT):
            counted[day_].add(item)
    day = date.fromisoformat(first)
    while day.isoformat() <= last:
        today, yesterday = day.isoformat(), _day(day.isoformat(), -1)
        for item in sorted(moved[today] | counted[yesterday]):
            yield _row(sums, today, yesterday, item, registry, tolerance)
        day += timedelta(days=1)


def _row(
    sums: Mapping[tuple[str, str, str], float],
    today: str,
    yesterday: str,
    item: str,
    registry: Mapping[str, MappingEntry] | None,
    tolerance: float,
) -> BalanceRow:
    opening = sums.get((STOCK, yesterday, item), sums.get((INIT, yesterday, item)))
    inbound, outbound = sums.get((INBOUND, today, item), 0.0), sums.get((OUTBOUND, today, item), 0.0)
    closing = sums.get((STOCK, today, item))
    difference = None
    if opening is not None and closing is not None:
        difference = round(closing - (opening + inbound - outbound), 6)
    entry = registry.get(item) if registry else None
    if entry is not None and entry.off_hospital_delivery:
        status = BalanceStatus.OFF_HOSPITAL
    elif opening is None:
        status = BalanceStatus.NO_OPENING
    elif closing is None:
        status = BalanceStatus.NO_CLOSING
    else:
        status = BalanceStatus.IMBALANCE if abs(difference or 0.0) > tolerance else BalanceStatus.OK
    return BalanceRow(today, item, opening, inbound, outbound, closing, difference, status)


def _sums(
    ledger: Ledger, institution_code: str, first: str, last: str, accepted_only: bool
) -> dict[tuple[str, str, str], float]:
    """(transaction, business day, item) → the quantity in packages, summed in the database."""
    t = upload_row.c
    query = (
        select(t.transaction_code, t.business_date, t.mapping_serial_no, func.sum(t.quantity_packages))
        .where(
            t.institution_code == institution_code,
            t.business_date >= first,
            t.business_date <= last,
            t.transaction_code.in_((INIT, INBOUND, OUTBOUND, STOCK)),
            t.mapping_serial_no.is_not(None),
            t.quantity_packages.is_not(None),
        )
        .group_by(t.transaction_code, t.business_date, t.mapping_serial_no)
    )
    if accepted_only:
        query = query.where(t.state.in_([str(s) for s in ACCEPTED_STATES]))
    out: dict[tuple[str, str, str], float] = defaultdict(float)
    with ledger.engine.connect() as conn:
        for txn, day, item, total in conn.execute(query):
            out[(txn, day, item)] += float(total)
    return dict(out)


def plain(value: object) -> object:
    """A quantity written plainly (no exponent, at most 6 decimals); ``None`` as an empty cell."""
    if value is None:
        return ""
    if isinstance(value, float):
        text = f"{value:.6f}".rstrip("0").rstrip(".")
        return "0" if text in ("-0", "") else text
    return value


def _day(day: str, delta: int) -> str:
    return (date.fromisoformat(day) + timedelta(days=delta)).isoformat()


@dataclass(frozen=True)
class BalanceReport:
    """A day's balance report: items audited, imbalances (accepted rows; source rows) and its files."""

    items: int
    imbalance: int
    source_imbalance: int
    csv_path: Path
    excel_path: Path


REPORT_HEADER = (*COLUMNS, "source_difference", "source_status")


def write_balance_report(
    ledger: Ledger,
    institution_code: str,
    day: str,
    report_dir: str | Path,
    *,
    registry: Mapping[str, MappingEntry] | None = None,
) -> BalanceReport:
    """Audit ``day`` twice — the rows the centre accepted, and every row the source gave — and write both
    side by side to ``balance_<institution>_<day>.csv`` and ``.xlsx``: an imbalance in both says the HIS
    does not add up, one in the accepted rows only says rows are missing at the centre. The day's counts
    and the items that are not ok also go into the ledger (:meth:`~cdyb_jxc.ledger.Ledger.record_balance`),
    where the monitor reads them."""
    from cdyb_jxc.safety.spreadsheet import write_csv, write_xlsx

    audits = [
        {
            r.mapping_serial_no: r
            for r in audit_balance(ledger, institution_code, day, day, registry=registry, accepted_only=only)
        }
        for only in (True, False)
    ]
    accepted, source = audits
    rows, flagged, imbalance, source_imbalance = [], [], 0, 0
    # every item of either audit: one whose rows were all refused shows in the source's only
    for item in sorted(accepted.keys() | source.keys()):
        row, other = accepted.get(item), source.get(item)
        imbalance += row is not None and row.status is BalanceStatus.IMBALANCE
        source_imbalance += other is not None and other.status is BalanceStatus.IMBALANCE
        mine = (*row.as_row()[:-1], str(row.status)) if row else (day, item, *[None] * 6)  # nothing accepted
        extra = (other.difference, str(other.status)) if other else (None, None)
        rows.append(tuple(plain(v) for v in (*mine, *extra)))
        if _flagged(row) or _flagged(other):
            flagged.append(dict(zip(_ITEM_KEYS, (*mine[1:], *extra), strict=True)))
    folder = Path(report_dir)
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"balance_{institution_code}_{day}"
    csv_path, excel_path = folder / f"{stem}.csv", folder / f"{stem}.xlsx"
    write_csv(csv_path, REPORT_HEADER, rows)  # one day's items (thousands at most), not its rows
    write_xlsx(excel_path, REPORT_HEADER, rows, "balance")
    unchecked = sum(
        r.status in (BalanceStatus.NO_OPENING, BalanceStatus.NO_CLOSING) for r in accepted.values()
    )
    # the monitor's copy: the day's counts and the items that are not ok
    summary = {"items": len(rows), "imbalance": imbalance, "source_imbalance": source_imbalance}
    ledger.record_balance(
        institution_code, day, {**summary, "unchecked": unchecked, "report": str(csv_path)}, flagged
    )
    return BalanceReport(len(rows), imbalance, source_imbalance, csv_path, excel_path)


# the ledger's columns of a flagged item (cdyb_jxc.ledger.balance_store), in the report's order
_ITEM_KEYS = (*COLUMNS[1:], "source_difference", "source_status")


def _flagged(row: BalanceRow | None) -> bool:
    """Whether the monitor lists the item: anything but ok (or 院外配送, reported as such)."""
    return row is not None and row.status not in (BalanceStatus.OK, BalanceStatus.OFF_HOSPITAL)

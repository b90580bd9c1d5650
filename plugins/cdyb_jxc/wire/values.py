"""Conversion of source values (SQL results, CSV cells, DataFrame cells) to wire text.

Absent values (``None``, ``NaN``, ``NaT``, ``pd.NA``, ``""`` and text of whitespace only) become
``None``, for every source: a blank value is never sent as if it were data (a required one is then held
back as empty). Other text is kept exactly, surrounding spaces included (CHAR(n) sources pad the 流水号,
and the ledger keys on it). File sources (CSV, Excel, Parquet) also read the null markers of HIS exports
(``NULL``, ``None``, ``\\N``, ``#N/A``, ``NaN``, …, see :data:`NULL_MARKERS`) as absent, through
:func:`file_text`; SQL sources give real NULLs, so a text ``'NULL'`` from SQL stays text. Numbers are
written plainly (no exponent, no superfluous trailing zeros); dates and times in the profile's formats.
Anything the conversion cannot make sense of is passed through as text, so validation names it as the
row error.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from numbers import Integral, Real
from typing import Any

from cdyb_jxc.wire.profile import FieldSpec, TransactionSpec
from cdyb_jxc.wire.rules import NUMBER_RE

# Null markers of HIS and spreadsheet exports, compared case-insensitively after trimming (file sources only).
NULL_MARKERS = frozenset({"null", "none", "\\n", "nan", "nat", "<na>", "n/a", "#n/a"})
_MARKER_MAX = max(len(m) for m in NULL_MARKERS)


def file_text(value: str) -> str | None:
    """A text cell of a file source: ``None`` for a null marker, else the text unchanged.

    :param value: the cell's text
    """
    if len(value) > _MARKER_MAX and not (value[0].isspace() or value[-1].isspace()):
        return value  # the common case: too long to be a marker, nothing to trim
    return None if value.strip().casefold() in NULL_MARKERS else value


def is_absent(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        # isspace() stops at the first other character: cheap for real data
        return not value or value.isspace()
    if isinstance(value, float):
        return math.isnan(value)
    try:
        # pandas NA / NaT and numpy NaN without importing pandas here
        return bool(value != value)
    except (TypeError, ValueError):
        # pd.NA: ``NA != NA`` is NA itself, whose truth value raises TypeError
        return type(value).__name__ == "NAType"


def _plain_decimal(number: Decimal) -> str:
    text = format(number, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    if text in ("-0", ""):
        text = "0"
    return text


def _number(value: Any) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, Integral):
        return str(int(value))
    if isinstance(value, Decimal):
        return _plain_decimal(value) if value.is_finite() else str(value)
    if isinstance(value, Real):
        as_float = float(value)
        return _plain_decimal(Decimal(repr(as_float))) if math.isfinite(as_float) else repr(as_float)
    text = str(value)
    if NUMBER_RE.fullmatch(text):
        try:
            return _plain_decimal(Decimal(text))
        except InvalidOperation:  # pragma: no cover - regex guarantees a decimal
            return text
    return text


def _to_local(value: datetime, offset_hours: int) -> datetime:
    if value.tzinfo is not None:
        value = value.astimezone(timezone(timedelta(hours=offset_hours))).replace(tzinfo=None)
    return value


def _temporal(spec: FieldSpec, value: Any, offset_hours: int) -> str:
    if type(value) not in (datetime, date) and hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    if isinstance(value, datetime):
        local = _to_local(value, offset_hours)
        return local.date().isoformat() if spec.type == "D" else local.isoformat(" ", "seconds")
    if isinstance(value, date):
        return value.isoformat() if spec.type == "D" else value.strftime("%Y-%m-%d 00:00:00")
    return str(value)


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def to_wire(spec: FieldSpec, value: Any, offset_hours: int = 8) -> str | None:
    """Wire text of one source value for ``spec``; ``None`` when absent."""
    cls = type(value)
    if cls is str and spec.type in ("C", "code"):
        return None if not value or value.isspace() else value  # the common case: text from CSV or SQL
    # Exact-type fast paths for what SQL drivers return (subclasses such as pandas Timestamp go the long way).
    if cls is Decimal and spec.type == "N" and value.is_finite():
        return _plain_decimal(value)
    if (cls is datetime or cls is date) and spec.type in ("D", "DT"):
        return _temporal(spec, value, offset_hours)
    if is_absent(value):
        return None
    if spec.type == "N":
        return _number(value)
    if spec.type in ("D", "DT"):
        return _temporal(spec, value, offset_hours)
    if spec.type == "code":
        return _number(value) if isinstance(value, Real) and not isinstance(value, bool) else str(value)
    return _text(value)


# How row_to_wire treats a text value of a field: text as it is (C, code, D, DT: to_wire keeps any other
# text unchanged), a number (kept when already written plainly), or always through to_wire.
_TEXT, _NUMBER, _OTHER = 0, 1, 2
# A number written plainly already: exactly what _number() gives back for it unchanged ("-0" aside).
_PLAIN_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]*[1-9])?").fullmatch

_PLANS: dict[int, tuple[TransactionSpec, tuple[tuple[str, FieldSpec, int], ...]]] = {}


def _plan(txn: TransactionSpec) -> tuple[tuple[str, FieldSpec, int], ...]:
    """(name, spec, how its text is treated) per field of ``txn``, built once per transaction."""
    cached = _PLANS.get(id(txn))
    if cached is None or cached[0] is not txn:
        kinds = {"C": _TEXT, "code": _TEXT, "D": _TEXT, "DT": _TEXT, "N": _NUMBER}
        plan = tuple((s.name, s, kinds.get(s.type, _OTHER)) for s in txn.fields)
        cached = _PLANS[id(txn)] = (txn, plan)
    return cached[1]


def row_to_wire(txn: TransactionSpec, row: Mapping[str, Any], offset_hours: int = 8) -> dict[str, str | None]:
    """Wire text of every profile field of ``txn`` in ``row``; columns outside the profile are ignored."""
    get = row.get
    out: dict[str, str | None] = {}
    for name, spec, kind in _plan(txn):
        value = get(name)
        if type(value) is not str:
            out[name] = None if value is None else to_wire(spec, value, offset_hours)
        elif not value or value.isspace():  # isspace() stops at the first other character
            out[name] = None
        elif kind == _TEXT:  # the common case: text from CSV or SQL, kept as it is
            out[name] = value
        elif kind == _NUMBER:
            out[name] = value if _PLAIN_NUMBER(value) is not None and value != "-0" else _number(value)
        else:
            out[name] = to_wire(spec, value, offset_hours)
    return out

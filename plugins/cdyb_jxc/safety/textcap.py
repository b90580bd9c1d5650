"""Text fitted to what the ledger can store (no Airflow).

Two things no ledger database takes from arbitrary text: more characters than a column holds (PostgreSQL
raises "value too long" for ``String(n)``; a hostile reply of megabytes would be stored once per row), and
characters it cannot encode at all (NUL in PostgreSQL text, lone surrogates U+D800–U+DFFF in any UTF-8
database, SQLite included). :func:`fit` answers both for one value; the ledger's write methods call it for
every text they store (:func:`fit_values`), so no caller has to remember.

Caps, in characters:

- ``String(n)`` columns: ``n``.
- ``Text`` columns (row ``detail``, batch ``retmsg``/``error``, source issue texts): :data:`TEXT_MAX`.
- One centre text inside a composed row detail (a reply's retmsg or a row's errmsg followed by our own
  words): :data:`PART_MAX`, so what follows it survives the column cap.
- The whole reply, compressed once per batch (``reply_gz``): :data:`REPLY_MAX`; our own request
  (``request_gz``): :data:`REQUEST_MAX`.

Integer columns (``succnum``, ``failnum``, ``source_row``…) get :class:`IntRange`: a count no database
column holds (SQLite: 64 bits, PostgreSQL ``integer``: 32) is stored as ``NULL`` (not-null columns: the
nearest bound), never an OverflowError or "integer out of range" for the whole write.

A cut text ends with :data:`MARKER` naming its original length; it keeps its head, where category, field
and reason stand.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from sqlalchemy import BigInteger, Integer, SmallInteger, String, Table

TEXT_MAX = 2000
PART_MAX = 500
REPLY_MAX = 256 * 1024  # real replies of 100 rows are a few KB
REQUEST_MAX = 8 * 1024 * 1024
MARKER = "…[已截断，原文{n}字符]"

# NUL: PostgreSQL text cannot hold it; lone surrogates: no UTF-8 encoder writes them
UNSTORABLE_RE = re.compile("[\x00\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def unstorable(text: str) -> str | None:
    """The first character of ``text`` no ledger database can store, or ``None``."""
    if text.isprintable():  # fast path: NUL and surrogates are not printable
        return None
    found = UNSTORABLE_RE.search(text)
    return found.group() if found else None


def storable(text: str) -> str:
    """``text`` with characters no ledger database can store written as ``\\x00`` / ``\\ud800`` escapes."""
    return text if text.isprintable() else UNSTORABLE_RE.sub(_escape, text)


def cap(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, ending with :data:`MARKER` when cut (a column too narrow for
    the marker gets a plain cut)."""
    if len(text) <= limit:
        return text
    marker = MARKER.format(n=len(text))
    if limit < 2 * len(marker):
        return text[:limit]
    return text[: limit - len(marker)] + marker


def fit(text: str, limit: int | None) -> str:
    """``text`` storable and at most ``limit`` characters (``None``: no length cap)."""
    if (limit is None or len(text) <= limit) and text.isprintable():
        return text  # the common case: one length check, one scan
    text = storable(text)
    return text if limit is None else cap(text, limit)


def encoded(text: str, limit: int) -> bytes:
    """UTF-8 of ``text`` capped at ``limit`` characters, for a compressed column (surrogates escaped)."""
    return cap(text, limit).encode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class IntRange:
    """What an integer column holds on every ledger database (PostgreSQL ``integer`` is 32 bits)."""

    low: int
    high: int
    nullable: bool

    def fit(self, value: int) -> int | None:
        """``value``, or for one out of range (a hostile count of 10**30) ``None`` when the column allows
        it, else the nearest bound: a count nobody can store must not fail the whole write."""
        if self.low <= value <= self.high:
            return value
        return None if self.nullable else max(self.low, min(self.high, value))


def column_caps(table: Table) -> dict[str, Any]:
    """Caps of the columns of ``table``: ``String(n)`` → n, ``Text`` → :data:`TEXT_MAX`; key columns get
    ``None`` (made storable, never cut: two keys cut alike would become one row). Integer columns get an
    :class:`IntRange`."""
    caps: dict[str, Any] = {}
    for column in table.columns:
        if isinstance(column.type, String):
            caps[column.name] = None if column.primary_key else (column.type.length or TEXT_MAX)
        elif isinstance(column.type, Integer) and not column.primary_key:
            bits = (
                64
                if isinstance(column.type, BigInteger)
                else 16
                if isinstance(column.type, SmallInteger)
                else 32
            )
            caps[column.name] = IntRange(
                -(2 ** (bits - 1)), 2 ** (bits - 1) - 1, column.nullable is not False
            )
    return caps


def fit_values(caps: Mapping[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with every text and integer fitted to its column in ``caps`` (other keys unchanged;
    ``values`` itself when nothing needed fitting)."""
    out: dict[str, Any] | None = None
    for key, value in values.items():
        if key not in caps:
            continue
        limit = caps[key]
        if isinstance(value, str):
            if (limit is None or len(value) <= limit) and value.isprintable():
                continue  # the common case, inlined: thousands of rows per chunk pass here
            fitted: Any = fit(value, limit if isinstance(limit, int) else None)
        elif isinstance(limit, IntRange) and isinstance(value, int) and not isinstance(value, bool):
            if limit.low <= value <= limit.high:
                continue
            fitted = limit.fit(value)
        else:
            continue
        if out is None:
            out = dict(values)
        out[key] = fitted
    return values if out is None else out


def fit_rows(caps: Mapping[str, Any], rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """``[fit_values(caps, r) for r in rows]``, checked column by column first: a batch whose every value
    fits (the usual one) costs a few C-level passes per column instead of Python work per value."""
    if not rows:
        return []
    keys = [k for k in rows[0] if k in caps]
    if set(map(len, rows)) == {len(rows[0])}:  # same size and every key of the first row: same keys
        try:
            if all(_column_fits(caps[k], list(map(itemgetter(k), rows))) for k in keys):
                return list(rows)
        except KeyError:
            pass  # the rows' keys differ: fitted one by one below
    return [fit_values(caps, r) for r in rows]


def _column_fits(limit: Any, values: list[Any]) -> bool:
    """Whether :func:`fit_values` leaves every one of ``values`` (one column) as it is; ``False`` when in
    doubt (the caller then fits value by value)."""
    if isinstance(limit, IntRange):
        present = [v for v in values if v is not None]
        try:  # a text or another type beside the integers: fitted value by value
            return not present or (limit.low <= min(present) and max(present) <= limit.high)
        except TypeError:
            return False
    try:
        texts = values
        joined = " ".join(texts)  # every value a text: the usual column (a space is printable itself)
    except TypeError:
        texts = [v for v in values if isinstance(v, str)]
        joined = " ".join(texts)
    if not joined.isprintable():
        return False
    return limit is None or not texts or max(map(len, texts)) <= limit

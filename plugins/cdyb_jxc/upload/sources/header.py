"""The one header check every source goes through: CSV, Excel, Parquet and SQL result columns.

A header names a profile field only when it is spelled exactly as the logical name. A header that matches
one only after trimming, case-folding, width-folding or dropping invisible characters (``" serial_no"``,
``"Serial_No"``, full-width letters, ``"lot_no"`` followed by U+200E or a soft hyphen: every format (Cf) or
default-ignorable code point) and a header that appears twice are ambiguous: the source is refused before
anything is sent, naming the columns.
Columns the profile does not know are ignored and listed in a warning.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from cdyb_jxc.exceptions import SourceDataError
from cdyb_jxc.wire.profile import TransactionSpec

log = logging.getLogger(__name__)

# Unicode default-ignorable code points that are not format (Cf) characters (DerivedCoreProperties.txt):
# combining grapheme joiner, Hangul fillers, Khmer inherent vowels, variation selectors, reserved tags
_IGNORABLE_RANGES = (
    (0x034F, 0x034F),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFFA0, 0xFFA0),
    (0xE0000, 0xE0FFF),
)


def _invisible(char: str) -> bool:
    """Whether ``char`` shows nothing: a format character (U+200B-U+200F, U+00AD, U+2060-U+2064, BOM...)
    or another default-ignorable code point."""
    if unicodedata.category(char) == "Cf":
        return True
    code = ord(char)
    return any(low <= code <= high for low, high in _IGNORABLE_RANGES)


@dataclass(frozen=True)
class Header:
    """Where each profile field is in a source's columns.

    :param columns: the header as read
    :param fields: (logical name, position) of every profile field the header has, in header order
    :param unknown: columns the profile does not know (ignored)
    """

    columns: tuple[str, ...]
    fields: tuple[tuple[str, int], ...]
    unknown: tuple[str, ...]


def normalised(name: str) -> str:
    """``name`` as a user may have meant it: width-folded, invisible characters dropped, trimmed, folded."""
    folded = unicodedata.normalize("NFKC", name)
    if not folded.isascii():
        folded = "".join(c for c in folded if not _invisible(c))
    return folded.strip().casefold()


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(repr(n) for n in names)


def _duplicates(columns: Sequence[str]) -> list[str]:
    seen: set[str] = set()
    repeated: list[str] = []
    for name in columns:
        if name and name in seen and name not in repeated:
            repeated.append(name)
        seen.add(name)
    return repeated


def check_columns(txn: TransactionSpec, columns: Sequence[str], where: str) -> Header:
    """Check a source's header against ``txn``; raise :class:`SourceDataError` when it is ambiguous or lacks
    required columns, warn about columns the profile does not know.

    :param txn: the transaction
    :param columns: the header (file) or result column names (SQL), in order
    :param where: the source, for messages (file path, ``source query``)
    """
    columns = tuple(columns)
    _refuse_repeats(columns, where)
    _refuse_near_names(txn, columns, where)
    _refuse_missing(txn, columns, where)
    fields = tuple((c, i) for i, c in enumerate(columns) if c in txn.by_name)
    unknown = tuple(c for c in columns if c and c not in txn.by_name)
    if unknown:
        log.warning(
            "%s: column(s) not in the profile for %s %s, ignored: %s",
            where,
            txn.code,
            txn.name,
            _quoted(unknown),
        )
    return Header(columns, fields, unknown)


def _refuse_repeats(columns: tuple[str, ...], where: str) -> None:
    repeated = _duplicates(columns)
    if repeated:
        places = "; ".join(
            f"{name!r} at positions {', '.join(str(i + 1) for i, c in enumerate(columns) if c == name)}"
            for name in repeated
        )
        raise SourceDataError(
            f"{where}: column(s) appear more than once in the header: {places}"
            " (which one holds the data is ambiguous)"
        )


def _refuse_near_names(txn: TransactionSpec, columns: tuple[str, ...], where: str) -> None:
    wanted = {normalised(f.name): f.name for f in txn.fields}
    near = [(c, wanted[normalised(c)]) for c in columns if c not in txn.by_name and normalised(c) in wanted]
    if near:
        raise SourceDataError(
            f"{where}: column(s) match the profile's logical names only after trimming spaces or ignoring"
            f" case: {', '.join(f'{c!r} (for {name})' for c, name in near)}; rename them exactly"
        )


def _refuse_missing(txn: TransactionSpec, columns: tuple[str, ...], where: str) -> None:
    present = set(columns)
    missing = [name for name in txn.required_names if name not in present]
    if missing:
        raise SourceDataError(
            f"{where} lacks required column(s) for {txn.code} {txn.name}: {', '.join(missing)}"
            f" (columns are the profile's logical names; found: {', '.join(columns) or 'none'})"
        )


def warn_unnamed(where: str, columns: Sequence[str]) -> None:
    """Warn that values stand in columns without a header (ignored, as in every file source).

    :param where: the source, for the message
    :param columns: the columns, as the user names them (Excel letters, CSV positions)
    """
    log.warning("%s: values in column(s) without a header, ignored: %s", where, ", ".join(columns))

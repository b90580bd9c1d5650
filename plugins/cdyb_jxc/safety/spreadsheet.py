"""Spreadsheet-safe CSV and Excel writing: the one place every report and export goes through (no Airflow).

A cell whose text starts with ``=``, ``+``, ``-``, ``@``, tab or carriage return is a formula to Excel,
LibreOffice and most spreadsheet tools (OWASP "CSV injection"); so is one where such a character (or its
full-width form ``＝＋－＠``, or ``|``) follows leading spaces or invisible characters, which they trim.
Ledger text comes from the hospital's source rows and from the centre's replies, so a 流水号, item name or
reason can start with any of them. CSV cells of that kind get a leading ``'`` (the OWASP way: the
spreadsheet shows it as text); Excel cells keep their exact text but are always written as string cells,
never as formulas. Numbers, booleans and dates stay typed.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

# The OWASP list: what makes a spreadsheet read a cell as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# After leading blanks Excel and LibreOffice still start a formula (they trim them), also with the
# full-width forms an IME types (they fold them) and with "|" (DDE).
_FORMULA_CHARS = "=+-@|＝＋－＠｜"
# whitespace (str.isspace: spaces, NBSP, U+3000, tab, CR, LF) and invisibles (ZWSP, ZWNJ, ZWJ, WJ, BOM)
_SHIELDED_FORMULA = re.compile(rf"[\s\u200b-\u200d\u2060\ufeff\u180e]*[{re.escape(_FORMULA_CHARS)}]")
CSV_ENCODING = "utf-8-sig"  # the BOM makes Excel read the file as UTF-8
# Characters an .xlsx cell cannot hold (XML 1.0): shown as \xNN instead of failing the whole workbook.
_XLSX_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def is_formula_like(text: str) -> bool:
    """True when a spreadsheet would read ``text`` as a formula: it starts with one of
    :data:`FORMULA_STARTS`, or one of :data:`_FORMULA_CHARS` follows leading whitespace or invisible
    characters (spreadsheet apps trim them, and fold full-width ``＝`` to ``=``).

    :param text: cell text
    """
    return text.startswith(FORMULA_STARTS) or _SHIELDED_FORMULA.match(text) is not None


def csv_cell(value: Any) -> Any:
    """The value as a CSV cell: formula-like text gets a leading ``'``; everything else is unchanged.

    :param value: a ledger value (text, number, date, ``None``)
    """
    if isinstance(value, str) and is_formula_like(value):
        return "'" + value
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    return "" if value is None else value


def _xlsx_text(text: str) -> str:
    return _XLSX_ILLEGAL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def write_csv(target: str | Path | IO[bytes], header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Write a UTF-8 (with BOM) CSV file of ``header`` and ``rows``, every cell through :func:`csv_cell`.

    :param target: a path or a binary file object
    :param header: column titles
    :param rows: one sequence of values per row
    """
    if isinstance(target, str | Path):
        with open(target, "wb") as fh:
            write_csv(fh, header, rows)
        return
    # text the encoding cannot hold (a lone surrogate) is written as an escape, not a crash
    text = io.TextIOWrapper(
        target, encoding=CSV_ENCODING, errors="backslashreplace", newline="", write_through=True
    )
    try:
        writer = csv.writer(text, lineterminator="\r\n")
        writer.writerow([csv_cell(h) for h in header])
        writer.writerows([csv_cell(v) for v in row] for row in rows)
    finally:
        text.detach()  # leave the caller's file object open


def _xlsx_cell(sheet: Any, value: Any) -> Any:
    from openpyxl.cell import WriteOnlyCell

    if isinstance(value, datetime) and value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)  # Excel has no time zones; the ledger keeps UTC
    if not isinstance(value, str):
        return WriteOnlyCell(sheet, value=value)
    cell = WriteOnlyCell(sheet, value=_xlsx_text(value))
    cell.data_type = "s"  # openpyxl makes any text starting with "=" a formula; this one is text
    return cell


def write_xlsx(
    target: str | Path | IO[bytes], header: Sequence[str], rows: Iterable[Sequence[Any]], sheet_name: str
) -> None:
    """Write an Excel workbook of one sheet: text always as string cells, never a formula.

    :param target: a path or a binary file object
    :param header: column titles
    :param rows: one sequence of values per row
    :param sheet_name: the sheet's title
    """
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet = book.create_sheet(title=sheet_name)
    sheet.append([_xlsx_cell(sheet, h) for h in header])
    for row in rows:
        sheet.append([_xlsx_cell(sheet, v) for v in row])
    book.save(target)

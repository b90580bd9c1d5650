"""Excel workbooks (.xlsx, .xlsm), read with openpyxl in read-only mode in two streamed passes.

The sheet is the one named, or the only sheet holding data: a workbook with more than one such sheet is
ambiguous and refused, listing them. The first pass checks every cell of the profile's columns before anything
is sent; the second yields the rows. Cells are read as the user sees them:

* a number in a text field (a numeric 流水号) is written as an integer, without float rounding or exponent; a
  number beyond 2**53 cannot be exact any more (Excel has already dropped digits) and refuses the file, naming
  the cell: the column must be formatted as text;
* other fractional numbers are rounded to Excel's 15 significant digits (11.000000000000002 is 11);
* an integer in a text field whose number format is only zeros (``00000000``) keeps the leading zeros shown
  (``00008812``); a boolean cell (TRUE/FALSE) anywhere, and a date or time in a text field, refuse the file,
  naming the cell;
* date-times keep their sub-second part (openpyxl rounds to the millisecond, which turns 23:59:59.9996 into
  the next day); the wire format then drops it, as for SQL sources;
* a formula without a calculated value (a workbook written by a program that never calculated it) and an
  Excel error value other than ``#N/A`` (read as absent, like the other null markers) refuse the file, naming
  the cell.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from openpyxl import load_workbook
from openpyxl.styles.numbers import BUILTIN_FORMATS, BUILTIN_FORMATS_MAX_SIZE
from openpyxl.utils import get_column_letter
from openpyxl.utils.datetime import WINDOWS_EPOCH
from openpyxl.worksheet._reader import FORMULA_TAG, VALUE_TAG, WorkSheetParser

from cdyb_jxc.exceptions import SourceDataError
from cdyb_jxc.upload.sources.header import Header, check_columns, warn_unnamed
from cdyb_jxc.wire.profile import TransactionSpec
from cdyb_jxc.wire.values import file_text

Chunk = list[dict[str, Any]]
EXACT_LIMIT = 2**53  # from here on, integers are not all representable as a float (Excel's number)
_DAY_MICROS = 86_400_000_000
_TEXT_TYPES = ("C", "code")
_PADDED = "pad"  # data type of an integer cell shown with a zeros-only format (width appended)


class _Uncalculated:
    """A formula cell with no cached value."""


UNCALCULATED = _Uncalculated()


class _Parser(WorkSheetParser):  # type: ignore[misc]  # openpyxl ships no type hints
    """openpyxl's sheet parser, keeping sub-second times, telling uncalculated formulas from empty cells."""

    zero_widths: dict[int, int]  # set by _rows before parsing

    def parse_cell(self, element: Any) -> dict[str, Any]:
        cell: dict[str, Any] = super().parse_cell(element)
        value = cell["value"]
        width = self.zero_widths.get(cell["style_id"])
        if width and cell["data_type"] == "n" and type(value) is int:
            cell["data_type"] = f"{_PADDED}{width}"
        if value is None:
            if element.find(FORMULA_TAG) is not None:
                cell["value"] = UNCALCULATED
        elif cell["data_type"] == "d" and type(value) is datetime:
            raw = element.findtext(VALUE_TAG)
            if raw and element.get("t", "n") == "n":
                cell["value"] = _serial_datetime(raw, self.epoch)
        return cell


def _serial_datetime(raw: str, epoch: datetime) -> datetime:
    """An Excel serial date-time (the cell's text) to the microsecond, in exact decimal arithmetic.

    Writers keep 15-17 digits, so the text is a few tenths of a microsecond off a round time (10:00:00 can
    read 09:59:59.9999994): a value that close to a whole millisecond is that millisecond. Nothing is rounded
    further, so 23:59:59.9996 stays on its day (openpyxl rounds every time to the millisecond).
    """
    serial = Decimal(raw)
    micros = serial * _DAY_MICROS
    exponent = serial.as_tuple().exponent
    noise = max(Decimal(1).scaleb(exponent if isinstance(exponent, int) else 0) * _DAY_MICROS, Decimal(1))
    millis = (micros / 1000).to_integral_value() * 1000
    total = int(millis if abs(micros - millis) <= noise else micros.to_integral_value())
    day, rest = divmod(total, _DAY_MICROS)
    if 0 < serial < 60 and epoch == WINDOWS_EPOCH:
        day += 1  # Excel's 1900-02-29, as openpyxl
    return epoch + timedelta(days=day, microseconds=rest)


def _open(path: Path) -> Any:
    try:
        return load_workbook(path, read_only=True, data_only=True)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
        raise SourceDataError(f"cannot read {path}: {err}") from err


def _rows(book: Any, sheet: Any) -> Iterator[tuple[int, dict[int, tuple[Any, str]]]]:
    """(row number, {column number: (value, data type)}) of each row holding any value."""
    with sheet._get_source() as src:
        parser = _Parser(
            src,
            sheet._shared_strings,
            data_only=True,
            epoch=book.epoch,
            date_formats=book._date_formats,
            timedelta_formats=book._timedelta_formats,
        )
        parser.zero_widths = _zero_widths(book)
        for number, cells in parser.parse():
            values = {
                c["column"]: (c["value"], c["data_type"])
                for c in cells
                if c["value"] is not None and not (type(c["value"]) is str and _blank(c["value"]))
            }
            if values:
                yield number, values


def _zero_widths(book: Any) -> dict[int, int]:
    """{style id: digits} of the cell styles whose number format is only zeros (``00000000``)."""
    widths: dict[int, int] = {}
    for style_id, style in enumerate(book._cell_styles):
        number_format = BUILTIN_FORMATS.get(style.numFmtId)
        if number_format is None and style.numFmtId >= BUILTIN_FORMATS_MAX_SIZE:
            custom = style.numFmtId - BUILTIN_FORMATS_MAX_SIZE
            number_format = book._number_formats[custom] if custom < len(book._number_formats) else None
        if number_format and set(number_format) == {"0"} and len(number_format) > 1:
            widths[style_id] = len(number_format)
    return widths


def _blank(text: str) -> bool:
    return not text or text.isspace()


def _select(book: Any, path: Path, sheet: str | None) -> Any:
    titles = [ws.title for ws in book.worksheets]
    if sheet is not None:
        if sheet not in titles:
            raise SourceDataError(
                f"{path} has no sheet named {sheet!r} (sheets: {', '.join(map(repr, titles))})"
            )
        return book[sheet]
    with_data = [ws for ws in book.worksheets if next(_rows(book, ws), None) is not None]
    if not with_data:
        raise SourceDataError(f"{path} is empty")
    if len(with_data) > 1:
        raise SourceDataError(
            f"{path} has {len(with_data)} sheets with data ({', '.join(repr(ws.title) for ws in with_data)}):"
            " name the one to upload with --sheet (operator argument sheet)"
        )
    return with_data[0]


def _header(txn: TransactionSpec, cells: dict[int, tuple[Any, str]], where: str) -> Header:
    width = max(cells)
    columns = ["" if (v := cells.get(i)) is None else str(v[0]).strip("\ufeff") for i in range(1, width + 1)]
    return check_columns(txn, columns, where)


def _plain(number: float) -> str:
    text = format(Decimal(repr(number)), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _cell(spec_type: str, value: Any, data_type: str) -> Any:
    """The source value of one cell; raises :class:`ValueError` with the reason when it is unusable."""
    cls = type(value)
    if cls is bool:
        raise ValueError(
            f"holds the logical value {str(value).upper()}, not data: enter the value as text or a number"
        )
    if cls in (datetime, date, time) and spec_type in _TEXT_TYPES:
        raise ValueError(
            "holds a date or time where a text field is expected: format the column as text in Excel and"
            " enter the values again"
        )
    if cls is int and spec_type in _TEXT_TYPES and data_type.startswith(_PADDED) and value >= 0:
        return format(value, f"0{data_type.removeprefix(_PADDED)}d")  # as shown: 00008812
    if cls is str:
        if data_type == "e" and value.upper() != "#N/A":
            raise ValueError(f"holds the Excel error {value}: correct the cell or its formula")
        return file_text(value)
    if cls is int or cls is float:
        if abs(value) >= EXACT_LIMIT:
            raise ValueError(
                f"holds the number {value!r}, longer than Excel keeps exactly (digits are already lost):"
                " format the column as text in Excel and enter the values again"
            )
        if cls is float:
            value = int(value) if value.is_integer() else float(f"{value:.15g}")
        if spec_type in _TEXT_TYPES:
            return str(value) if type(value) is int else _plain(value)
        return value
    if value is UNCALCULATED:
        raise ValueError(
            "holds a formula without a calculated value (the workbook was written by a program that never"
            " calculated it): open and save it in Excel, or paste the values"
        )
    return value


class ExcelSource:
    """One sheet of a workbook, checked whole by :meth:`prepass` before :meth:`chunks` reads it.

    :param path: the workbook
    :param txn: the transaction
    :param sheet: the sheet's name; ``None`` for the only sheet with data
    """

    def __init__(self, path: Path, txn: TransactionSpec, sheet: str | None) -> None:
        self.path, self.txn, self.sheet = path, txn, sheet
        self.header: Header | None = None
        self.header_row = 0
        self.where = str(path)

    def prepass(self) -> None:
        """Select the sheet and check every cell of the profile's columns; raise at the first problem."""
        book = _open(self.path)
        try:
            ws = _select(book, self.path, self.sheet)
            self.sheet = ws.title
            self.where = f"{self.path} sheet {ws.title!r}" if len(book.worksheets) > 1 else str(self.path)
            rows = _rows(book, ws)
            first = next(rows, None)
            if first is None:
                raise SourceDataError(f"{self.where} is empty")
            self.header_row = first[0]
            self.header = header = _header(self.txn, first[1], self.where)
            specs = [(self.txn.by_name[name], pos + 1) for name, pos in header.fields]
            unnamed: set[int] = set()
            for number, cells in rows:
                for spec, column in specs:
                    if column in cells:
                        self._check(spec.name, spec.type, cells[column], number, column)
                unnamed.update(c for c in cells if c > len(header.columns) or not header.columns[c - 1])
        finally:
            book.close()
        if unnamed:
            warn_unnamed(self.where, [get_column_letter(c) for c in sorted(unnamed)])

    def _check(self, name: str, spec_type: str, cell: tuple[Any, str], row: int, column: int) -> None:
        try:
            _cell(spec_type, *cell)
        except ValueError as err:
            raise SourceDataError(
                f"{self.where} cell {get_column_letter(column)}{row} (column {name}) {err}"
            ) from None

    def chunks(self, chunk_size: int) -> Iterator[Chunk]:
        """The second pass: rows of the profile's columns, in chunks."""
        if self.header is None:
            raise SourceDataError(f"{self.path} was not checked before reading")
        specs = [(name, self.txn.by_name[name].type, pos + 1) for name, pos in self.header.fields]
        book = _open(self.path)
        try:
            ws = book[self.sheet]
            chunk: Chunk = []
            for number, cells in _rows(book, ws):
                if number <= self.header_row:
                    continue
                row: dict[str, Any] = {}
                for name, spec_type, column in specs:
                    cell = cells.get(column)
                    try:
                        row[name] = None if cell is None else _cell(spec_type, *cell)
                    except ValueError as err:  # only when the file changed between the passes
                        raise SourceDataError(f"{self.where} changed after it was checked: {err}") from None
                chunk.append(row)
                if len(chunk) >= chunk_size:
                    yield chunk
                    chunk = []
            if chunk:
                yield chunk
        finally:
            book.close()

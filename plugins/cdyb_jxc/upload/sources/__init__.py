"""Source readers that stream rows in chunks: CSV, Parquet, Excel files and DB-API cursors (no Airflow).

Columns are the profile's logical names, checked by one shared header check (:func:`check_columns`):
missing required columns, a column repeated, or one that matches a logical name only after trimming or
case-folding stop everything before a row is sent. CSV and Excel files are checked whole by a streamed first
pass (encoding, quoting, ragged lines, unusable cells) before the first row is yielded, so a file is never
half sent.
"""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import ParseError

from cdyb_jxc.exceptions import SourceDataError
from cdyb_jxc.upload.sources.cursor import _streaming_cursor, iter_cursor_chunks
from cdyb_jxc.upload.sources.header import Header, check_columns
from cdyb_jxc.wire.profile import TransactionSpec

__all__ = ["DEFAULT_CHUNK_SIZE", "Header", "check_columns", "iter_cursor_chunks", "iter_file_chunks"]
__all__ += ["_streaming_cursor"]

Chunk = list[dict[str, Any]]
DEFAULT_CHUNK_SIZE = 5000
# what a reader library raises on a file it cannot read (a corrupt zip member or page, a vanished file)
_READ_ERRORS = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error, ParseError)


def _csv(path: Path, txn: TransactionSpec, chunk_size: int, sheet: str | None, encoding: str | None) -> Any:
    from cdyb_jxc.upload.sources import csv_file

    if sheet is not None:
        raise SourceDataError(f"{path}: a sheet applies to Excel files only, not to a CSV")
    codec = csv_file.resolve_encoding(encoding)
    header, stamp = csv_file.prepass(path, txn, codec)
    return csv_file.read_chunks(path, header, codec, chunk_size, stamp)


def _excel(path: Path, txn: TransactionSpec, chunk_size: int, sheet: str | None, encoding: str | None) -> Any:
    from cdyb_jxc.upload.sources.excel_file import ExcelSource

    if encoding is not None:
        raise SourceDataError(f"{path}: an encoding applies to CSV files only (a workbook carries its own)")
    source = ExcelSource(path, txn, sheet)
    source.prepass()
    return source.chunks(chunk_size)


def _parquet(
    path: Path, txn: TransactionSpec, chunk_size: int, sheet: str | None, encoding: str | None
) -> Any:
    from cdyb_jxc.upload.sources import parquet_file

    if sheet is not None or encoding is not None:
        raise SourceDataError(f"{path}: a sheet or an encoding applies to Excel or CSV files, not to Parquet")
    return parquet_file.read_chunks(path, txn, chunk_size)


Reader = Callable[[Path, TransactionSpec, int, "str | None", "str | None"], Iterator[Chunk]]
READERS: dict[str, Reader] = {
    ".csv": _csv,
    ".txt": _csv,
    ".parquet": _parquet,
    ".pq": _parquet,
    ".xlsx": _excel,
    ".xlsm": _excel,
}


def iter_file_chunks(
    path: str | Path,
    txn: TransactionSpec,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    *,
    sheet: str | None = None,
    encoding: str | None = None,
) -> Iterator[Chunk]:
    """Stream a CSV (header row), Parquet or Excel file in chunks of dicts, after checking it whole.

    The check runs now, before this returns: a :class:`SourceDataError` names the line, cell or column.

    :param path: the file
    :param txn: the transaction whose logical names the header holds
    :param chunk_size: rows per chunk
    :param sheet: the Excel sheet to read (default: the only sheet with data)
    :param encoding: the CSV's text encoding (default UTF-8, with or without BOM), e.g. ``gb18030``
    """
    file = Path(path)
    reader = READERS.get(file.suffix.lower())
    if reader is None:
        raise SourceDataError(f"{file}: unsupported file type {file.suffix!r} (use .csv, .parquet or .xlsx)")
    if not file.is_file():
        raise SourceDataError(f"source file {file} does not exist")
    try:
        chunks = reader(file, txn, chunk_size, sheet, encoding)
    except _READ_ERRORS as err:
        raise SourceDataError(f"cannot read {file}: {err}") from err
    return _guarded(file, chunks)


def _guarded(file: Path, chunks: Iterator[Chunk]) -> Iterator[Chunk]:
    """``chunks``, a read error of the second pass named as the file's (never a raw traceback)."""
    try:
        yield from chunks
    except _READ_ERRORS as err:
        raise SourceDataError(f"cannot read {file} after it was checked: {err}") from err

"""CSV files, read with the stdlib ``csv`` module in two streamed passes (bounded memory, no pandas).

The first pass reads the whole file before anything is sent: encoding, quoting and the number of cells of
every line. A problem anywhere (an undecodable byte, an unclosed quote, a ragged line at line 6,000) refuses
the file naming the line, so a file is never half sent. The second pass yields the rows: all text, an empty
cell or a null marker absent (:func:`cdyb_jxc.wire.values.file_text`).
"""

from __future__ import annotations

import codecs
import csv
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from cdyb_jxc.exceptions import SourceDataError
from cdyb_jxc.upload.sources.header import Header, check_columns, warn_unnamed
from cdyb_jxc.wire.profile import TransactionSpec
from cdyb_jxc.wire.values import file_text

Chunk = list[dict[str, str | None]]
DEFAULT_ENCODING = "utf-8-sig"  # UTF-8, with or without BOM
# A physical line longer than this is not a row of this data: refused instead of read into memory.
MAX_LINE_BYTES = 1 << 20
_BLOCK = 1 << 20
_UTF16_BOMS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_UTF32_BOMS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)
FIX_SOURCE = "pass --encoding {encoding} (operator argument encoding='{encoding}')"


class _Undecodable(Exception):
    """A byte the encoding cannot decode, at ``line`` (1-based)."""

    def __init__(self, line: int, byte: int) -> None:
        super().__init__(line, byte)
        self.line, self.byte = line, byte


def resolve_encoding(encoding: str | None) -> str:
    """The codec to read a CSV with; a usage error for an unknown or not ASCII-compatible name.

    :param encoding: the name the user gave, ``None`` for UTF-8 (with or without BOM)
    """
    if encoding is None:
        return DEFAULT_ENCODING
    try:
        name = codecs.lookup(encoding).name
        # CSV structure (newline, comma, quote) must be the same bytes as in ASCII to split lines safely
        compatible = name in ("utf-8", "utf-8-sig") or '\n,"a'.encode(name) == b'\n,"a'
    except LookupError as err:
        raise SourceDataError(f"unknown encoding {encoding!r} (e.g. utf-8, gb18030)") from err
    if not compatible:
        raise SourceDataError(
            f"encoding {encoding!r} cannot be read as CSV here: save the file as UTF-8 or GB18030"
        )
    return DEFAULT_ENCODING if name in ("utf-8", "utf-8-sig") else name


class _Lines:
    """Physical lines of a binary file, decoded strictly, counted, each at most :data:`MAX_LINE_BYTES`.

    Also notes whether non-ASCII text would have been valid UTF-8 (``utf8_too``): a file given as GBK
    that is valid UTF-8 is ambiguous.
    """

    def __init__(self, fh: BinaryIO, encoding: str, where: Path) -> None:
        self.fh, self.where, self.encoding = fh, where, encoding
        self.decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
        self.number = 0
        self.non_ascii = False
        self.utf8_too = encoding != DEFAULT_ENCODING

    def __iter__(self) -> Iterator[str]:
        while raw := self.fh.readline(MAX_LINE_BYTES):
            self.number += 1
            if len(raw) == MAX_LINE_BYTES and not raw.endswith(b"\n"):
                raise SourceDataError(
                    f"{self.where} line {self.number} is longer than {MAX_LINE_BYTES} bytes:"
                    " not a CSV of rows"
                )
            if self.utf8_too and not raw.isascii():
                self._note_utf8(raw)
            try:
                yield self.decoder.decode(raw)
            except UnicodeDecodeError as err:
                raise _Undecodable(self.number, _bad_byte(err, raw)) from err
        try:
            tail = self.decoder.decode(b"", final=True)
        except UnicodeDecodeError as err:
            raise _Undecodable(self.number, _bad_byte(err, b"")) from err
        if tail:
            yield tail

    def _note_utf8(self, raw: bytes) -> None:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            self.utf8_too = False
        else:
            self.non_ascii = True


def _bad_byte(err: UnicodeDecodeError, raw: bytes) -> int:
    data = err.object if isinstance(err.object, bytes) and err.object else raw
    return data[min(err.start, len(data) - 1)] if data else 0


def _blank(cells: list[str]) -> bool:
    if cells and cells[0] and not cells[0].isspace():  # the common case: a row starts with its 流水号
        return False
    return all(not c or c.isspace() for c in cells)


def _records(lines: _Lines) -> Iterator[tuple[int, list[str]]]:
    """(first physical line, cells) of every record that holds something."""
    reader = csv.reader(lines, strict=True)
    where, last = lines.where, 0
    while True:
        try:
            cells = next(reader, None)
        except csv.Error as err:
            raise SourceDataError(_malformed(where, last + 1, str(err))) from err
        if cells is None:
            return
        first, last = last + 1, reader.line_num
        if not _blank(cells):
            yield first, cells


def _malformed(where: Path, line: int, reason: str) -> str:
    if "end of data" in reason:
        return f"{where} line {line}: a quoted value opened there is never closed (malformed CSV)"
    if "field larger" in reason:
        limit = csv.field_size_limit()
        return f"{where} line {line}: a value longer than {limit} characters (an unclosed quote?)"
    if "new-line character" in reason:
        return (
            f"{where} line {line}: a carriage return (CR) without a line feed, i.e. lines ended by CR only"
            " (classic Mac) or a stray CR in an unquoted value: save it with Windows (CRLF) or Unix (LF)"
            " line endings, or quote the value"
        )
    return f"{where} line {line}: malformed CSV ({reason})"


def _stamp(path: Path) -> tuple[int, int]:
    info = os.stat(path)
    return info.st_size, info.st_mtime_ns


def checked_records(path: Path, encoding: str, *, fix: str = FIX_SOURCE) -> Iterator[tuple[int, list[str]]]:
    """(first line, cells) of every non-blank record of the whole file, the first with a BOM the codec did
    not take removed; raises :class:`SourceDataError` for an undecodable byte, bad quoting, an over-long line,
    a UTF-16 file or, at the end, a file given as another encoding that is valid UTF-8.

    :param path: the file
    :param encoding: the codec (:func:`resolve_encoding`)
    :param fix: how the user passes another encoding, for messages
    """
    _refuse_wide(path, encoding)
    with path.open("rb") as fh:
        lines = _Lines(fh, encoding, path)
        first = True
        try:
            for line, cells in _records(lines):
                if first:
                    cells, first = [cells[0].removeprefix("\ufeff"), *cells[1:]], False
                yield line, cells
        except _Undecodable as bad:
            raise SourceDataError(_undecodable(path, encoding, bad, fix)) from None
    if lines.utf8_too and lines.non_ascii:
        raise SourceDataError(
            f"{path} was given as {encoding} but its text is valid UTF-8: read as {encoding} it would be"
            " garbled; drop the encoding to read it as UTF-8"
        )


def _refuse_wide(path: Path, encoding: str) -> None:
    """A UTF-16 or UTF-32 file (by its BOM), or a UTF-8 BOM in a file given another encoding."""
    with path.open("rb") as fh:
        start = fh.read(4)
    if encoding == DEFAULT_ENCODING and start in _UTF32_BOMS:
        raise SourceDataError(f"{path} is UTF-32: save it as 'CSV UTF-8'")
    if encoding == DEFAULT_ENCODING and start[:2] in _UTF16_BOMS:
        raise SourceDataError(
            f"{path} is UTF-16 (Excel's 'Unicode text'): save it as 'CSV UTF-8' or pass its encoding"
        )


def ragged(path: Path, line: int, cells: list[str], width: int) -> SourceDataError:
    """The error for a record whose number of cells is not the header's."""
    return SourceDataError(
        f"{path} line {line} has {len(cells)} values where the header has"
        f" {width} columns (an unquoted comma, or a value missing?)"
    )


def prepass(path: Path, txn: TransactionSpec, encoding: str) -> tuple[Header, tuple[int, int]]:
    """Read the whole file once, refusing it at the first problem; its header and size/mtime stamp."""
    header: Header | None = None
    unnamed: set[int] = set()
    blank_columns: list[int] = []
    for line, cells in checked_records(path, encoding):
        if header is None:
            header = check_columns(txn, cells, str(path))
            blank_columns = [i for i, name in enumerate(header.columns) if not name.strip()]
            continue
        if len(cells) != len(header.columns):
            raise ragged(path, line, cells, len(header.columns))
        if blank_columns:
            unnamed.update(i for i in blank_columns if not _blank([cells[i]]))
    if header is None:
        raise SourceDataError(f"{path} is empty")
    if unnamed:
        warn_unnamed(str(path), [str(i + 1) for i in sorted(unnamed)])
    return header, _stamp(path)


def _undecodable(path: Path, encoding: str, bad: _Undecodable, fix: str) -> str:
    where = f"undecodable byte 0x{bad.byte:02x} at line {bad.line}"
    if encoding != DEFAULT_ENCODING:
        if _decodes(path, DEFAULT_ENCODING):
            return f"{path} is not {encoding} ({where}); it reads as UTF-8: drop the encoding"
        return f"{path} is not {encoding} ({where}): pass the file's own encoding"
    with path.open("rb") as fh:
        bom = fh.read(3) == codecs.BOM_UTF8
    if bom:
        return (
            f"{path} starts with a UTF-8 byte-order mark but is not UTF-8 ({where}): its lines mix two"
            " encodings; save the whole file again as 'CSV UTF-8'"
        )
    if _decodes(path, "gb18030"):
        return f"{path} is not UTF-8 ({where}); it reads as GB18030: {fix.format(encoding='gb18030')}"
    other = "pass its encoding with --encoding (operator: encoding)" if fix == FIX_SOURCE else fix
    return f"{path} is not UTF-8 ({where}) nor GB18030: {other}"


def _decodes(path: Path, encoding: str) -> bool:
    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    try:
        with path.open("rb") as fh:
            while block := fh.read(_BLOCK):
                decoder.decode(block)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return False
    return True


def read_chunks(
    path: Path, header: Header, encoding: str, chunk_size: int, stamp: tuple[int, int]
) -> Iterator[Chunk]:
    """The second pass: rows of the profile's columns, in chunks."""
    if _stamp(path) != stamp:
        raise SourceDataError(f"{path} changed after it was checked: run again once it is complete")
    fields, width = header.fields, len(header.columns)
    chunk: Chunk = []
    with path.open("rb") as fh:
        records = _records(_Lines(fh, encoding, path))
        next(records)  # the header
        try:
            for line, cells in records:
                if len(cells) != width:
                    raise SourceDataError(f"{path} changed after it was checked (line {line}): run again")
                chunk.append({name: file_text(cells[i]) for name, i in fields})
                if len(chunk) >= chunk_size:
                    yield chunk
                    chunk = []
        except _Undecodable as bad:  # only when the file changed between the passes
            raise SourceDataError(_undecodable(path, encoding, bad, FIX_SOURCE)) from None
    if chunk:
        yield chunk

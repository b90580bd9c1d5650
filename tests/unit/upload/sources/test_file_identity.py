"""Holes found by attack B: Parquet pre-pass, 对码 file checks, source identity, invisible headers, null
markers, Excel cells as shown, CSV values without a header, clearer encoding messages."""

from __future__ import annotations

import codecs
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cdyb_jxc.exceptions import SourceDataError
from cdyb_jxc.upload.registry import load_registry
from cdyb_jxc.upload.source_issues import file_source
from cdyb_jxc.upload.sources import iter_file_chunks
from cdyb_jxc.wire.profile import Profile, TransactionSpec
from cdyb_jxc.wire.rules import MappingEntry
from tests.conftest import outbound_row


@pytest.fixture
def txn(profile: Profile) -> TransactionSpec:
    return profile.transaction("outbound")


def rows_of(path: Path, txn: TransactionSpec) -> list[dict[str, Any]]:
    return [row for chunk in iter_file_chunks(path, txn) for row in chunk]


def _parquet(path: Path, rows: list[dict[str, Any]], **kw: Any) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path, **kw)
    return path


# --- B1: Parquet is checked whole before the first chunk; read errors are SourceDataError ----------


def test_parquet_corrupt_second_row_group_is_refused_before_any_chunk(txn, tmp_path):
    rows = [outbound_row(f"CK{i}") for i in range(4000)]
    src = _parquet(tmp_path / "c.parquet", rows, row_group_size=2000, compression="NONE")
    meta = pq.ParquetFile(src).metadata.row_group(1).column(0)
    data = bytearray(src.read_bytes())
    start = meta.data_page_offset
    data[start : start + 64] = b"\xff" * 64
    src.write_bytes(bytes(data))
    with pytest.raises(SourceDataError, match=r"cannot read .*c\.parquet \(corrupt or truncated Parquet"):
        iter_file_chunks(src, txn)  # eager: nothing was yielded, nothing sent


def test_parquet_file_changed_after_the_check_is_refused(txn, tmp_path):
    src = _parquet(tmp_path / "p.parquet", [outbound_row("CK1")])
    chunks = iter_file_chunks(src, txn)
    _parquet(src, [outbound_row("CK1"), outbound_row("CK2")])
    with pytest.raises(SourceDataError, match="changed after it was checked"):
        next(chunks)


def test_an_excel_read_error_after_the_check_is_a_source_data_error(txn, tmp_path):
    from openpyxl import Workbook

    book = Workbook()
    book.active.append(list(outbound_row("X")))
    book.active.append(list(outbound_row("CK1").values()))
    src = tmp_path / "w.xlsx"
    book.save(src)
    chunks = iter_file_chunks(src, txn)
    src.write_bytes(b"not a zip any more")
    with pytest.raises(SourceDataError, match=r"cannot read .*w\.xlsx"):
        next(chunks)


# --- B5: null markers in every field of every file type --------------------------------------------


@pytest.mark.parametrize("marker", ["NULL", "None", "nan", " N/A "])
def test_parquet_null_markers_are_absent_in_every_field(txn, tmp_path, marker):
    row = {**outbound_row("CK1"), "remark": marker, "sale_price": marker}
    src = _parquet(tmp_path / "m.parquet", [row])
    assert rows_of(src, txn) == [{**row, "remark": None, "sale_price": None}]


# --- B2: the 对码 file goes through the same checks --------------------------------------------------


def _mapping(tmp_path: Path, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / "map.csv"
    path.write_bytes(text.encode(encoding))
    return path


def test_mapping_file_reads_and_ignores_institution_code(tmp_path):
    src = _mapping(
        tmp_path,
        "\ufeffinstitution_code,mapping_serial_no,insurance_item_code,off_hospital_delivery\n"
        "H1,M1,XA1,1\nH1,M2,XA2,0\nH1,M2,XA2,0\n",
    )
    assert load_registry(src) == {"M1": MappingEntry("XA1", True), "M2": MappingEntry("XA2", False)}


@pytest.mark.parametrize(
    ("text", "encoding", "message"),
    [
        (
            "mapping_serial_no,insurance_item_code\n阿莫西林,XA1\n",
            "gbk",
            (
                "{path} is not UTF-8 (undecodable byte 0xb0 at line 2); it reads as GB18030: save it as"
                " 'CSV UTF-8'"
            ),
        ),
        (
            "mapping_serial_no,insurance_item_code\nM1\n",
            "utf-8",
            "{path} line 2 has 1 values where the header has 2 columns",
        ),
        (
            "mapping_serial_no,insurance_item_code,insurance_item_code\nM1,XA1,XA9\n",
            "utf-8",
            (
                "对码 file {path}: column(s) appear more than once in the header: 'insurance_item_code' at"
                " positions 2, 3 (which one holds the data is ambiguous)"
            ),
        ),
        (
            "mapping_serial_no,insurance_item_code\nM1, \n",
            "utf-8",
            "对码 file {path} line 2: insurance_item_code is empty",
        ),
        (
            "mapping_serial_no,insurance_item_code\n,XA1\n",
            "utf-8",
            "对码 file {path} line 2: mapping_serial_no is empty",
        ),
        (
            "mapping_serial_no,insurance_item_code\nM1,XA1\nM1,XA2\n",
            "utf-8",
            (
                "对码 file {path} line 3: mapping_serial_no 'M1' is already mapped differently at line 2"
                " (which one is right is ambiguous)"
            ),
        ),
        ("mapping_serial_no,Insurance_item_code\nM1,XA1\n", "utf-8", "only after trimming spaces"),
    ],
)
def test_mapping_file_problems_are_refused_naming_the_line(tmp_path, text, encoding, message):
    src = _mapping(tmp_path, text, encoding)
    with pytest.raises(SourceDataError) as err:
        load_registry(src)
    assert message.format(path=src) in str(err.value)


# --- B3: the sheet and the encoding are part of a file's identity ---------------------------------


def test_two_sheets_of_one_workbook_are_two_sources(tmp_path):
    book = tmp_path / "w.xlsx"
    book.write_bytes(b"same bytes")
    assert file_source(book, sheet="a") != file_source(book, sheet="b") != file_source(book)
    assert file_source(book, sheet="a") == file_source(tmp_path / "." / "w.xlsx", sheet="a")


def test_csv_encoding_is_part_of_the_identity_by_codec_not_by_spelling(tmp_path):
    src = tmp_path / "a.csv"
    src.write_bytes(b"x")
    assert file_source(src, encoding="GBK") == file_source(src, encoding="gbk") != file_source(src)
    assert file_source(src, encoding="utf-8") == file_source(src)  # the default reading, as before


# --- B4: every invisible (format / default-ignorable) character in a header ------------------------


@pytest.mark.parametrize("invisible", ["\u200e", "\u200f", "\u00ad", "\u2063", "\u034f", "\ufe0f", "\u180e"])
@pytest.mark.parametrize("kind", ["csv", "xlsx"])
def test_header_with_invisible_characters_is_refused(txn, tmp_path, invisible, kind):
    header = [*outbound_row("X"), f"lot_no{invisible}"]
    values = [*outbound_row("CK1").values(), "LOT-1"]
    if kind == "csv":
        src = tmp_path / "h.csv"
        src.write_text(",".join(header) + "\n" + ",".join(values) + "\n", encoding="utf-8")
    else:
        from openpyxl import Workbook

        book = Workbook()
        book.active.append(header)
        book.active.append(values)
        src = tmp_path / "h.xlsx"
        book.save(src)
    with pytest.raises(SourceDataError, match=r"only after trimming spaces or ignoring case: 'lot_no"):
        iter_file_chunks(src, txn)


# --- B7: Excel cells as the user sees them --------------------------------------------------------


def _xlsx_cell(tmp_path: Path, field: str, value: Any, number_format: str | None = None) -> Path:
    from openpyxl import Workbook

    header = list(outbound_row("X"))
    book = Workbook()
    book.active.append(header)
    book.active.append(list(outbound_row("CK1").values()))
    cell = book.active.cell(2, header.index(field) + 1)
    cell.value = value
    if number_format:
        cell.number_format = number_format
    src = tmp_path / "c.xlsx"
    book.save(src)
    return src


@pytest.mark.parametrize("field", ["serial_no", "quantity"])
def test_excel_boolean_cell_is_refused_naming_it(txn, tmp_path, field):
    src = _xlsx_cell(tmp_path, field, True)
    with pytest.raises(SourceDataError, match=rf"cell .2 \(column {field}\) holds the logical value TRUE"):
        iter_file_chunks(src, txn)


def test_excel_date_in_a_text_field_is_refused_naming_it(txn, tmp_path):
    src = _xlsx_cell(tmp_path, "hospital_item_name", datetime(2026, 11, 20), "yyyy/m/d")
    with pytest.raises(
        SourceDataError, match=r"\(column hospital_item_name\) holds a date or time where a text"
    ):
        iter_file_chunks(src, txn)


def test_excel_zero_padded_number_format_is_kept_as_shown(txn, tmp_path):
    src = _xlsx_cell(tmp_path, "serial_no", 8812, "00000000")
    assert rows_of(src, txn)[0]["serial_no"] == "00008812"
    src = _xlsx_cell(tmp_path, "quantity", 12, "0000")
    assert rows_of(src, txn)[0]["quantity"] == 12  # a number field keeps the number


# --- B9: CSV values under an empty header are warned about, as in Excel ---------------------------


def test_csv_values_without_a_header_are_warned_about(txn, tmp_path, caplog):
    src = tmp_path / "e.csv"
    header = ",".join([*outbound_row("X"), ""])
    src.write_text(header + "\n" + ",".join([*outbound_row("CK1").values(), "lost?"]) + "\n", "utf-8")
    with caplog.at_level(logging.WARNING, logger="cdyb_jxc.upload.sources"):
        assert rows_of(src, txn) == [outbound_row("CK1")]
    assert f"{src}: values in column(s) without a header, ignored: 11" in caplog.messages


# --- B13: clearer messages ------------------------------------------------------------------------


def test_cr_only_csv_is_named_as_such(txn, tmp_path):
    src = tmp_path / "mac.csv"
    src.write_bytes(
        ("\r".join([",".join(outbound_row("X")), ",".join(outbound_row("CK1").values())]) + "\r").encode()
    )
    with pytest.raises(SourceDataError, match=r"line 1: a carriage return \(CR\) without a line feed"):
        iter_file_chunks(src, txn)


def test_utf32_is_not_called_utf16(txn, tmp_path):
    src = tmp_path / "w.csv"
    src.write_bytes(codecs.BOM_UTF32_LE + ",".join(outbound_row("X")).encode("utf-32-le"))
    with pytest.raises(SourceDataError, match=r"is UTF-32: save it as 'CSV UTF-8'"):
        iter_file_chunks(src, txn)


def test_utf8_bom_before_gbk_bytes_is_not_told_to_pass_gb18030(txn, tmp_path):
    src = tmp_path / "mix.csv"
    text = ",".join(outbound_row("X")) + "\n" + ",".join({**outbound_row("CK1"), "remark": "药品"}.values())
    src.write_bytes(codecs.BOM_UTF8 + text.encode("gbk"))
    with pytest.raises(SourceDataError, match=r"starts with a UTF-8 byte-order mark but is not UTF-8"):
        iter_file_chunks(src, txn)

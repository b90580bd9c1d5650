"""Source readers: one header check for every source, streamed pre-pass, encodings, Excel cells as shown."""

from __future__ import annotations

import logging
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from cdyb_jxc.exceptions import SourceDataError
from cdyb_jxc.upload.sources import check_columns, iter_cursor_chunks, iter_file_chunks
from cdyb_jxc.upload.sources.csv_file import MAX_LINE_BYTES
from cdyb_jxc.wire.profile import Profile, TransactionSpec
from cdyb_jxc.wire.values import file_text, row_to_wire
from tests.conftest import outbound_row, write_csv


@pytest.fixture
def txn(profile: Profile) -> TransactionSpec:
    return profile.transaction("outbound")


def rows_of(path: Path, txn: TransactionSpec, **kw: Any) -> list[dict[str, Any]]:
    return [row for chunk in iter_file_chunks(path, txn, **kw) for row in chunk]


def csv_text(rows: list[dict[str, Any]], tmp_path: Path) -> str:
    return write_csv(tmp_path / "rows-template.csv", rows).read_text(encoding="utf-8")


def write_xlsx(
    path: Path, rows: list[list[Any]], *, sheets: dict[str, list[list[Any]]] | None = None
) -> Path:
    from openpyxl import Workbook

    book = Workbook()
    for values in rows:
        book.active.append(values)
    for title, extra in (sheets or {}).items():
        sheet = book.create_sheet(title)
        for values in extra:
            sheet.append(values)
    book.save(path)
    return path


def xlsx_rows(path: Path, rows: list[dict[str, Any]], **kw: Any) -> Path:
    return write_xlsx(path, [list(rows[0]), *[list(r.values()) for r in rows]], **kw)


# --- the one header check ------------------------------------------------------------------------

NEAR = [
    " serial_no",
    "serial_no ",
    "Serial_No",
    "SERIAL_NO",
    "ｓｅｒｉａｌ_ｎｏ",
    "serial_no\u200b",
    "\ufeffSerial_no",
]


@pytest.mark.parametrize("spelled", NEAR)
def test_header_matching_only_after_trim_or_casefold_is_refused(txn, spelled):
    columns = [spelled if c == "serial_no" else c for c in outbound_row("X")]
    with pytest.raises(SourceDataError) as info:
        check_columns(txn, columns, "f.csv")
    assert str(info.value) == (
        "f.csv: column(s) match the profile's logical names only after trimming spaces or ignoring case: "
        f"{spelled!r} (for serial_no); rename them exactly"
    )


def test_header_beside_its_exact_spelling_is_still_refused(txn):
    columns = [*outbound_row("X"), "Quantity"]
    with pytest.raises(SourceDataError, match=r"'Quantity' \(for quantity\)"):
        check_columns(txn, columns, "f.csv")


def test_repeated_header_is_refused_naming_positions(txn):
    columns = [*outbound_row("X"), "quantity", "备注", "备注"]
    with pytest.raises(SourceDataError) as info:
        check_columns(txn, columns, "f.csv")
    assert str(info.value) == (
        "f.csv: column(s) appear more than once in the header: 'quantity' at positions 9, 11; "
        "'备注' at positions 12, 13 (which one holds the data is ambiguous)"
    )


def test_unknown_columns_are_listed_in_a_warning(txn, caplog):
    columns = [*outbound_row("X"), "备注", "", "his_id"]
    with caplog.at_level(logging.WARNING, logger="cdyb_jxc.upload.sources"):
        header = check_columns(txn, columns, "f.csv")
    assert header.unknown == ("备注", "his_id")
    assert caplog.messages == [
        "f.csv: column(s) not in the profile for JXC003 药品出库信息上传, ignored: '备注', 'his_id'"
    ]


def _source(tmp_path: Path, kind: str, header: list[str]) -> Path:
    values = [list(outbound_row("CK1").values())[: len(header)]]
    values[0] += [""] * (len(header) - len(values[0]))
    if kind == "csv":
        path = tmp_path / "s.csv"
        path.write_text(",".join(header) + "\n" + ",".join(values[0]) + "\n", encoding="utf-8")
        return path
    if kind == "xlsx":
        return write_xlsx(tmp_path / "s.xlsx", [header, *values])
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "s.parquet"
    arrays = [pa.array([v]) for v in values[0]]
    pq.write_table(pa.Table.from_arrays(arrays, names=header), path)
    return path


@pytest.mark.parametrize("kind", ["csv", "xlsx", "parquet"])
@pytest.mark.parametrize("problem", ["near", "repeated"])
def test_every_file_type_goes_through_the_same_header_check(txn, tmp_path, kind, problem):
    header = list(outbound_row("X"))
    if problem == "near":
        header[0] = "Serial_No"
    else:
        header.append("unit")
    path = _source(tmp_path, kind, header)
    with pytest.raises(SourceDataError) as info:
        iter_file_chunks(path, txn)
    expected = "only after trimming" if problem == "near" else "'unit' at positions 6, 11"
    assert str(info.value).startswith(f"{path}: column(s) ")
    assert expected in str(info.value)


def test_sql_result_columns_go_through_the_same_check(txn):
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (serial_no TEXT, unit TEXT)")
    cols = ", ".join(f"'{v}' AS {k}" for k, v in outbound_row("CK1").items())
    with pytest.raises(SourceDataError) as info:
        list(iter_cursor_chunks(conn, f"SELECT {cols}, 'x' AS serial_no", txn))
    assert str(info.value) == (
        "source query: column(s) appear more than once in the header: 'serial_no' at positions 1, 11"
        " (which one holds the data is ambiguous)"
    )
    upper = ", ".join(f"'{v}' AS {k.upper() if k == 'unit' else k}" for k, v in outbound_row("CK1").items())
    with pytest.raises(SourceDataError, match=r"'UNIT' \(for unit\)"):
        list(iter_cursor_chunks(conn, f"SELECT {upper}", txn))
    ((row,),) = list(iter_cursor_chunks(conn, f"SELECT {cols}, 1 AS his_id", txn))
    assert row == outbound_row("CK1")  # only the profile's columns travel on


# --- CSV: values, encodings, the pre-pass --------------------------------------------------------


def test_csv_values_are_text_as_written(txn, tmp_path):
    src = tmp_path / "v.csv"
    text = csv_text([outbound_row("CK1", remark="x")], tmp_path)
    text += 'CK2,XA000001,"阿莫西林, 胶囊\n第二行",M0001,0,盒,21,12.5,2,2026-11-20 10:00:00, a "b" \r\n'
    text += "\n,,,,,,,,,,\n  ,\t,,,,,,,,,\n"  # blank lines and rows of blanks carry nothing: skipped
    src.write_text(text, encoding="utf-8")
    rows = rows_of(src, txn)
    assert rows[0] == outbound_row("CK1", remark="x")
    assert rows[1]["hospital_item_name"] == "阿莫西林, 胶囊\n第二行"
    assert rows[1]["remark"] == ' a "b" '
    assert len(rows) == 2


@pytest.mark.parametrize(
    "marker", ["NULL", "null", "None", "\\N", "NaN", "nan", "NaT", "<NA>", "N/A", "#N/A", " NULL "]
)
def test_csv_null_markers_are_absent(txn, tmp_path, marker):
    src = write_csv(tmp_path / "m.csv", [outbound_row("CK1", remark=marker, lot_no=f"{marker}1")])
    (row,) = rows_of(src, txn)
    assert row["remark"] is None
    assert row["lot_no"] == f"{marker}1"  # only the whole value is a marker


def test_csv_header_only_reads_no_rows(txn, tmp_path):
    src = tmp_path / "h.csv"
    src.write_text(",".join(outbound_row("X")) + "\n", encoding="utf-8")
    assert rows_of(src, txn) == []


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"], ids=["no-bom", "bom"])
def test_utf8_with_and_without_bom_is_the_default(txn, tmp_path, bom):
    src = tmp_path / "u.csv"
    src.write_bytes(bom + csv_text([outbound_row("CK1")], tmp_path).encode("utf-8"))
    assert rows_of(src, txn) == [outbound_row("CK1")]


@pytest.mark.parametrize("encoding", ["gbk", "GB18030", "gb2312", "cp936"])
def test_gbk_csv_reads_correctly_when_the_encoding_is_given(txn, tmp_path, encoding):
    src = tmp_path / "g.csv"
    row = outbound_row("CK1", remark="复方甘草片（ｘ）")
    src.write_bytes(csv_text([row], tmp_path).encode("gbk"))
    assert rows_of(src, txn, encoding=encoding) == [row]


def test_gb18030_bom_is_not_part_of_the_header(txn, tmp_path):
    src = tmp_path / "g.csv"
    src.write_bytes(("\ufeff" + csv_text([outbound_row("CK1")], tmp_path)).encode("gb18030"))
    assert rows_of(src, txn, encoding="gb18030") == [outbound_row("CK1")]


def test_gbk_csv_without_encoding_is_detected_naming_the_line(txn, tmp_path):
    src = tmp_path / "g.csv"
    rows = [outbound_row(f"CK{i}", hospital_item_name="Amoxicillin", unit="box") for i in range(5)]
    rows.append(outbound_row("CK9", hospital_item_name="Amoxicillin", unit="box", remark="饮片"))
    src.write_bytes(csv_text(rows, tmp_path).encode("gbk"))
    with pytest.raises(SourceDataError) as info:
        iter_file_chunks(src, txn)
    assert str(info.value) == (
        f"{src} is not UTF-8 (undecodable byte 0xd2 at line 7); it reads as GB18030: pass --encoding gb18030"
        " (operator argument encoding='gb18030')"
    )


def test_bytes_that_are_neither_utf8_nor_gb18030(txn, tmp_path):
    src = tmp_path / "b.csv"
    src.write_bytes(csv_text([outbound_row("CK1")], tmp_path).encode("utf-8") + b"CK2,\x80\xff\x80\n")
    with pytest.raises(SourceDataError) as info:
        iter_file_chunks(src, txn)
    assert str(info.value) == (
        f"{src} is not UTF-8 (undecodable byte 0x80 at line 3) nor GB18030: pass its encoding with --encoding"
        " (operator: encoding)"
    )


def test_utf8_file_given_as_gbk_is_refused_not_garbled(txn, tmp_path):
    src = write_csv(tmp_path / "u.csv", [outbound_row("CK1", remark="阿莫西林胶")])
    with pytest.raises(SourceDataError) as info:
        iter_file_chunks(src, txn, encoding="gbk")
    message = str(info.value)
    assert message.startswith(f"{src} ")
    assert "UTF-8" in message
    assert "drop the encoding" in message


def test_utf16_file_is_refused_with_advice(txn, tmp_path):
    src = tmp_path / "w.csv"
    src.write_bytes(csv_text([outbound_row("CK1")], tmp_path).encode("utf-16"))
    with pytest.raises(SourceDataError) as info:
        iter_file_chunks(src, txn)
    assert (
        str(info.value)
        == f"{src} is UTF-16 (Excel's 'Unicode text'): save it as 'CSV UTF-8' or pass its encoding"
    )


@pytest.mark.parametrize(
    ("encoding", "message"),
    [
        ("gbkk", "unknown encoding 'gbkk' (e.g. utf-8, gb18030)"),
        ("utf-16", "encoding 'utf-16' cannot be read as CSV here: save the file as UTF-8 or GB18030"),
    ],
)
def test_unusable_encoding_names_are_refused(txn, tmp_path, encoding, message):
    src = write_csv(tmp_path / "u.csv", [outbound_row("CK1")])
    with pytest.raises(SourceDataError) as info:
        iter_file_chunks(src, txn, encoding=encoding)
    assert str(info.value) == message


HINT = " (an unquoted comma, or a value missing?)"


def _long_csv(tmp_path: Path, rows: int, bad_line: int, bad: str) -> Path:
    lines = csv_text([outbound_row(f"CK{i:05d}") for i in range(rows)], tmp_path).splitlines()
    lines[bad_line - 1] = bad
    src = tmp_path / "long.csv"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return src


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (
            "CK9,XA000001,x,M0001,0,盒,21,12.5,2,2026-11-20 10:00:00,,extra",
            "line 6000 has 12 values where the header has 10 columns" + HINT,
        ),
        (
            "CK9,XA000001,x,M0001,0,盒,21,12.5,2",
            "line 6000 has 9 values where the header has 10 columns" + HINT,
        ),
        (
            'CK9,XA000001,"x"y,M0001,0,盒,21,12.5,2,2026-11-20 10:00:00,',
            "line 6000: malformed CSV (',' expected after '\"')",
        ),
    ],
    ids=["more-cells", "fewer-cells", "bad-quote"],
)
def test_problem_deep_in_the_file_refuses_it_before_a_row_is_yielded(txn, tmp_path, bad, message):
    src = _long_csv(tmp_path, 7000, 6000, bad)
    with pytest.raises(SourceDataError) as info:
        iter_file_chunks(src, txn, chunk_size=100)  # refused before the first chunk exists
    assert str(info.value) == f"{src} {message}"


def test_unclosed_quote_names_the_line_it_opens_on(txn, tmp_path):
    src = _long_csv(tmp_path, 300, 200, 'CK9,XA000001,"x,M0001,0,盒,21,12.5,2,2026-11-20 10:00:00,')
    with pytest.raises(SourceDataError) as info:
        iter_file_chunks(src, txn)
    assert str(info.value) in (
        f"{src} line 200: a quoted value opened there is never closed (malformed CSV)",
        f"{src} line 200: a value longer than 131072 characters (an unclosed quote?)",
    )


def test_undecodable_byte_deep_in_the_file_is_found_first(txn, tmp_path):
    src = _long_csv(tmp_path, 7000, 6500, "CK9,XA000001,x")
    data = src.read_bytes().replace(b"CK9,XA000001,x", b"CK9,XA000001,\xff")
    src.write_bytes(data)
    with pytest.raises(SourceDataError, match=r"undecodable byte 0xff at line 6500"):
        iter_file_chunks(src, txn)


def test_a_line_without_end_is_refused_without_reading_it_whole(txn, tmp_path):
    src = tmp_path / "huge.csv"
    with src.open("wb") as fh:
        fh.write(csv_text([outbound_row("CK1")], tmp_path).encode("utf-8"))
        fh.write(b"x" * (MAX_LINE_BYTES + 10))
    with pytest.raises(SourceDataError) as info:
        iter_file_chunks(src, txn)
    assert str(info.value) == f"{src} line 3 is longer than {MAX_LINE_BYTES} bytes: not a CSV of rows"


def test_file_changed_between_check_and_read_is_refused(txn, tmp_path):
    src = write_csv(tmp_path / "c.csv", [outbound_row("CK1")])
    chunks = iter_file_chunks(src, txn)
    with src.open("a", encoding="utf-8") as fh:
        fh.write("CK2,oops\n")
    with pytest.raises(SourceDataError, match="changed after it was checked"):
        next(chunks)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sheet": "出库"}, "{src}: a sheet applies to Excel files only, not to a CSV"),
    ],
)
def test_options_that_do_not_apply_are_refused(txn, tmp_path, kwargs, message):
    src = write_csv(tmp_path / "o.csv", [outbound_row("CK1")])
    with pytest.raises(SourceDataError) as info:
        iter_file_chunks(src, txn, **kwargs)
    assert str(info.value) == message.format(src=src)
    book = xlsx_rows(tmp_path / "o.xlsx", [outbound_row("CK1")])
    with pytest.raises(SourceDataError, match="an encoding applies to CSV files only"):
        iter_file_chunks(book, txn, encoding="gbk")


# --- Excel ---------------------------------------------------------------------------------------


def test_excel_numbers_in_text_fields_are_exact_integers(txn, tmp_path):
    row = outbound_row("X", serial_no=2026112000012345, mapping_serial_no=1.0, remark=0.1 + 0.2)
    row["quantity"] = 11.000000000000002  # what a formula such as =10*1.1 leaves
    row["sale_price"] = 12.5
    (got,) = rows_of(xlsx_rows(tmp_path / "n.xlsx", [row]), txn)
    assert got["serial_no"] == "2026112000012345"
    assert got["mapping_serial_no"] == "1"
    assert got["remark"] == "0.3"
    wire = row_to_wire(txn, got)
    assert (wire["quantity"], wire["sale_price"]) == ("11", "12.5")


@pytest.mark.parametrize(
    "number", [2**53, 2**53 + 1, 20261120000123456789, 2.0261120000123456e16, -(2.0**60)]
)
def test_excel_number_beyond_float_precision_is_refused_naming_the_cell(txn, tmp_path, number):
    rows = [outbound_row("CK1"), outbound_row("CK2")]
    rows[1]["serial_no"] = number
    src = xlsx_rows(tmp_path / "n.xlsx", rows)
    with pytest.raises(SourceDataError) as info:
        iter_file_chunks(src, txn)
    message = str(info.value)
    assert message.startswith(f"{src} cell A3 (column serial_no) holds the number ")
    assert message.endswith(
        ", longer than Excel keeps exactly (digits are already lost): format the column as text in Excel and"
        " enter the values again"
    )


@pytest.mark.parametrize(
    ("written", "wire"),
    [
        (datetime(2026, 11, 20, 23, 59, 59, 999600), "2026-11-20 23:59:59"),
        (datetime(2026, 11, 20, 10, 0, 59, 999900), "2026-11-20 10:00:59"),
        (datetime(2026, 11, 20, 10, 0, 0, 600000), "2026-11-20 10:00:00"),
        (datetime(2026, 11, 20, 10, 0, 0), "2026-11-20 10:00:00"),
        (datetime(2026, 11, 20, 9, 59, 59), "2026-11-20 09:59:59"),
    ],
)
def test_excel_subsecond_times_are_kept_not_rounded_up(txn, tmp_path, written, wire):
    (got,) = rows_of(xlsx_rows(tmp_path / "t.xlsx", [outbound_row("CK1", event_time=written)]), txn)
    assert abs(got["event_time"] - written).total_seconds() < 1e-6
    assert row_to_wire(txn, got)["event_time"] == wire


def test_excel_formula_without_cached_value_is_named(txn, tmp_path):
    rows = [outbound_row("CK1"), outbound_row("CK2", quantity="=1+1")]  # openpyxl writes it uncalculated
    src = xlsx_rows(tmp_path / "f.xlsx", rows)
    with pytest.raises(SourceDataError) as info:
        iter_file_chunks(src, txn)
    assert str(info.value) == (
        f"{src} cell I3 (column quantity) holds a formula without a calculated value (the workbook was"
        " written by a program that never calculated it): open and save it in Excel, or paste the values"
    )


def test_excel_error_values(txn, tmp_path):
    src = xlsx_rows(tmp_path / "e.xlsx", [outbound_row("CK1", quantity="#DIV/0!")])
    with pytest.raises(SourceDataError) as info:
        iter_file_chunks(src, txn)
    assert str(info.value) == (
        f"{src} cell I2 (column quantity) holds the Excel error #DIV/0!: correct the cell or its formula"
    )
    src = xlsx_rows(tmp_path / "na.xlsx", [outbound_row("CK1", remark="#N/A", lot_no="NULL")])
    (got,) = rows_of(src, txn)
    assert (got["remark"], got["lot_no"]) == (None, None)


def test_excel_with_two_sheets_holding_data_needs_a_sheet_named(txn, tmp_path):
    extra = {"汇总": [["合计", 2]], "空白": []}
    src = xlsx_rows(tmp_path / "s.xlsx", [outbound_row("CK1")], sheets=extra)
    with pytest.raises(SourceDataError) as info:
        iter_file_chunks(src, txn)
    assert str(info.value) == (
        f"{src} has 2 sheets with data ('Sheet', '汇总'): name the one to upload with --sheet"
        " (operator argument sheet)"
    )
    assert rows_of(src, txn, sheet="Sheet") == [outbound_row("CK1")]
    with pytest.raises(SourceDataError) as info:
        iter_file_chunks(src, txn, sheet="出库")
    assert str(info.value) == f"{src} has no sheet named '出库' (sheets: 'Sheet', '汇总', '空白')"
    with pytest.raises(SourceDataError, match=rf"^{src} sheet '汇总' lacks required column"):
        iter_file_chunks(src, txn, sheet="汇总")


def test_excel_only_sheet_with_data_is_read_and_blank_rows_skipped(txn, tmp_path):
    header = list(outbound_row("X"))
    rows = [[], header, list(outbound_row("CK1").values()), [None, "  "], list(outbound_row("CK2").values())]
    src = write_xlsx(tmp_path / "o.xlsx", rows, sheets={"空白": []})
    assert [r["serial_no"] for r in rows_of(src, txn)] == ["CK1", "CK2"]


def test_excel_values_without_a_header_are_warned_about(txn, tmp_path, caplog):
    header = [*outbound_row("X"), None, "his_id"]
    rows = [header, [*outbound_row("CK1").values(), "lost?", 7]]
    src = write_xlsx(tmp_path / "w.xlsx", rows)
    with caplog.at_level(logging.WARNING, logger="cdyb_jxc.upload.sources"):
        assert rows_of(src, txn) == [outbound_row("CK1")]
    assert f"{src}: values in column(s) without a header, ignored: K" in caplog.messages
    assert any("ignored: 'his_id'" in m for m in caplog.messages)


# --- whitespace and null markers (values.py) -----------------------------------------------------


@pytest.mark.parametrize("value", ["", " ", "   ", "\t", "\u3000", " \r\n"])
def test_whitespace_only_is_absent_for_every_field_type(txn, value):
    row = dict.fromkeys(outbound_row("X"), value)
    assert set(row_to_wire(txn, row).values()) == {None}


def test_surrounding_spaces_of_real_values_are_kept(txn):
    wire = row_to_wire(txn, outbound_row(" CK1 ", remark=" x"))
    assert (wire["serial_no"], wire["remark"]) == (" CK1 ", " x")


def test_null_markers_only_through_file_text(txn):
    assert row_to_wire(txn, outbound_row("CK1", remark="NULL"))["remark"] == "NULL"  # SQL text stays text
    assert [file_text(v) for v in ["NULL", "nULL", " None", "\\N", "NULLS", "None of", ""]] == [
        None,
        None,
        None,
        None,
        "NULLS",
        "None of",
        "",
    ]

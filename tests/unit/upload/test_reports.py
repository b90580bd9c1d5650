"""Reject reports from a SQLite ledger in a temp dir: which rows they list, and in which layout."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from openpyxl import load_workbook

from cdyb_jxc.ledger import Ledger, LedgerState
from cdyb_jxc.upload.reports import COLUMNS, SHEET_NAME, SOURCE_ISSUE, write_reject_report
from tests.conftest import INSTITUTION, OTHER_INSTITUTION

S = LedgerState
NOW = datetime(2026, 11, 21, 12, 0, 0)
DAY = "2026-11-20"


@pytest.fixture
def ledger(tmp_path) -> Iterator[Ledger]:
    led = Ledger(f"sqlite:///{tmp_path}/ledger.db")
    yield led
    led.dispose()


def row(serial: str, state: S, **over: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "institution_code": INSTITUTION,
        "serial_no": serial,
        "transaction_code": "JXC003",
        "business_date": DAY,
        "mapping_serial_no": "M0001",
        "item_name": "阿莫西林胶囊",
        "payload_hash": "h",
        "state": state,
        "category": None,
        "field": None,
        "detail": None,
        "attempts": 1,
        "held_back": 0,
        "first_seen_at": NOW,
        "updated_at": NOW,
    }
    values.update(over)
    return values


def issue(row_key: str, detail: str) -> dict[str, Any]:
    return {
        "institution_code": INSTITUTION,
        "transaction_code": "JXC003",
        "business_date": DAY,
        "row_key": row_key,
        "serial_no": None,
        "source_row": 7,
        "category": "字段校验失败",
        "field": "serial_no",
        "detail": detail,
        "seen_at": NOW,
    }


def read_csv(path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


def test_report_lists_the_refused_rows_and_source_issues_of_the_days_asked(ledger, tmp_path):
    ledger.insert_rows(
        [
            row("R1", S.REJECTED, category="字段校验失败", field="quantity", detail="出库数量超出库存"),
            row("C1", S.DUPLICATE_CONFLICT, category="数据重复上传", field="serial_no", detail="已上传"),
            row("A1", S.ACCEPTED),
            row("D1", S.IN_DOUBT),
            row("R2", S.REJECTED, business_date="2026-11-19"),
            row("R3", S.REJECTED, institution_code=OTHER_INSTITUTION),
        ]
    )
    ledger.record_source_issues([issue("#7@0123456789ab", "流水号为空")])

    report = write_reject_report(ledger, INSTITUTION, [DAY], tmp_path / "reports" / "new", "rejects")

    assert report.rows == 3
    assert report.csv_path == tmp_path / "reports" / "new" / "rejects.csv"
    listed = read_csv(report.csv_path)
    by_state = {r[COLUMNS["state"]]: r for r in listed}
    assert set(by_state) == {"REJECTED", "DUPLICATE_CONFLICT", SOURCE_ISSUE}
    rejected = by_state["REJECTED"]
    assert (rejected[COLUMNS["serial_no"]], rejected[COLUMNS["field"]], rejected[COLUMNS["detail"]]) == (
        "R1",
        "quantity",
        "出库数量超出库存",
    )
    unsent = by_state[SOURCE_ISSUE]
    assert (unsent[COLUMNS["detail"]], unsent[COLUMNS["held_back"]], unsent[COLUMNS["attempts"]]) == (
        "流水号为空",
        "1",
        "0",
    )


def test_csv_and_excel_have_the_same_header_and_rows(ledger, tmp_path):
    ledger.insert_rows([row("R1", S.REJECTED, detail='=HYPERLINK("http://x")')])

    report = write_reject_report(ledger, INSTITUTION, [DAY], tmp_path, "r")

    assert report.excel_path is not None
    sheet = load_workbook(report.excel_path, read_only=True)[SHEET_NAME]
    header, *cells = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert header == list(COLUMNS.values())
    assert len(cells) == 1
    assert cells[0][0] == "R1"
    (listed,) = read_csv(report.csv_path)
    assert list(listed) == list(COLUMNS.values())
    assert not listed[COLUMNS["detail"]].startswith("=")  # a reason never runs as a formula


def test_no_refused_rows_writes_no_files(ledger, tmp_path):
    ledger.insert_rows([row("A1", S.ACCEPTED)])

    report = write_reject_report(ledger, INSTITUTION, [DAY], tmp_path / "reports", "rejects")

    assert (report.rows, report.csv_path, report.excel_path) == (0, None, None)
    assert not (tmp_path / "reports").exists()

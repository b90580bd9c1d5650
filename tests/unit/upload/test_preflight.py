"""The preflight report: each transaction's part merged into one CSV and workbook, parts removed."""

from __future__ import annotations

import csv

from cdyb_jxc.upload.preflight import HEADER, part_path, write_part, write_report
from cdyb_jxc.upload.validate import Problem


def test_parts_are_merged_in_transaction_order_and_removed(tmp_path):
    inbound = [Problem(3, "R1", "字段校验失败", "quantity", "=1+1 不是合法的数值")]
    write_part(part_path(tmp_path, "c_2026-11-30", "JXC002"), inbound)
    write_part(part_path(tmp_path, "c_2026-11-30", "JXC003"), [])
    report = write_report(tmp_path, "c_2026-11-30", ["JXC002", "JXC003", "JXC004"], "preflight_H1_2026-11-30")
    assert report.rows == 2
    assert report.excel_path.is_file()
    with report.csv_path.open(encoding="utf-8-sig", newline="") as fh:
        lines = list(csv.reader(fh))
    assert lines[0] == list(HEADER)
    assert lines[1][:4] == ["JXC002", "3", "R1", "字段校验失败"]
    assert "=1+1" in lines[1][5]
    assert not lines[1][5].startswith("=")  # formula-safe: Excel never evaluates it
    assert lines[2][0] == "JXC004"  # no part: its check did not run, and the report says so
    assert "未运行" in lines[2][5]
    assert not list((tmp_path / ".preflight").glob("*.jsonl"))

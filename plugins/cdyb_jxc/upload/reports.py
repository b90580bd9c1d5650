"""Reject reports (CSV and Excel) from the ledger, written by :mod:`cdyb_jxc.safety.spreadsheet`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cdyb_jxc.ledger import ATTENTION_STATES, Ledger
from cdyb_jxc.ledger.schema import source_issue, upload_row
from cdyb_jxc.safety.spreadsheet import write_csv, write_xlsx

SHEET_NAME = "rejects"
# State shown for source rows that were never sent (see :mod:`cdyb_jxc.upload.source_issues`): not a
# ledger state, no ledger row has it.
SOURCE_ISSUE = "SOURCE_ISSUE"

COLUMNS = {
    "serial_no": "流水号 serial_no",
    "transaction_code": "交易 transaction",
    "business_date": "业务日期 business_date",
    "mapping_serial_no": "医院对码流水号 mapping_serial_no",
    "item_name": "医院项目名称 hospital_item_name",
    "field": "字段 field",
    "category": "类别 category",
    "detail": "原因 reason",
    "state": "状态 state",
    "held_back": "本地拦截 held_back",
    "attempts": "发送次数 attempts",
    "updated_at": "更新时间(UTC) updated_at",
}


@dataclass(frozen=True)
class RejectReport:
    """Where a report was written and how many rows it lists."""

    rows: int
    csv_path: Path | None
    excel_path: Path | None


def write_reject_report(
    ledger: Ledger, institution_code: str, business_dates: list[str], folder: str | Path, name: str
) -> RejectReport:
    """Write every rejected or conflicting row of ``business_dates``, and every source row that could not be
    sent (state ``SOURCE_ISSUE``), to ``<folder>/<name>.csv`` and ``.xlsx``.

    :param ledger: the ledger
    :param institution_code: 定点机构编码
    :param business_dates: business days to include
    :param folder: output folder (created if missing)
    :param name: file name stem
    """
    t, i = upload_row.c, source_issue.c
    records = list(
        ledger.iter_rows(
            t.institution_code == institution_code,
            t.business_date.in_(business_dates),
            t.state.in_(sorted(ATTENTION_STATES)),
            columns=list(COLUMNS),
        )
    )
    for issue in ledger.iter_source_issues(
        i.institution_code == institution_code, i.business_date.in_(business_dates)
    ):
        records.append(
            {
                **{k: issue.get(k) for k in COLUMNS},
                "state": SOURCE_ISSUE,
                "held_back": 1,
                "attempts": 0,
                "updated_at": issue["seen_at"],
            }
        )
    if not records:
        return RejectReport(0, None, None)
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, excel_path = out / f"{name}.csv", out / f"{name}.xlsx"
    write_csv(csv_path, list(COLUMNS.values()), report_rows(records))
    write_xlsx(excel_path, list(COLUMNS.values()), report_rows(records), SHEET_NAME)
    return RejectReport(len(records), csv_path, excel_path)


def report_rows(records: list[dict[str, Any]]) -> list[list[Any]]:
    """The values of ``records`` in :data:`COLUMNS` order (the monitor's export uses the same layout).

    :param records: ledger rows as mappings
    """
    return [[record.get(key) for key in COLUMNS] for record in records]

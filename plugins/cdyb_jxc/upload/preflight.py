"""The preflight report: what tomorrow's upload would hold back, written the evening before (no Airflow).

Each transaction's check writes its problems to a part file (JSON lines, in the report folder); the report
merges the parts into ``preflight_<institution>_<day>.csv`` and ``.xlsx`` (formula-safe), one row per
problem with its transaction, and removes them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cdyb_jxc.safety.spreadsheet import write_csv, write_xlsx
from cdyb_jxc.safety.textcap import PART_MAX, cap
from cdyb_jxc.upload.validate import COLUMNS, Problem

HEADER = ("transaction", *COLUMNS)
PARTS = ".preflight"  # the part files' folder, inside the report folder


@dataclass(frozen=True)
class PreflightReport:
    """A written preflight report.

    :param rows: problems listed
    :param csv_path: the CSV file
    :param excel_path: the Excel file
    """

    rows: int
    csv_path: Path
    excel_path: Path


def part_path(report_dir: str | Path, stem: str, transaction_code: str) -> Path:
    """Where one transaction's problems of the report ``stem`` are kept until the report is written."""
    return Path(report_dir) / PARTS / f"{stem}_{transaction_code}.jsonl"


def write_part(path: Path, problems: Iterable[Problem]) -> int:
    """Write ``problems`` (streamed, each text capped) to ``path``; returns how many."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as fh:
        for problem in problems:
            values = [cap(v, PART_MAX) if isinstance(v, str) else v for v in problem.as_row()]
            fh.write(json.dumps(values, ensure_ascii=False) + "\n")
            count += 1
    return count


def write_report(
    report_dir: str | Path, part_stem: str, transaction_codes: Sequence[str], stem: str
) -> PreflightReport:
    """Merge the parts of ``transaction_codes`` (in that order) into the report ``stem``, then remove them.

    A transaction without a part (its check did not run) is listed as one line saying so.

    :param report_dir: the report folder
    :param part_stem: the name the checks gave their parts (:func:`part_path`)
    :param transaction_codes: the transactions checked, in the order the report lists them
    :param stem: the report's file name without extension
    """
    folder = Path(report_dir)
    folder.mkdir(parents=True, exist_ok=True)
    parts = [(code, part_path(folder, part_stem, code)) for code in transaction_codes]
    csv_path, excel_path = folder / f"{stem}.csv", folder / f"{stem}.xlsx"
    counted = [0]
    write_csv(csv_path, HEADER, _counted(_rows(parts), counted))  # streamed: read the parts twice
    write_xlsx(excel_path, HEADER, _rows(parts), "preflight")
    for _, path in parts:
        path.unlink(missing_ok=True)
    return PreflightReport(counted[0], csv_path, excel_path)


def _counted(rows: Iterator[list[object]], counter: list[int]) -> Iterator[list[object]]:
    for row in rows:
        counter[0] += 1
        yield row


def _rows(parts: Sequence[tuple[str, Path]]) -> Iterator[list[object]]:
    for code, path in parts:
        if not path.is_file():
            yield [code, None, None, "源数据问题", None, "本交易的预检未运行(见任务日志)"]
            continue
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                yield [code, *json.loads(line)]

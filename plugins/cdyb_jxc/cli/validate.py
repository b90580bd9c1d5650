"""``cdyb-jxc validate``: check a source file as the upload's hold-back would, sending nothing.

No connection, no ledger, no Airflow. Prints one line per row that would not be sent (text, or CSV with the
columns ``row,serial_no,category,field,detail``). Exit 0 when every row would be sent, 1 when some would be
held back (or the file cannot be read), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from cdyb_jxc.exceptions import CdybJxcError, SourceDataError
from cdyb_jxc.upload.validate import COLUMNS, Problem, Validation, Verdict, file_problem, validate_rows

TRANSACTIONS = ("init", "inbound", "outbound", "stock")
FORMATS = ("text", "csv")


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "validate",
        help="check a source file as the upload would, sending nothing",
        description="Check a source file exactly as the upload's hold-back would (R1, R6, R3 with the "
        "mapping copy, missing or repeated 流水号, unreadable file), without sending anything.",
    )
    p.add_argument("--transaction", required=True, choices=TRANSACTIONS)
    p.add_argument("--file", required=True, help="CSV (UTF-8, header row), Parquet or Excel file")
    p.add_argument("--mapping", default=None, help="CSV copy of the 对码 registry (rows it shows unmapped)")
    p.add_argument("--encoding", default=None, help="text encoding of a CSV, e.g. gb18030")
    p.add_argument("--sheet", default=None, help="Excel sheet (default: the only sheet holding data)")
    p.add_argument("--profile", default=None, help="interface profile TOML (default: $CDYB_JXC_PROFILE)")
    p.add_argument("--format", choices=FORMATS, default="text", help="text (default) or csv")
    p.set_defaults(func=run_validate)


def run_validate(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    for given, what in ((args.file, "--file"), (args.mapping, "--mapping")):
        if given is not None and not Path(given).is_file():
            print(f"cdyb-jxc validate: {what} {given}: no such file", file=sys.stderr)
            return Verdict.USAGE
    try:
        profile, registry = _setup(args)
    except CdybJxcError as err:  # a profile or mapping file that cannot be used: the call was wrong
        print(f"cdyb-jxc validate: {err}", file=sys.stderr)
        return Verdict.USAGE
    counts = Validation()
    write = _csv_writer(out) if args.format == "csv" else _text_writer(out)
    from cdyb_jxc.upload.sources import iter_file_chunks

    try:  # the whole-file check runs here, before any row is read
        chunks = iter_file_chunks(
            args.file, profile.transaction(args.transaction), sheet=args.sheet, encoding=args.encoding
        )
    except SourceDataError as err:
        chunks = iter(())
        counts.problems += 1
        write(file_problem(str(err)))
    for problem in validate_rows(profile, args.transaction, chunks, registry=registry, counts=counts):
        write(problem)
    if args.format == "text":
        sent = counts.rows - counts.problems if counts.rows else 0
        print(f"{counts.rows} rows read, {sent} would be sent, {counts.problems} problem(s)", file=out)
    return counts.verdict


def _setup(args: argparse.Namespace) -> tuple[Any, Any]:
    from cdyb_jxc.config import resolve_profile
    from cdyb_jxc.upload.registry import load_registry

    profile = resolve_profile(args.profile)
    return profile, load_registry(args.mapping) if args.mapping else None


def _csv_writer(out: TextIO) -> Any:
    import csv

    from cdyb_jxc.safety.spreadsheet import csv_cell

    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    return lambda problem: writer.writerow([csv_cell("" if v is None else v) for v in problem.as_row()])


def _text_writer(out: TextIO) -> Any:
    def write(problem: Problem) -> None:
        where = f"第{problem.row}行" if problem.row is not None else "文件"
        serial = f" 流水号 {problem.serial_no}" if problem.serial_no else ""
        field = f" {problem.field}:" if problem.field else ""
        print(f"{where}{serial}: 【{problem.category}】{field} {problem.detail}", file=out)

    return write

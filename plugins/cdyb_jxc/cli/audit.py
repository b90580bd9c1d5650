"""``cdyb-jxc audit``: what an inspection by the bureau looks at, from the ledger (no Airflow).

``audit balance`` prints, per business day and item, ``business_date,mapping_serial_no,opening,inbound,
outbound,closing,difference,status`` (see :mod:`cdyb_jxc.upload.balance`); exit 0 when no row is
``imbalance``, 1 when one is, 2 for a usage error. ``audit export`` writes a day's evidence pack (see
:mod:`cdyb_jxc.upload.evidence`); exit 0, or 2 for a usage error.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, TextIO

from cdyb_jxc.exceptions import CdybJxcError

EXIT_OK, EXIT_IMBALANCE, EXIT_USAGE = 0, 1, 2


def add_parser(sub: Any) -> None:
    audit = sub.add_parser("audit", help="audits of a ledger: the 进销存平衡 balance, the evidence pack")
    which = audit.add_subparsers(dest="audit", required=True)
    p = which.add_parser(
        "balance",
        help="per day and item: opening + inbound - outbound against the closing stock",
        description="Per business day and item, the stock of D-1 plus D's accepted inbound minus outbound, "
        "against D's stock (quantities in packages), from the rows the centre accepted.",
    )
    _ledger_arguments(p)
    p.add_argument("--from", dest="first", required=True, metavar="D1", help="first business day YYYY-MM-DD")
    p.add_argument("--to", dest="last", required=True, metavar="D2", help="last business day YYYY-MM-DD")
    p.add_argument("--mapping", default=None, help="对码 CSV copy (its 院外配送 items are reported as such)")
    p.add_argument("--tolerance", type=float, default=None, help="largest difference still ok (0.0001)")
    p.add_argument("--format", choices=("text", "csv"), default="text")
    p.add_argument(
        "--source",
        action="store_true",
        help="sum every row the source gave, whatever the centre answered (what the HIS itself says)",
    )
    p.set_defaults(func=run_balance)
    e = which.add_parser(
        "export",
        help="the evidence pack of one business day (requests, replies, manifest) for an inspection",
        description="A zip with every request and reply that carried the day's rows (验证码 redacted), "
        "a manifest CSV (流水号, state, batch, sent/answered times, sha256 of each file) and a summary.",
    )
    _ledger_arguments(e)
    e.add_argument("--day", required=True, help="business day YYYY-MM-DD")
    e.add_argument("--out", required=True, help="folder for evidence_<institution>_<day>.zip")
    e.add_argument("--profile", default=None, help="interface profile TOML (default: $CDYB_JXC_PROFILE)")
    e.set_defaults(func=run_export)


def _usage(command: str, message: str) -> int:
    """Say what is wrong with the command line; the usage exit status."""
    print(f"cdyb-jxc audit {command}: {message}", file=sys.stderr)
    return EXIT_USAGE


def _ledger_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ledger", required=True, help="SQLAlchemy URL of the ledger")
    parser.add_argument("--institution", required=True, help="定点机构编码")


def run_balance(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from cdyb_jxc.config import iso_day
    from cdyb_jxc.upload.balance import DEFAULT_TOLERANCE

    out = out or sys.stdout
    try:
        first, last = iso_day(args.first), iso_day(args.last)
    except ValueError:
        return _usage("balance", "--from and --to must be dates written YYYY-MM-DD")
    tolerance = DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance
    if first > last or tolerance < 0:
        return _usage("balance", "--from after --to, or a negative --tolerance")
    if _missing_sqlite(args.ledger):
        return _usage("balance", f"--ledger {args.ledger}: no such ledger file")
    try:
        return _print_balance(args, first, last, tolerance, out)
    except CdybJxcError as err:
        return _usage("balance", str(err))


def run_export(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from cdyb_jxc.config import iso_day, resolve_profile
    from cdyb_jxc.ledger import Ledger
    from cdyb_jxc.upload.evidence import export_evidence

    out = out or sys.stdout
    try:
        day = iso_day(args.day)
    except ValueError:
        return _usage("export", "--day must be a date written YYYY-MM-DD")
    if _missing_sqlite(args.ledger):
        return _usage("export", f"--ledger {args.ledger}: no such ledger file")
    try:
        profile = resolve_profile(args.profile)
        ledger = Ledger(args.ledger)
        try:
            pack = export_evidence(ledger, profile, args.institution, day, args.out)
        finally:
            ledger.dispose()
    except CdybJxcError as err:
        return _usage("export", str(err))
    print(f"{pack.path}: {pack.rows} rows of {day}, {pack.batches} batches", file=out)
    return EXIT_OK


def _print_balance(args: argparse.Namespace, first: str, last: str, tolerance: float, out: TextIO) -> int:
    from cdyb_jxc.ledger import Ledger
    from cdyb_jxc.upload.balance import COLUMNS, BalanceStatus, audit_balance, plain
    from cdyb_jxc.upload.registry import load_registry

    registry = load_registry(args.mapping) if args.mapping else None
    ledger = Ledger(args.ledger)
    write = _csv(out) if args.format == "csv" else _text(out)
    counts = dict.fromkeys(BalanceStatus, 0)
    try:
        rows = audit_balance(
            ledger,
            args.institution,
            first,
            last,
            registry=registry,
            tolerance=tolerance,
            accepted_only=not args.source,
        )
        write(COLUMNS)
        for row in rows:
            counts[row.status] += 1
            write([plain(v) for v in row.as_row()])
    finally:
        ledger.dispose()
    if args.format == "text":
        print(", ".join(f"{status}: {n}" for status, n in counts.items()), file=out)
    return EXIT_IMBALANCE if counts[BalanceStatus.IMBALANCE] else EXIT_OK


def _missing_sqlite(url: str) -> bool:
    """Whether ``url`` names a SQLite file that does not exist (an audit never creates a ledger)."""
    from pathlib import Path

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return False  # the ledger names the problem when it opens
    database = parsed.database or ""
    memory = database in ("", ":memory:") or database.startswith("file:")
    return parsed.get_backend_name() == "sqlite" and not memory and not Path(database).is_file()


def _csv(out: TextIO) -> Any:
    import csv

    writer = csv.writer(out, lineterminator="\n")
    return writer.writerow


def _text(out: TextIO) -> Any:
    return lambda cells: print("  ".join(str(c) for c in cells), file=out)

"""Benchmark of the 进销存平衡 audit on a year of a large hospital (issue 14's target: one month's report in
under 5 s on a ~20M-row PostgreSQL ledger).

The script creates a PostgreSQL database of its own, lets :class:`~cdyb_jxc.ledger.Ledger` create the ledger
tables, bulk-loads them in the database itself (``INSERT … SELECT`` over ``generate_series``, the secondary
indexes dropped during the load and built again after, then ``ANALYZE``), and times, side by side in one run:

- ``cdyb-jxc audit balance`` for the last month (31 business days, text output to a file), as a user runs
  it (a whole process: start-up and imports included);
- :func:`~cdyb_jxc.upload.balance.audit_balance` for the same month in this process (the query and the
  combination of the groups), and for one day;
- :func:`~cdyb_jxc.upload.balance.write_balance_report` for the last day (the daily DAG's ``audit_balance``
  task: both audits and the CSV + Excel files).

The year: ``--days`` business days ending yesterday, ``--items`` drugs, per day one JXC004 stock row per item,
``--inbound`` JXC002 rows and the rest of ``--rows`` ÷ ``--days`` as JXC003 outbound rows, every row
ACCEPTED, quantities in packages; a JXC001 initialization the day before the first. Each timing is the
median (and max) of ``--repeat`` runs after one warm-up; the row count, the load time and the rows the
month's audit returned are printed too, and the exit status is 1 when the audit returns no rows.

Run: ``cd /work/main && .venv/bin/python bench/bench_balance_audit.py`` (20M rows: about 5 to 10 minutes
to load on a 2-CPU host, then seconds). ``--rows 2000000`` for a quick run; ``--url`` names an existing
empty database instead (it is then kept); ``--keep`` keeps the created one.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = os.environ.get("CDYB_JXC_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
INSTITUTION = "H51010400001"
TARGET_SECONDS = 5.0

_INSERT = """
INSERT INTO cdyb_jxc_upload_row (
    institution_code, serial_no, transaction_code, business_date, mapping_serial_no, item_name,
    payload_hash, sent_hash, state, attempts, held_back, first_seen_at, last_sent_at, accepted_at,
    updated_at, late_seconds, run_token, quantity_packages)
SELECT :inst, :prefix || d || '-' || n, :code, to_char(CAST(:first AS date) + d, 'YYYY-MM-DD'),
       'M' || lpad((({item}) % :items + 1)::text, 5, '0'), '阿莫西林胶囊',
       md5(:prefix || d || '-' || n), md5(:prefix || d || '-' || n), 'ACCEPTED', 1, 0,
       CAST(:first AS timestamp) + d * interval '1 day',
       CAST(:first AS timestamp) + (d + 1) * interval '1 day',
       CAST(:first AS timestamp) + (d + 1) * interval '1 day',
       CAST(:first AS timestamp) + (d + 1) * interval '1 day',
       -3600, 'bench', {quantity}
FROM generate_series(:d0, :d1) AS d, generate_series(1, :per_day) AS n
"""


def load(url: str, args: argparse.Namespace) -> tuple[int, float, str, str]:
    """Fill the ledger at ``url``; returns (rows, seconds, first day, last day)."""
    from cdyb_jxc.ledger import Ledger
    from cdyb_jxc.ledger.schema import upload_row

    ledger = Ledger(url)  # the product's own tables and indexes
    ledger.dispose()
    engine = create_engine(url)
    last = date.today() - timedelta(days=1)
    first = last - timedelta(days=args.days - 1)
    outbound = max(1, args.rows // args.days - args.items - args.inbound)
    kinds = [  # code, prefix, rows per day, item of row n, quantity
        ("JXC004", "K", args.items, "n - 1", "100 + (n % 7)"),
        ("JXC002", "R", args.inbound, "n * 7", "10"),
        ("JXC003", "C", outbound, "n * 13 + d", "1 + (n % 3)"),
    ]
    started = time.perf_counter()
    with engine.begin() as conn:
        for index in upload_row.indexes:
            conn.execute(text(f"DROP INDEX IF EXISTS {index.name}"))
        base = {"inst": INSTITUTION, "first": first.isoformat(), "items": args.items}
        init = _INSERT.format(item="n - 1", quantity="100")
        conn.execute(
            text(init), {**base, "code": "JXC001", "prefix": "I", "d0": -1, "d1": -1, "per_day": args.items}
        )
        for code, prefix, per_day, item, quantity in kinds:
            for d0 in range(0, args.days, 30):  # a month per statement: progress, bounded transactions
                params = {**base, "code": code, "prefix": prefix, "per_day": per_day}
                params.update(d0=d0, d1=min(d0 + 29, args.days - 1))
                conn.execute(text(_INSERT.format(item=item, quantity=quantity)), params)
            print(
                f"  {code}: {per_day:,} rows a day loaded ({time.perf_counter() - started:.0f} s)", flush=True
            )
    for index in upload_row.indexes:
        index.create(engine)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE cdyb_jxc_upload_row"))
        rows = int(conn.execute(text("SELECT count(*) FROM cdyb_jxc_upload_row")).scalar() or 0)
    engine.dispose()
    return rows, time.perf_counter() - started, first.isoformat(), last.isoformat()


def timed(what: Callable[[], object], repeat: int) -> tuple[float, float, object]:
    """(median seconds, max seconds, last result) of ``repeat`` runs after one warm-up."""
    result = what()
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = what()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), max(seconds), result


def measure(url: str, first: str, last: str, repeat: int) -> list[tuple[str, float, float, str]]:
    from cdyb_jxc.ledger import Ledger
    from cdyb_jxc.upload.balance import audit_balance, write_balance_report

    ledger = Ledger(url)
    month_first = (date.fromisoformat(last) - timedelta(days=30)).isoformat()
    reports = Path(tempfile.mkdtemp(prefix="cdyb_jxc_balance_"))
    out = reports / "month.txt"
    cli = [
        sys.executable,
        "-m",
        "cdyb_jxc",
        "audit",
        "balance",
        "--ledger",
        url,
        "--institution",
        INSTITUTION,
    ]
    cli += ["--from", month_first, "--to", last]

    def run_cli() -> int:
        with out.open("w", encoding="utf-8") as fh:
            return subprocess.run(cli, stdout=fh, stderr=subprocess.PIPE, check=False).returncode

    results = []
    med, top, rc = timed(run_cli, repeat)
    lines = len(out.read_text(encoding="utf-8").splitlines())
    results.append(("cdyb-jxc audit balance, one month (process)", med, top, f"exit {rc}, {lines:,} lines"))
    med, top, rows = timed(lambda: list(audit_balance(ledger, INSTITUTION, month_first, last)), repeat)
    month_rows = len(rows)  # type: ignore[arg-type]
    results.append(("audit_balance, one month (in process)", med, top, f"{month_rows:,} item-days"))
    med, top, rows = timed(lambda: list(audit_balance(ledger, INSTITUTION, last, last)), repeat)
    results.append(("audit_balance, one day", med, top, f"{len(rows):,} items"))  # type: ignore[arg-type]
    med, top, report = timed(lambda: write_balance_report(ledger, INSTITUTION, last, reports), repeat)
    results.append(("write_balance_report, one day (CSV + Excel)", med, top, f"{report.items:,} items"))  # type: ignore[attr-defined]
    ledger.dispose()
    if month_rows == 0 or rc not in (0, 1):
        raise SystemExit(f"the audit returned nothing (exit {rc}): see {out}")
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000_000, help="ledger rows to load (about)")
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--items", type=int, default=2_500)
    parser.add_argument("--inbound", type=int, default=600, help="JXC002 rows a day")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--url", help="an existing empty PostgreSQL database (kept)")
    parser.add_argument("--keep", action="store_true", help="keep the database this run creates")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "plugins"))
    name, admin = None, None
    url = args.url
    if url is None:
        name = f"cdyb_jxc_balance_{uuid.uuid4().hex[:8]}"
        admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        print(f"loading about {args.rows:,} rows into {url} …", flush=True)
        rows, seconds, first, last = load(url, args)
        print(f"loaded {rows:,} rows ({first} … {last}) in {seconds:.0f} s\n", flush=True)
        results = measure(url, first, last, args.repeat)
    finally:
        if admin is not None and not args.keep:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
    print(f"{'measure':<48}{'median s':>10}{'max s':>9}  result")
    for label, med, top, note in results:
        print(f"{label:<48}{med:>10.2f}{top:>9.2f}  {note}")
    month = results[0][1]
    verdict = "meets" if month < TARGET_SECONDS else "misses"
    print(
        f"\none month's report: {month:.2f} s on {rows:,} rows, {verdict} the {TARGET_SECONDS:.0f} s target"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

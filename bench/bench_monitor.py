"""Benchmark of the upload monitor's queries on a year of a large hospital (issue 15's target: every API route
answers in ≤ 300 ms p95 on a 20M-row PostgreSQL ledger and on a 2M-row SQLite ledger).

For each ledger the script lets :class:`~cdyb_jxc.ledger.Ledger` create the tables, bulk-loads them in the
database itself (``INSERT … SELECT`` over generated days × rows; the secondary indexes dropped during the load
and built again after, then ``ANALYZE``), and calls each route's query function as the route calls it
(:mod:`cdyb_jxc.ui.queries`), ``--repeat`` times after one warm-up, printing p50 and p95 per route.

The day counts the monitor reads (``cdyb_jxc_day_count``) are then counted from the rows once, as for a
ledger of an earlier version.

The year: ``--days`` business days ending yesterday; per day ~52k JXC003, 600 JXC002 and 2,500 JXC004 rows
(scaled to ``--rows``); 97% ACCEPTED (5% of them late, 5% on their own day), 1.5% REJECTED with a reason,
0.5% each DUPLICATE_CONFLICT, IN_DOUBT and PENDING; one audit row per 100 rows, every row of day D written by
the run ``scheduled__D`` of ``cdyb_jxc_daily``; a few source issues a day.

Run: ``cd /work/main && .venv/bin/python bench/bench_monitor.py`` (PostgreSQL 20M and SQLite 2M: about 10
minutes to load on a 2-CPU host). ``--pg-rows`` / ``--sqlite-rows`` set the sizes (0 skips that ledger).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, text

ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = os.environ.get("CDYB_JXC_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
INSTITUTION = "H51010400001"
TARGET_MS = 300.0

# dialect pieces: the rows of days d0..d1 × 1..n, a day as text, a time on day d
_FROM = {
    "postgresql": "FROM generate_series(:d0, :d1) AS g(d), generate_series(1, :n) AS h(n)",
    "sqlite": (
        "FROM (WITH RECURSIVE g(d) AS (SELECT :d0 UNION ALL SELECT d + 1 FROM g WHERE d < :d1)"
        " SELECT d FROM g), (WITH RECURSIVE h(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM h WHERE n < :n)"
        " SELECT n FROM h)"
    ),
}
_DAY = {
    "postgresql": "to_char(CAST(:first AS date) + d, 'YYYY-MM-DD')",
    "sqlite": "date(:first, '+' || d || ' days')",
}
_AT = {
    "postgresql": "CAST(:first AS timestamp) + (d + 1) * interval '1 day'",
    "sqlite": "datetime(:first, '+' || (d + 1) || ' days')",
}
_STATE = (
    "CASE WHEN n % 200 < 3 THEN 'REJECTED' WHEN n % 200 = 3 THEN 'DUPLICATE_CONFLICT' WHEN n % 200 = 4 THEN"
    " 'IN_DOUBT' WHEN n % 200 = 5 THEN 'PENDING' ELSE 'ACCEPTED' END"
)
_ROWS = """
INSERT INTO cdyb_jxc_upload_row (
    institution_code, serial_no, transaction_code, business_date, mapping_serial_no, item_name, payload_hash,
    sent_hash, state, category, field, detail, attempts, held_back, first_seen_at, last_sent_at, accepted_at,
    updated_at, late_seconds, last_batch_id, run_token, dag_id, run_id, quantity_packages)
SELECT :inst, :prefix || d || '-' || n, :code, {day}, 'M' || (n % 2500 + 1), '阿莫西林胶囊', :prefix || n,
    :prefix || n, {state},
    CASE WHEN n % 200 < 3 THEN '字段校验失败' END, CASE WHEN n % 200 < 3 THEN 'quantity' END,
    CASE WHEN n % 200 < 3 THEN '数量(akc226)必须大于0' END,
    1, 0, {at}, {at}, CASE WHEN n % 200 > 5 THEN {at} END, {at},
    CASE WHEN n % 200 > 5 THEN
        (CASE WHEN n % 20 = 0 THEN 7200 WHEN n % 20 = 1 THEN -90000 ELSE -3600 END) END,
    :batch0 + d * :batches + n / 100, 'tok-' || d, 'cdyb_jxc_daily', 'scheduled__' || {day}, 1
{frm}
"""
_BATCHES = """
INSERT INTO cdyb_jxc_upload_batch (institution_code, transaction_code, run_token, dag_id, run_id, task_id,
    row_count, started_at, finished_at, duration_ms, outcome, retcode, retmsg, succnum, failnum)
SELECT :inst, 'JXC003', 'tok-' || d, 'cdyb_jxc_daily', 'scheduled__' || {day}, 'upload_outbound', 100,
    {at}, {at}, 120, 'partial', '1', '成功', 97, 3
{frm}
"""
_ISSUES = """
INSERT INTO cdyb_jxc_source_issue (institution_code, transaction_code, business_date, row_key, serial_no,
    source_row, category, field, detail, run_token, dag_id, run_id, seen_at)
SELECT :inst, 'JXC003', {day}, 'DUP' || d || '-' || n || '#1@000000000000', 'DUP' || d || '-' || n, n,
    '源数据问题', 'serial_no', '流水号在源数据中重复', 'tok-' || d, 'cdyb_jxc_daily',
    'scheduled__' || {day}, {at}
{frm}
"""


def load(engine: Engine, rows: int, days: int) -> tuple[str, float]:
    """Fill the ledger; returns (last business day, seconds)."""
    from cdyb_jxc.ledger import Ledger, rollup
    from cdyb_jxc.ledger.schema import metadata

    Ledger(engine=engine)  # the product's own tables and indexes
    name = engine.dialect.name
    last = date.today() - timedelta(days=1)
    first = (last - timedelta(days=days - 1)).isoformat()
    per_day = max(1, rows // days)
    kinds = [
        ("JXC004", "K", max(1, per_day * 2500 // 55100)),
        ("JXC002", "R", max(1, per_day * 600 // 55100)),
    ]
    kinds.append(("JXC003", "C", per_day - kinds[0][2] - kinds[1][2]))
    pieces = {"day": _DAY[name], "at": _AT[name], "frm": _FROM[name], "state": _STATE}
    started = time.perf_counter()
    indexes = [ix for table in metadata.sorted_tables for ix in table.indexes]
    with engine.begin() as conn:
        for index in indexes:
            conn.execute(text(f"DROP INDEX IF EXISTS {index.name}"))
    batch0 = 1
    for code, prefix, n in kinds:
        batches = n // 100 + 1
        for d0 in range(0, days, 30):
            params = {"inst": INSTITUTION, "first": first, "code": code, "prefix": prefix, "n": n}
            params.update(d0=d0, d1=min(d0 + 29, days - 1), batch0=batch0, batches=batches)
            with engine.begin() as conn:
                conn.execute(text(_ROWS.format(**pieces)), params)
                conn.execute(text(_BATCHES.format(**pieces)), {**params, "n": batches})
        batch0 += days * batches
        print(f"  {code}: {n:,} rows a day ({time.perf_counter() - started:.0f} s)", flush=True)
    with engine.begin() as conn:
        conn.execute(
            text(_ISSUES.format(**pieces)),
            {"inst": INSTITUTION, "first": first, "n": 5, "d0": 0, "d1": days - 1},
        )
    for index in indexes:
        index.create(engine)
    with engine.begin() as conn:
        # rows written around the ledger's API: counted as a ledger of an earlier version is when opened
        rollup.rebuild(conn)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE" if name == "postgresql" else "ANALYZE"))
    return last.isoformat(), time.perf_counter() - started


def routes(last: str) -> dict[str, Callable[[Engine], Any]]:
    """Each API route's query, called as the route calls it."""
    from cdyb_jxc.ui import drilldown, queries, rejects

    today = date.fromisoformat(last) + timedelta(days=1)
    day = (today - timedelta(days=3)).isoformat()
    one = (INSTITUTION,)
    return {
        "api/summary": lambda e: queries.summary(e, today),
        "api/calendar?days=31": lambda e: queries.calendar(e, 31, today),
        "api/calendar?days=90": lambda e: queries.calendar(e, 90, today),
        "api/trend?days=31": lambda e: queries.trend(e, 31, today),
        "api/rejects": lambda e: rejects.rejects(e, limit=200),
        "api/rejects?day=D": lambda e: rejects.rejects(e, limit=200, day=day),
        "api/queues": lambda e: queries.queues(e),
        "api/run": lambda e: queries.run_view(e, "cdyb_jxc_daily", f"scheduled__{day}"),
        "api/balance?day=D": lambda e: queries.balance(e, date.fromisoformat(day)),
        "api/day?day=D&JXC003": lambda e: drilldown.day_detail(e, date.fromisoformat(day), "JXC003"),
        # the page asks for 90 days, and for one institution once a user chooses it (or may see only some)
        "api/institutions": lambda e: queries.institution_codes(e),
        "api/summary?institution=I": lambda e: queries.summary(e, today, institutions=one),
        "api/calendar?days=90&institution=I": lambda e: queries.calendar(e, 90, today, institutions=one),
        "api/trend?days=90&institution=I": lambda e: queries.trend(e, 90, today, institutions=one),
        "api/rejects?institution=I": lambda e: rejects.rejects(e, limit=50, institutions=one),
        "api/queues?institution=I": lambda e: queries.queues(e, institutions=one),
        "api/day?day=D&JXC003&institution=I": lambda e: drilldown.day_detail(
            e, date.fromisoformat(day), "JXC003", institutions=one
        ),
    }


def measure(engine: Engine, last: str, repeat: int) -> list[tuple[str, float, float]]:
    out = []
    for name, query in routes(last).items():
        query(engine)  # warm-up
        ms = []
        for _ in range(repeat):
            started = time.perf_counter()
            query(engine)
            ms.append((time.perf_counter() - started) * 1000)
        ms.sort()
        p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
        out.append((name, statistics.median(ms), p95))
    return out


def run(label: str, url: str, rows: int, args: argparse.Namespace) -> list[tuple[str, float, float]]:
    engine = create_engine(url)
    try:
        print(f"{label}: loading about {rows:,} rows …", flush=True)
        last, seconds = load(engine, rows, args.days)
        with engine.connect() as conn:
            count = int(conn.execute(text("SELECT count(*) FROM cdyb_jxc_upload_row")).scalar() or 0)
        print(f"{label}: {count:,} rows loaded in {seconds:.0f} s", flush=True)
        return measure(engine, last, args.repeat)
    finally:
        engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg-rows", type=int, default=20_000_000)
    parser.add_argument("--sqlite-rows", type=int, default=2_000_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "plugins"))
    results: dict[str, list[tuple[str, float, float]]] = {}
    if args.sqlite_rows:
        folder = Path(tempfile.mkdtemp(prefix="cdyb_jxc_monitor_"))
        results[f"SQLite {args.sqlite_rows:,}"] = run(
            "SQLite", f"sqlite:///{folder / 'ledger.db'}", args.sqlite_rows, args
        )
    if args.pg_rows:
        name = f"cdyb_jxc_monitor_{uuid.uuid4().hex[:8]}"
        admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
            results[f"PostgreSQL {args.pg_rows:,}"] = run("PostgreSQL", url, args.pg_rows, args)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
    print(f"\n{'route':<36}" + "".join(f"{label + ' p50/p95 ms':>34}" for label in results))
    names = [name for name, _, _ in next(iter(results.values()))] if results else []
    worst = 0.0
    for i, name in enumerate(names):
        cells = []
        for values in results.values():
            _, p50, p95 = values[i]
            worst = max(worst, p95)
            cells.append(f"{p50:>16.1f} / {p95:<8.1f}{'✓' if p95 <= TARGET_MS else '✗':>7}")
        print(f"{name:<36}" + "".join(f"{c:>34}" for c in cells))
    print(f"\nslowest p95: {worst:.0f} ms (target ≤ {TARGET_MS:.0f} ms per route)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""End-to-end benchmark (issue 12): the product's upload beside a bare reference client, same simulator.

One freshly seeded simulator (``cdyb-jxc simulator seed`` + ``serve``, its own process) serves every run; each
run uploads its own generated outbound CSV (its own 流水号 prefix, so every row is new to the centre) and must
end with every row accepted (the simulator's stored-row count is checked after each run). Measures:

a. whole-process rows/s, 20k rows: ``python -m cdyb_jxc upload`` (connection in AIRFLOW_CONN_*, a fresh
   SQLite ledger, the CLI's default requests in flight) vs the bare client as a process
   (``bench_end_to_end.py --bare-client``), spawn to exit; CPU seconds of each from :func:`os.wait4`;
b. in-process rows/s: the product's :class:`Uploader` with a real ``CentreClient`` (no hook, no Airflow),
   CSV read included, imports not, vs :func:`bare_upload` in this process;
c. with the simulator at ``latency=0.05``: the span first request → last reply for K = 1, 2, 4 requests in
   flight, ÷ the ideal ``calls × 0.05 ÷ K``. For the CLI the span comes from its ledger (earliest
   ``started_at`` to latest ``finished_at`` of cdyb_jxc_upload_batch: it also holds each batch's ledger
   writes); for the bare client from its own clock. A CLI without ``--max-in-flight`` runs K = 1 only;
d. peak RSS of the CLI (``ru_maxrss`` from :func:`os.wait4`) for 20k rows and for ``--rss-rows`` rows;
e. cost growth with ledger size: the CLI's rows/s for 20k rows into a ledger pre-filled with 200k accepted
   rows (copied from a template filled through ``Ledger.insert_rows``) ÷ the same into an empty ledger (a).

(a), (b) and (e) run ``--repeat`` rounds, interleaved, and so does (c) for each K (the CLI, then the bare
client); each ratio is the median of the rounds' ratios (a round's runs are close in time, so drift of the
host cancels), each round's own ratio is listed under it (their spread is the host's noise), the rates shown
the median of each side; the pre-filled ledger of (e) is copied and flushed to disk before its run. The bare
client is the csv module, f-string XML (tag names read once from the packaged profile TOML) and one
``requests.Session`` per request in flight, 100-row requests, no ledger; it checks every reply's retcode and
succnum. Prints a table with each figure and the issue's target; a missed target does not change the exit
status, which is 1 only when a run did not upload every row (its figures would mean nothing).
Run: ``.venv/bin/python bench/bench_end_to_end.py``.
"""

from __future__ import annotations

import argparse
import csv
import gc
import importlib
import json
import os
import re
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
import tomllib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from itertools import islice
from pathlib import Path
from typing import Any

import _bench_common as bc
import requests

HERE = Path(__file__).resolve()
ROWS, BATCH, LATENCY, KS, PREFILL = 20_000, 100, 0.05, (1, 2, 4), 200_000
HEADERS = {"Content-Type": "text/xml; charset=UTF-8", "SOAPAction": '""'}
_SPECIAL = re.compile("[&<>]")


# -- the bare reference client ------------------------------------------------------------------------------


class BareRequests:
    """Request bodies and reply checks, every tag name read once from the profile TOML."""

    def __init__(self, header: list[str], txn_key: str = "outbound") -> None:
        prof = tomllib.loads(bc.PROFILE_TOML.read_text(encoding="utf-8"))
        svc, req, txn = prof["service"], prof["request"], prof["transactions"][txn_key]
        tags = req["control_tags"]
        where = {name: i for i, name in enumerate(header)}
        self.fields = [
            (prof["fields"][f["name"]]["tag"], where[f["name"]]) for f in txn["fields"] if f["name"] in where
        ]
        control = [(tags["transaction_code"], txn["code"]), (tags["user"], bc.USER)]
        control += [(tags["verification_code"], bc.SECRET), (tags["institution_code"], bc.INSTITUTION)]
        self.head = (
            f'<?xml version="1.0" encoding="{svc["inner_encoding"]}"?>\n<{req["root"]}><{req["control"]}>'
        )
        self.head += "".join(f"<{t}>{v}</{t}>" for t, v in control) + f"<{tags['row_count']}>"
        self.mid = f"</{tags['row_count']}></{req['control']}><{req['data']}>"
        self.tail = f"</{req['data']}></{req['root']}>"
        self.row_open, self.row_close = f"<{req['row']}>", f"</{req['row']}>"
        ns, op, part = svc["namespace"], svc["operation"], svc["input_part"]
        self.env_head = (
            '<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/'
            f'envelope/"><soap:Body><ns2:{op} xmlns:ns2="{ns}"><{part}>'
        )
        self.env_tail = f"</{part}></ns2:{op}></soap:Body></soap:Envelope>"
        rep = prof["reply"]
        self.success = prof["return_codes"]["success"]
        self.retcode = re.compile(f"&lt;{rep['retcode']}&gt;([^&]*)&lt;/{rep['retcode']}&gt;".encode())
        self.succnum = re.compile(f"&lt;{rep['succnum']}&gt;([^&]*)&lt;/{rep['succnum']}&gt;".encode())

    def body(self, rows: list[list[str]]) -> bytes:
        parts = [self.head, str(len(rows)), self.mid]
        for row in rows:
            parts.append(self.row_open)
            for tag, i in self.fields:
                if value := row[i]:
                    if _SPECIAL.search(value):
                        value = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
                    parts.append(f"<{tag}>{value}</{tag}>")
            parts.append(self.row_close)
        parts.append(self.tail)
        inner = "".join(parts).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        return (self.env_head + inner + self.env_tail).encode("utf-8")

    def accepted(self, status: int, content: bytes, rows: int) -> bool:
        """HTTP 200 and a ``return`` saying success for every row sent (retcode and succnum)."""
        code, succ = self.retcode.search(content), self.succnum.search(content)
        if status != 200 or code is None or succ is None:
            return False
        return code[1].decode().strip() == self.success and succ[1].strip() == str(rows).encode()


def bare_upload(source: Path, endpoint: str, in_flight: int = 1) -> dict[str, Any]:
    """Upload ``source`` with up to ``in_flight`` requests out at once (each worker its own Session)."""
    started = time.perf_counter()
    local, sessions, spans = threading.local(), [], []
    failed = calls = rows = 0

    def post(body: bytes, n: int) -> tuple[float, float, bool]:
        if not hasattr(local, "session"):
            local.session = requests.Session()
            sessions.append(local.session)
        t0 = time.perf_counter()
        resp = local.session.post(endpoint, data=body, headers=HEADERS, timeout=60)
        return t0, time.perf_counter(), build.accepted(resp.status_code, resp.content, n)

    def done(outcome: tuple[float, float, bool]) -> None:
        nonlocal failed
        spans.append(outcome[:2])
        failed += not outcome[2]

    with source.open(encoding="utf-8", newline="") as fh, ThreadPoolExecutor(in_flight) as pool:
        reader = csv.reader(fh)
        build = BareRequests(next(reader))
        pending: deque[Future[tuple[float, float, bool]]] = deque()
        while batch := list(islice(reader, BATCH)):
            calls, rows = calls + 1, rows + len(batch)
            if in_flight == 1:
                done(post(build.body(batch), len(batch)))
                continue
            pending.append(pool.submit(post, build.body(batch), len(batch)))
            while len(pending) >= 2 * in_flight or (pending and pending[0].done()):
                done(pending.popleft().result())
        while pending:
            done(pending.popleft().result())
    for session in sessions:
        session.close()
    span = max(e for _, e in spans) - min(s for s, _ in spans) if spans else 0.0
    return {
        "rows": rows,
        "calls": calls,
        "failed_calls": failed,
        "span": span,
        "seconds": time.perf_counter() - started,
    }


# -- the product --------------------------------------------------------------------------------------------


class Bench:
    """Runs both sides against one simulator and collects what went wrong."""

    def __init__(self, work: Path, rows: int = ROWS) -> None:
        self.work, self.rows = work, rows
        self.sim = bc.SimulatorProcess(work)
        self.errors: list[str] = []
        self.max_in_flight: bool | None = None  # whether the CLI knows --max-in-flight (None: not tried yet)
        self.n = 0

    def source(self, tag: str, rows: int | None = None) -> Path:
        self.n += 1
        return bc.write_source(self.work / f"{tag}.csv", rows or self.rows, f"{tag}{self.n:03d}")

    def checked(self, what: str, before: int, rows: int, ok: bool, detail: str = "") -> bool:
        stored = self.sim.stored_rows() - before
        if not ok or stored != rows:
            self.errors.append(f"{what}: simulator stored {stored:,} of {rows:,} rows; {detail[-1500:]}")
            return False
        return True

    def cli(
        self, tag: str, rows: int | None = None, ledger: Path | None = None, k: int | None = None
    ) -> dict[str, Any]:
        rows = rows or self.rows
        if k and k > 1 and self.max_in_flight is False:
            return {}
        src = self.source(tag, rows)
        ledger = ledger or self.work / f"{tag}.db"
        cmd = [*bc.cli_command(), "upload", "--transaction", "outbound", "--file", str(src)]
        cmd += ["--ledger", f"sqlite:///{ledger}", "--no-progress"]
        env, before = bc.client_env(self.work / "airflow_home", self.sim.endpoint), self.sim.stored_rows()
        run = bc.run_measured([*cmd, "--max-in-flight", str(k)] if k else cmd, env, self.work)
        if k and run.rc == 2 and "unrecognized arguments" in run.output:
            self.max_in_flight = False
            if k > 1:
                src.unlink()
                return {}
            run = bc.run_measured(cmd, env, self.work)
        elif k:
            self.max_in_flight = True
        src.unlink()
        ok = self.checked(f"CLI {tag}", before, rows, run.rc == 0, f"exit {run.rc}: {run.output}")
        return {
            "ok": ok,
            "rate": rows / run.wall,
            "cpu": run.cpu,
            "rss": run.peak_mb,
            "span": batch_span(ledger),
        }

    def bare_process(self, tag: str) -> dict[str, Any]:
        src, before = self.source(tag), self.sim.stored_rows()
        run = bc.run_measured([sys.executable, str(HERE), "--bare-client", str(src), self.sim.endpoint])
        src.unlink()
        self.checked(f"bare process {tag}", before, self.rows, run.rc == 0, run.output)
        return {"rate": self.rows / run.wall, "cpu": run.cpu, "rss": run.peak_mb}

    def bare_in_process(self, tag: str, k: int = 1) -> dict[str, Any]:
        src, before = self.source(tag), self.sim.stored_rows()
        gc.collect()  # the garbage of an earlier in-process run is not this one's cost
        out = bare_upload(src, self.sim.endpoint, k)
        src.unlink()
        self.checked(f"bare K={k} {tag}", before, self.rows, out["failed_calls"] == 0, json.dumps(out))
        return {"rate": self.rows / out["seconds"], "span": out["span"], "calls": out["calls"]}

    def engine(self, tag: str) -> dict[str, Any]:
        from cdyb_jxc.ledger import ACCEPTED_STATES, Ledger
        from cdyb_jxc.upload.engine import Uploader
        from cdyb_jxc.upload.source_issues import file_source
        from cdyb_jxc.upload.sources import iter_file_chunks
        from cdyb_jxc.wire.client import CentreClient
        from cdyb_jxc.wire.profile import load_profile

        importlib.import_module("zeep")  # imported at the first call otherwise: not part of a run's cost
        profile, src, before = load_profile(), self.source(tag), self.sim.stored_rows()
        gc.collect()
        started = time.perf_counter()
        ledger = Ledger(f"sqlite:///{self.work / tag}.db")
        client = CentreClient(
            profile,
            endpoint=self.sim.endpoint,
            user=bc.USER,
            verification_code=bc.SECRET,
            institution_code=bc.INSTITUTION,
        )
        try:
            uploader = Uploader(
                profile=profile, txn_key="outbound", institution_code=bc.INSTITUTION, sender=client,
                ledger=ledger, source=file_source(src),
            )  # fmt: skip
            result = uploader.run(iter_file_chunks(src, profile.transaction("outbound"), 5000))
            seconds = time.perf_counter() - started
        finally:
            client.close()
            ledger.dispose()
        src.unlink()
        accepted = sum(n for s, n in result.states.items() if s in ACCEPTED_STATES)
        self.checked(
            f"engine {tag}", before, self.rows, accepted == self.rows, f"states {dict(result.states)}"
        )
        return {"rate": self.rows / seconds}


def batch_span(ledger: Path) -> float:
    """Seconds from the first batch's ``started_at`` to the last one's ``finished_at`` in a SQLite ledger."""
    try:
        with sqlite3.connect(ledger) as conn:
            query = "SELECT min(started_at), max(finished_at) FROM cdyb_jxc_upload_batch WHERE row_count > 0"
            first, last = conn.execute(query).fetchone()
    except sqlite3.Error:
        return 0.0
    return (datetime.fromisoformat(last) - datetime.fromisoformat(first)).total_seconds() if first else 0.0


def copy_flushed(source: Path, target: Path) -> None:
    """Copy a ledger and wait until the copy is on disk: its write-back is not the next run's cost (a
    ledger in use was written long before), and the run's first checkpoint would otherwise flush it."""
    shutil.copyfile(source, target)
    with target.open("rb") as fh:
        os.fsync(fh.fileno())


def prefill(path: Path, rows: int) -> None:
    """A ledger holding ``rows`` accepted JXC003 rows of earlier days, written in 10k-row inserts."""
    from cdyb_jxc.ledger import Ledger, LedgerState

    ledger, base = Ledger(f"sqlite:///{path}"), datetime(2026, 11, 19, 12)
    for start in range(0, rows, 10_000):
        batch = []
        for n in range(start, min(start + 10_000, rows)):
            at, serial = base - timedelta(minutes=n), f"OLD{n:09d}"
            batch.append({
                "institution_code": bc.INSTITUTION, "serial_no": serial, "transaction_code": "JXC003",
                "business_date": at.date().isoformat(), "mapping_serial_no": f"M{n % 2000 + 1:04d}",
                "item_name": "阿莫西林胶囊", "payload_hash": f"{n:064x}", "sent_hash": f"{n:064x}",
                "state": LedgerState.ACCEPTED.value, "attempts": 1, "held_back": 0, "first_seen_at": at,
                "last_sent_at": at, "accepted_at": at, "updated_at": at, "run_token": "prefill",
            })  # fmt: skip
        ledger.insert_rows(batch)
    ledger.dispose()


# -- the run ------------------------------------------------------------------------------------------------

Row = tuple[str, str, str]  # measure, value, target


def throughput(bench: Bench, repeat: int) -> tuple[list[Row], list[dict[str, Any]]]:
    """(a), (b) and (e), interleaved round by round so that drift on the host hits both sides alike."""
    template, started = bench.work / "prefilled.db", time.perf_counter()
    prefill(template, PREFILL)
    print(f"prefilled a ledger with {PREFILL:,} rows in {time.perf_counter() - started:.1f} s", flush=True)
    runs: dict[str, list[dict[str, Any]]] = {
        key: [] for key in ("a_cli", "a_bare", "e_cli", "b_eng", "b_bare")
    }
    for rep in range(repeat):
        runs["a_cli"].append(bench.cli(f"a{rep}p"))
        runs["a_bare"].append(bench.bare_process(f"a{rep}b"))
        copy_flushed(template, bench.work / f"e{rep}p.db")
        runs["e_cli"].append(bench.cli(f"e{rep}p", ledger=bench.work / f"e{rep}p.db"))
        runs["b_eng"].append(bench.engine(f"b{rep}p"))
        runs["b_bare"].append(bench.bare_in_process(f"b{rep}b"))
        print(f"round {rep + 1}/{repeat} done", flush=True)
    med = {key: bc.median([r["rate"] for r in value]) for key, value in runs.items()}
    rounds = {  # each round's pair ran back to back: the median of their ratios, so host drift cancels
        name: [p["rate"] / q["rate"] for p, q in zip(runs[mine], runs[base], strict=True)]
        for name, mine, base in (("a", "a_cli", "a_bare"), ("b", "b_eng", "b_bare"), ("e", "e_cli", "a_cli"))
    }
    ratio = {name: bc.median(values) for name, values in rounds.items()}
    cpu = bc.median([r["cpu"] for r in runs["a_cli"]]) / bc.median([r["cpu"] for r in runs["a_bare"]])
    table = [
        (
            f"a. whole-process rows/s ÷ bare, {bench.rows:,} rows",
            f"{ratio['a']:.2f}",
            "≥ 0.6",
        ),
        each_round(rounds["a"]),
        ("   CLI / bare rows/s", f"{med['a_cli']:,.0f} / {med['a_bare']:,.0f}", ""),
        ("   CLI CPU s ÷ bare CPU s", f"{cpu:.1f}", ""),
        ("b. in-process rows/s ÷ bare", f"{ratio['b']:.2f}", "≥ 0.8"),
        each_round(rounds["b"]),
        ("   engine / bare rows/s", f"{med['b_eng']:,.0f} / {med['b_bare']:,.0f}", ""),
        (f"e. rows/s into a {PREFILL:,}-row ledger ÷ empty", f"{ratio['e']:.2f}", "≥ 0.95"),
        each_round(rounds["e"]),
        ("   prefilled / empty rows/s", f"{med['e_cli']:,.0f} / {med['a_cli']:,.0f}", ""),
    ]
    return table, runs["a_cli"]


def latency(bench: Bench, repeat: int) -> list[Row]:
    """(c): the simulator waits LATENCY per call; span ÷ ideal for K requests in flight, ``repeat`` rounds of
    the CLI and the bare client back to back for each K (the median of each side shown)."""
    table: list[Row] = []
    bench.sim.set_faults(f"latency={LATENCY}")
    one = 0.0  # the CLI's span (seconds) with one request in flight
    for k in KS:
        spans: dict[str, list[float]] = {"cli": [], "bare": []}
        ideal = 0.0
        for rep in range(repeat):
            cli, ref = bench.cli(f"c{k}p{rep}", k=k), bench.bare_in_process(f"c{k}b{rep}", k)
            ideal = ref["calls"] * LATENCY / k
            if cli:
                spans["cli"].append(cli["span"] / ideal)
            spans["bare"].append(ref["span"] / ideal)
        if spans["cli"] and not one:
            one = bc.median(spans["cli"]) * ideal
        shown = f"{bc.median(spans['cli']):.2f}" if spans["cli"] else "n/a (CLI has no --max-in-flight)"
        target = "≤ 1.5" if k == 4 else ""
        table.append((f"c. span ÷ ideal at {LATENCY * 1000:.0f} ms, K={k}: CLI", shown, target))
        if spans["cli"] and repeat > 1:
            table.append(each_round(spans["cli"]))
        if not spans["cli"] and k == KS[-1]:  # the issue's "now": one request in flight against this ideal
            table.append((f"   CLI at K=1 ÷ the K={k} ideal", f"{one / ideal:.2f}", target))
        table.append((f"   bare, K={k} (ideal {ideal:.1f} s)", f"{bc.median(spans['bare']):.2f}", ""))
    bench.sim.set_faults("")
    return table


def each_round(ratios: list[float]) -> Row:
    """A line under a median: each round's own figure, in the order run (how far apart they lie shows how
    much the host's noise moves the median)."""
    return ("   each round", ", ".join(f"{r:.2f}" for r in ratios), "")


def memory(bench: Bench, args: argparse.Namespace, a_cli: list[dict[str, Any]]) -> list[Row]:
    """(d): the CLI's peak RSS for the (a) runs and, unless skipped, one big run."""
    table = [
        (f"d. peak RSS of the CLI, {bench.rows:,} rows", f"{max(r['rss'] for r in a_cli):.0f} MB", "≤ 200 MB")
    ]
    if not args.skip_rss:
        print(f"uploading {args.rss_rows:,} rows for the RSS figure …", flush=True)
        big = bench.cli("d", rows=args.rss_rows)
        label = f"   {args.rss_rows:,} rows ({big['rate']:,.0f} rows/s)"
        table.append((label, f"{big['rss']:.0f} MB", "≤ 200 MB, flat"))
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=ROWS, help=f"rows of a, b, c, e (default {ROWS:,})")
    parser.add_argument(
        "--repeat", type=int, default=3, help="rounds of (a), (b), (c), (e); the median is shown"
    )
    parser.add_argument("--rss-rows", type=int, default=1_000_000, help="rows of the big RSS run (d)")
    parser.add_argument("--quick", action="store_true", help="the big RSS run with 100,000 rows")
    parser.add_argument("--skip-rss", action="store_true", help="no big RSS run")
    parser.add_argument(
        "--bare-client", nargs=2, metavar=("CSV", "ENDPOINT"), help="run the bare client alone"
    )
    parser.add_argument("--in-flight", type=int, default=1, help="requests in flight of --bare-client")
    args = parser.parse_args()
    if args.bare_client:
        out = bare_upload(Path(args.bare_client[0]), args.bare_client[1], args.in_flight)
        print(json.dumps(out))
        return 1 if out["failed_calls"] else 0
    if args.quick:
        args.rss_rows = min(args.rss_rows, 100_000)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cdyb_jxc_bench_e2e_") as tmp:
        bench = Bench(Path(tmp), args.rows)
        try:
            table, a_cli = throughput(bench, args.repeat)
            table += latency(bench, args.repeat) + memory(bench, args, a_cli)
        finally:
            bench.sim.stop()
    if bench.max_in_flight is False:
        print("note: the CLI has no --max-in-flight: (c) ran K=1 only; a, b, d, e use its default")
    width = max(len(m) for m, _, _ in table) + 2
    print(f"\n{'measure':<{width}}{'now':>34}  target")
    for label, value, target in table:
        print(f"{label:<{width}}{value:>34}  {target}")
    print(f"({time.perf_counter() - started:.0f} s in all; a, b, c, e: the median of {args.repeat} rounds)")
    for error in bench.errors:
        print(f"CORRECTNESS FAILURE: {error}", file=sys.stderr)
    return 1 if bench.errors else 0


if __name__ == "__main__":
    sys.exit(main())

"""The main job end to end on embedded defaults (run through ``bash scripts/demo.sh``).

Starts the insurance-centre simulator and seeds it, builds the demo HIS database, runs the initialization
DAG and then several business days of the daily DAG through Airflow on a SQLite metadata database, prints
a per-day × transaction table and where the reject reports are, and checks that the simulator's stored
rows equal the ledger's accepted rows.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INSTITUTION, USER, CODE = "H51010400001", "demo_his", "demo-test-code"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(cmd: list[str], env: dict[str, str], log: Path, what: str) -> None:
    print(f"… {what}", flush=True)
    with log.open("a") as fh:
        fh.write(f"\n$ {' '.join(cmd)}\n")
        fh.flush()
        result = subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)
    if result.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-40:]
        print("\n".join(tail))
        raise SystemExit(f"demo: {what} failed (exit {result.returncode}); full log: {log}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--days", type=int, default=3, help="business days of the daily DAG to run (default 3)"
    )
    parser.add_argument("--faults", default="drop_after_store=0.03,empty_200=0.02", help="simulator faults")
    parser.add_argument("--var", type=Path, default=ROOT / "var" / "demo", help="working folder (recreated)")
    args = parser.parse_args()

    var: Path = args.var
    shutil.rmtree(var, ignore_errors=True)
    (var / "airflow").mkdir(parents=True)
    log = var / "demo.log"
    sim_db, his_db, mapping = var / "simulator.db", var / "his.db", var / "mapping.csv"
    ledger_url = f"sqlite:///{var / 'ledger.db'}"
    reports = var / "reports"
    today = (datetime.utcnow() + timedelta(hours=8)).date()  # Asia/Shanghai
    last_day = today - timedelta(days=1)

    sys.path.insert(0, str(ROOT / "include" / "demo"))
    from generate_his import generate

    counts = generate(his_db, mapping, days=30, end=last_day)
    print(
        f"demo HIS: {counts['drug']} items ({counts['unmapped']} without 对码), "
        f"{counts['inbound_bill']} inbound and {counts['outbound_bill']} outbound lines over 30 days"
        f" → {his_db}"
    )

    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}/services/SjcjService"
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(var / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "CDYB_JXC_LEDGER_URL": ledger_url,
        "CDYB_JXC_REPORT_DIR": str(reports),
        "CDYB_JXC_RETRY_DELAY_SECONDS": "1",
        "AIRFLOW_CONN_CDYB_JXC_DEFAULT": json.dumps(
            {
                "conn_type": "cdyb_jxc",
                "host": endpoint,
                "login": USER,
                "password": CODE,
                "extra": {"institution_code": INSTITUTION, "environment": "test", "timeout": 30},
            }
        ),
        "AIRFLOW_CONN_CDYB_JXC_HIS": json.dumps({"conn_type": "sqlite", "host": str(his_db)}),
    }
    cli = [sys.executable, "-m", "cdyb_jxc", "simulator"]
    _run(
        [
            *cli,
            "seed",
            "--db",
            str(sim_db),
            "--institutions",
            str(ROOT / "include/demo/institutions.csv"),
            "--mapping",
            str(mapping),
        ],
        env,
        log,
        "seeding the simulator",
    )
    sim_log = (var / "simulator.log").open("w")
    server = subprocess.Popen(
        [*cli, "serve", "--port", str(port), "--db", str(sim_db), "--faults", args.faults, "--seed", "7"],
        stdout=sim_log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        _wait(endpoint)
        print(f"simulator serving {endpoint} with faults '{args.faults}'")
        airflow = [sys.executable, "-m", "airflow"]
        _run([*airflow, "db", "migrate"], env, log, "creating the Airflow metadata database (SQLite)")
        _run([*airflow, "dags", "test", "cdyb_jxc_init"], env, log, "running cdyb_jxc_init (JXC001)")
        days = [last_day - timedelta(days=n) for n in range(args.days - 1, -1, -1)]
        for day in days:
            # the evening of day D: the preflight checks D's rows as the upload will, sending nothing
            _run(
                [*airflow, "dags", "test", "cdyb_jxc_preflight", f"{day.isoformat()}T22:00:00+08:00"],
                env,
                log,
                f"running cdyb_jxc_preflight for business day {day}",
            )
            # the run covering day D is the one whose data interval starts at D 02:00 Asia/Shanghai
            run_at = f"{(day + timedelta(days=1)).isoformat()}T02:00:00+08:00"
            _run(
                [*airflow, "dags", "test", "cdyb_jxc_daily", run_at],
                env,
                log,
                f"running cdyb_jxc_daily for business day {day}",
            )
        dump = subprocess.run(
            [*cli, "dump", "--db", str(sim_db)], capture_output=True, text=True, check=True, env=env
        ).stdout
    finally:
        server.terminate()
        server.wait(timeout=10)
        sim_log.close()
    return _summarise(ledger_url, dump, reports, days, log)


def _wait(endpoint: str) -> None:
    import requests

    for _ in range(200):
        try:
            requests.get(f"{endpoint}?wsdl", timeout=1).raise_for_status()
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise SystemExit("demo: the simulator did not start")


def _balance(ledger: object, day: str) -> str:
    """``accepted/HIS`` items out of balance on ``day`` (the 进销存平衡 audit of the accepted and the source
    rows), or ``ok``."""
    from cdyb_jxc.upload.balance import BalanceStatus, audit_balance

    counts = []
    for accepted_only in (True, False):
        rows = audit_balance(ledger, INSTITUTION, day, day, accepted_only=accepted_only)  # type: ignore[arg-type]
        counts.append(sum(r.status is BalanceStatus.IMBALANCE for r in rows))
    return "ok" if not any(counts) else f"{counts[0]}/{counts[1]}"


def _summarise(ledger_url: str, dump: str, reports: Path, days: list[date], log: Path) -> int:
    import pandas as pd

    from cdyb_jxc.ledger import Ledger
    from cdyb_jxc.ledger.states import ACCEPTED_STATES, ATTENTION_STATES, UNRESOLVED_STATES, LedgerState

    ledger = Ledger(ledger_url)
    rows = pd.DataFrame(
        ledger.iter_rows(
            columns=[
                "transaction_code",
                "business_date",
                "serial_no",
                "state",
                "attempts",
                "held_back",
                "late_seconds",
            ]
        )
    )
    rows["sent"] = rows["attempts"] > 0
    table = rows.groupby(["business_date", "transaction_code"]).agg(
        rows=("serial_no", "size"),
        sent=("sent", "sum"),
        accepted=("state", lambda s: int((s == LedgerState.ACCEPTED).sum())),
        reconciled=("state", lambda s: int((s == LedgerState.ACCEPTED_RECONCILED).sum())),
        rejected=("state", lambda s: int(s.isin(sorted(ATTENTION_STATES)).sum())),
        held_back=("held_back", "sum"),
        in_doubt=("state", lambda s: int(s.isin(sorted(UNRESOLVED_STATES)).sum())),
    )
    table["balance"] = [_balance(ledger, day) for day, _ in table.index]
    print("\nper business day × transaction (ledger; balance: items out of balance, accepted rows / HIS):")
    print(table.to_string())
    for kind, what in (
        ("preflight", "preflight reports (the evening before)"),
        ("balance", "balance reports"),
    ):
        print(f"\n{what}:")
        for path in sorted(reports.glob(f"{kind}_*.csv")) if reports.exists() else []:
            print(f"  {path}")
    rejects = sorted(reports.glob("rejects_*")) if reports.exists() else []
    print("\nreject reports:" if rejects else "\nno reject reports were written")
    for path in rejects:
        print(f"  {path}")
    if rejects:
        first = next(p for p in rejects if p.suffix == ".csv")
        sample = pd.read_csv(first).head(4)
        print("  first rejects of", first.name)
        for rec in sample.itertuples(index=False):
            print(f"    {rec[0]}  【{rec[6]}】{rec[7]}")
    stored = {(r["transaction_code"], r["serial_no"]) for r in csv.DictReader(io.StringIO(dump))}
    accepted = rows[rows["state"].isin(sorted(ACCEPTED_STATES))]
    ledger_set = set(zip(accepted["transaction_code"], accepted["serial_no"], strict=True))
    print()
    if stored == ledger_set:
        print(
            "OK: the simulator's stored rows equal the ledger's accepted rows"
            f" ({len(stored)} rows, each stored once)"
        )
        print(f"logs: {log}")
        return 0
    print(
        f"MISMATCH: {len(stored - ledger_set)} stored but not accepted in the ledger, "
        f"{len(ledger_set - stored)} accepted in the ledger but not stored"
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())

"""What one hostile reply costs the uploading process: peak RSS and ledger growth (issue 10 §2).

For each mode of the hostile centre (tests/hostile_centre.py, served by this script on 127.0.0.1):

* ``accept``         baseline: every row saved;
* ``huge``           a 200 MB reply, generated while it streams (refused by the client at its reply limit);
* ``contradiction``  retcode 2 without ``dataset`` and a 2 MB ``retmsg``, for a 100-row batch;

it writes a 100-row outbound CSV and runs ``cdyb-jxc upload --transaction outbound`` exactly as a user would
(a subprocess, connection in ``AIRFLOW_CONN_CDYB_JXC_DEFAULT``, a fresh SQLite ledger, a throw-away
``AIRFLOW_HOME``). The client is reaped with :func:`os.wait4`, whose rusage is that one process's: its
``ru_maxrss`` is the client's peak RSS. Ledger growth is the size of the ledger files (database, WAL, journal)
after the run; the baseline row shows what 100 ordinary rows cost. The command resends a failed batch twice,
so each hostile mode answers three requests. MB means 10**6 bytes.

Run: ``cd /work/main && .venv/bin/python bench/bench_hostile_reply.py`` (about 15 s). It is a script, not a
test: it prints figures and exits 1 only when a run did not end as expected (exit status, rows in doubt).
"""

from __future__ import annotations

import csv
import json
import os
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.hostile_centre import HostileCentre  # noqa: E402

INSTITUTION, USER, SECRET = "H51010400001", "his_user", "S3cret-验证码-value"
ROWS = 100
MB = 1_000_000
MODES = [
    ("accept", {}, 0),
    ("huge", {"size": 200 * MB, "chunked": True}, 1),
    ("contradiction", {"retmsg_bytes": 2 * 1024 * 1024}, 1),
]


def write_source(path: Path) -> Path:
    fields = [
        "serial_no", "insurance_item_code", "hospital_item_name", "mapping_serial_no", "split_flag", "unit",
        "outbound_type", "sale_price", "quantity", "event_time",
    ]  # fmt: skip
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(fields)
        for n in range(ROWS):
            i = n % 20 + 1
            writer.writerow(
                [f"CK{path.stem}{n:05d}", f"XA{i:06d}", f"阿莫西林胶囊{i}号", f"M{i:04d}", "0", "盒", "21",
                 "12.5", "2", "2026-11-20 10:00:00"]
            )  # fmt: skip
    return path


def ledger_bytes(db: Path) -> int:
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))


def run_upload(centre: HostileCentre, work: Path, mode: str) -> dict[str, object]:
    src = write_source(work / f"{mode}.csv")
    db = work / f"{mode}.db"
    env = dict(os.environ)
    env.update(
        AIRFLOW_HOME=str(work / "airflow"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW_CONN_CDYB_JXC_DEFAULT=json.dumps(
            {
                "conn_type": "cdyb_jxc",
                "host": centre.url,
                "login": USER,
                "password": SECRET,
                "extra": {"institution_code": INSTITUTION, "environment": "test", "timeout": 30},
            }
        ),
    )
    cmd = [sys.executable, "-m", "cdyb_jxc", "upload", "--transaction", "outbound", "--file", str(src),
           "--ledger", f"sqlite:///{db}", "--no-progress"]  # fmt: skip
    requests_before = centre.requests
    started = time.monotonic()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        output = out.read().decode("utf-8", "replace")
    seconds = time.monotonic() - started
    with sqlite3.connect(db) as conn:
        states = dict(
            conn.execute("select state, count(*) from cdyb_jxc_upload_row group by state").fetchall()
        )
    return {
        "mode": mode,
        "exit": proc.returncode,
        "seconds": seconds,
        "peak_rss_mb": usage.ru_maxrss * 1024 / MB,  # Linux reports KiB
        "ledger_mb": ledger_bytes(db) / MB,
        "requests": centre.requests - requests_before,
        "states": states,
        "secret_printed": SECRET in output,
        "output": output,
    }


def main() -> int:
    failures = 0
    with tempfile.TemporaryDirectory(prefix="cdyb_jxc_bench_hostile_") as tmp, HostileCentre() as centre:
        work = Path(tmp)
        (work / "airflow").mkdir()
        head = ("mode", "exit", "seconds", "peak RSS MB", "× accept", "ledger MB", "× accept", "requests")
        print(
            f"{head[0]:<14} {head[1]:>4} {head[2]:>8} {head[3]:>12} {head[4]:>8} {head[5]:>10} {head[6]:>8}"
            f" {head[7]:>8}  states"
        )
        base: dict[str, float] = {}
        for mode, options, expected_exit in MODES:
            centre.set_mode(mode, **options)
            r = run_upload(centre, work, mode)
            # ratios to the ordinary reply of the same run: what a hostile reply costs beyond a normal one
            base = base or {"rss": r["peak_rss_mb"], "ledger": r["ledger_mb"]}
            print(
                f"{mode:<14} {r['exit']:>4} {r['seconds']:>8.1f} {r['peak_rss_mb']:>12.1f}"
                f" {r['peak_rss_mb'] / base['rss']:>8.2f} {r['ledger_mb']:>10.2f}"
                f" {r['ledger_mb'] / base['ledger'] if base['ledger'] else 0:>8.2f} {r['requests']:>8}"
                f"  {r['states']}"
            )
            ok_states = {"ACCEPTED": ROWS} if mode == "accept" else {"IN_DOUBT": ROWS}
            if r["exit"] != expected_exit or r["states"] != ok_states or r["secret_printed"]:
                failures += 1
                tail = str(r["output"])[-2000:]
                print(f"  UNEXPECTED: exit {r['exit']} (expected {expected_exit}); output:\n{tail}")
        print(f"server bytes sent in total: {centre.bytes_sent / MB:.1f} MB")
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MB
    print(f"(this script, with the server: peak RSS {own:.1f} MB)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""Shared pieces of the end-to-end benchmark: source rows, a simulator process, child processes measured.

Kept free of ``cdyb_jxc`` imports: the bare reference client (``bench_end_to_end.py --bare-client``) imports
this module and must not pay for the package.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROFILE_TOML = ROOT / "plugins" / "cdyb_jxc" / "data" / "default_profile.toml"
INSTITUTION, USER, SECRET = "H51010400001", "his_user", "S3cret-验证码-value"
ITEMS = 2_000  # 对码 registry entries, all seeded
MB = 1_000_000

COLUMNS = [
    "serial_no", "insurance_item_code", "hospital_item_name", "mapping_serial_no", "split_flag", "unit",
    "pack_ratio", "operator_name", "remark", "outbound_type", "sale_price", "quantity", "event_time",
    "dept_code", "dept_name", "visit_no", "prescription_no", "lot_no", "expiry_date",
]  # fmt: skip
CHINESE_NAMES = ("阿莫西林胶囊", "布洛芬缓释胶囊", "头孢克肟分散片", "盐酸二甲双胍片", "复方甘草口服溶液")


# -- source data (as bench_upload_memory.py: every row valid for the seeded simulator) ----------------------


def outbound_row(n: int, prefix: str) -> list[str]:
    """Row ``n`` of an outbound source, in :data:`COLUMNS` order; ``prefix`` keeps 流水号 apart per run."""
    i = n % ITEMS + 1
    split, dept = n % 5 == 0, n % 50 == 7
    name = f"{CHINESE_NAMES[i % 5]}{i}号" if i % 2 == 0 else f"Amoxicillin Capsules 0.25g No.{i}"
    return [
        f"{prefix}{n:09d}",
        f"XA{i:06d}",
        name,
        f"M{i:04d}",
        "1" if split else "0",
        "粒" if split else "盒",
        "24" if split else "",
        "张药师" if n % 4 == 0 else "",
        "夜班补录" if n % 997 == 0 else "",
        "23" if dept else ("22" if n % 3 == 0 else "21"),
        f"{i % 97 + 0.5:.2f}",
        str(n % 7 + 1),
        f"2026-11-20 {n // 3600 % 24:02d}:{n // 60 % 60:02d}:{n % 60:02d}",
        "D0301" if dept else "",
        "内科药房" if dept else "",
        "" if dept else f"MZ{n:08d}",
        "" if dept else f"CF{n:09d}",
        f"B2026{i:05d}",
        "2028-10-31",
    ]


def write_source(path: Path, rows: int, prefix: str) -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(outbound_row(n, prefix) for n in range(1, rows + 1))
    return path


def write_seed(directory: Path) -> tuple[Path, Path]:
    institutions, mapping = directory / "institutions.csv", directory / "mapping.csv"
    with institutions.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["institution_code", "environment", "user", "verification_code"])
        writer.writerow([INSTITUTION, "test", USER, SECRET])
    with mapping.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(
            ["institution_code", "mapping_serial_no", "insurance_item_code", "off_hospital_delivery"]
        )
        for i in range(1, ITEMS + 1):
            writer.writerow([INSTITUTION, f"M{i:04d}", f"XA{i:06d}", "1" if i % 10 == 9 else "0"])
    return institutions, mapping


# -- simulator ------------------------------------------------------------------------------------------


def cli_command() -> list[str]:
    return [sys.executable, "-m", "cdyb_jxc"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http(url: str, data: bytes | None = None, timeout: float = 30.0) -> bytes:
    with urllib.request.urlopen(url, data=data, timeout=timeout) as resp:
        return bytes(resp.read())


class SimulatorProcess:
    """``cdyb-jxc simulator seed`` + ``serve`` on a free loopback port, as a separate process."""

    def __init__(self, directory: Path) -> None:
        self.db = directory / "simulator.db"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.endpoint = f"{self.base}/services/SjcjService"
        institutions, mapping = write_seed(directory)
        seed = [*cli_command(), "simulator", "seed", "--db", str(self.db)]
        seed += ["--institutions", str(institutions), "--mapping", str(mapping)]
        seeded = subprocess.run(seed, capture_output=True, text=True, timeout=120)
        if seeded.returncode != 0:
            raise RuntimeError(f"simulator seed failed: {seeded.stdout}{seeded.stderr}")
        self.log_path = directory / "simulator.log"
        self._log = self.log_path.open("wb")
        serve = [*cli_command(), "simulator", "serve", "--port", str(self.port), "--db", str(self.db)]
        self.proc = subprocess.Popen(serve, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"simulator exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                if b"definitions" in http(f"{self.endpoint}?wsdl", timeout=2):
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"simulator not ready after 60 s: {self.log_tail()}")

    def stored_rows(self) -> int:
        return int(json.loads(http(f"{self.base}/admin/stats"))["stored_rows"])

    def set_faults(self, spec: str) -> None:
        http(f"{self.base}/admin/faults", json.dumps({"spec": spec, "seed": 0}).encode())

    def log_tail(self) -> str:
        self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-2000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


# -- child processes ------------------------------------------------------------------------------------


def client_env(home: Path, endpoint: str) -> dict[str, str]:
    """The environment of ``cdyb-jxc upload``: the connection in ``AIRFLOW_CONN_CDYB_JXC_DEFAULT``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CDYB_JXC_", "AIRFLOW"))}
    conn = {
        "conn_type": "cdyb_jxc",
        "host": endpoint,
        "login": USER,
        "password": SECRET,
        "extra": {"institution_code": INSTITUTION, "environment": "test", "timeout": 60},
    }
    home.mkdir(parents=True, exist_ok=True)
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW_CONN_CDYB_JXC_DEFAULT=json.dumps(conn, ensure_ascii=False),
    )
    return env


@dataclass
class ProcessRun:
    """One child process, reaped with :func:`os.wait4` (its rusage is that process's alone)."""

    rc: int
    wall: float
    cpu: float
    peak_mb: float
    output: str


def run_measured(cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> ProcessRun:
    """Run ``cmd`` (stdout+stderr captured); wall time from spawn to exit, interpreter start-up included."""
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        output = out.read().decode("utf-8", "replace")
    cpu = usage.ru_utime + usage.ru_stime
    return ProcessRun(proc.returncode, wall, cpu, usage.ru_maxrss * 1024 / MB, output)


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2

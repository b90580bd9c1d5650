"""Peak-memory benchmark of ``cdyb-jxc upload`` on a large outbound (JXC003) CSV.

Target (issue): a 1,000,000-row outbound source uploads with the client's peak memory under 400 MB.

For each of two source sizes -- a reference of 100,000 rows and the 1,000,000-row run, in that order -- the
script:

1. writes an outbound CSV with the profile's logical column names, streaming with :mod:`csv` (unique
   流水号 ``CK20261120{n:08d}``, 2,000 items, Chinese and ASCII item names, every 5th row split
   (``split_flag=1`` with ``pack_ratio``), some 科室领用 rows with a department);
2. seeds a fresh simulator store with ``cdyb-jxc simulator seed`` (one institution, the 2,000 对码 entries)
   and serves it with ``cdyb-jxc simulator serve`` on a free loopback port, as a separate process, polling
   the WSDL until it answers;
3. runs ``cdyb-jxc upload --transaction outbound --file … --ledger sqlite:///…/ledger.db --no-progress``
   exactly as a user would (connection in ``AIRFLOW_CONN_CDYB_JXC_DEFAULT``, a throw-away ``AIRFLOW_HOME``,
   a fresh ledger). The client is launched through a tiny ``python -c`` wrapper whose only child is the
   client, so the wrapper's ``getrusage(RUSAGE_CHILDREN).ru_maxrss`` is the client's peak RSS and nothing
   else (the simulator is a child of this script, not of the wrapper). As a cross-check this script samples
   the client's ``VmRSS`` (and ``VmHWM``) from ``/proc/PID/status`` every 0.5 s;
4. checks the exit status is 0 (every row accepted) and that the simulator's ``/admin/stats`` reports
   exactly the expected ``stored_rows``, then stops the simulator.

Wall time is the upload command's, from spawn to exit (interpreter start-up and imports included); rows/s is
rows / wall time. The client's CPU seconds (user + system, from the same getrusage) and the host's 1-minute
load average before and after each run are printed too: the simulator runs on the same host, and other load
on it lowers rows/s but not the memory figures. MB means 10**6 bytes (stricter than MiB). Exit status 1 on
a correctness failure only (non-zero client exit, wrong stored-row count, a simulator that does not start); a
memory figure above the target prints FAIL but does not change the exit status.

Run: ``cd /work/main && .venv/bin/python bench/bench_upload_memory.py`` (about 15 minutes on a 2-CPU host,
where client and simulator share the CPUs at ~1,000-1,500 rows/s). ``--rows 20000 --reference-rows 2000``
gives a quick smoke run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from _bench_common import MB, free_port, write_seed, write_source

VENV_BIN = Path(sys.executable).parent
CLI = str(VENV_BIN / "cdyb-jxc")

INSTITUTION, USER, SECRET = "H51010400001", "his_user", "S3cret-验证码-value"
TARGET_MB = 400.0
SAMPLE_SECONDS = 0.5
# with 9 digits of row number this spells the 流水号 CK20261120 + 8 digits for up to 10**8 rows
SERIAL_PREFIX = "CK2026112"
PER_REQUEST_LOG = "sending 100 JXC003 rows"  # the hook logs one INFO line per request

# The wrapper's only child is the client: its RUSAGE_CHILDREN peak is the client's peak RSS (kB on Linux).
WRAPPER = """
import json, resource, subprocess, sys, time
with open(sys.argv[1], "wb") as out:
    started = time.perf_counter()
    proc = subprocess.Popen(sys.argv[2:], stdout=out, stderr=subprocess.STDOUT)
    print(proc.pid, flush=True)
    rc = proc.wait()
    wall = time.perf_counter() - started
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
cpu = usage.ru_utime + usage.ru_stime
print(json.dumps({"rc": rc, "wall": wall, "cpu": cpu, "maxrss_kb": usage.ru_maxrss}), flush=True)
"""


def http_get(url: str, timeout: float = 5.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read()


class SimulatorProcess:
    """A seeded ``cdyb-jxc simulator serve`` on a free loopback port, as a separate process."""

    def __init__(self, directory: Path) -> None:
        self.db = directory / "simulator.db"
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.endpoint = f"{self.base}/services/SjcjService"
        institutions, mapping = write_seed(directory)
        seeded = subprocess.run(
            [CLI, "simulator", "seed", "--db", self.db, "--institutions", institutions, "--mapping", mapping],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if seeded.returncode != 0:
            raise RuntimeError(f"simulator seed failed: {seeded.stdout}{seeded.stderr}")
        self.log_path = directory / "simulator.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [CLI, "simulator", "serve", "--port", str(self.port), "--db", str(self.db)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait_ready()

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"simulator exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                if b"definitions" in http_get(f"{self.endpoint}?wsdl", timeout=2):
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"simulator not ready after {timeout:.0f}s: {self.log_tail()}")

    def stats(self) -> dict[str, object]:
        return dict(json.loads(http_get(f"{self.base}/admin/stats", timeout=30)))

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


# -- client ---------------------------------------------------------------------------------------------


@dataclass
class RssSampler:
    """Samples VmRSS and VmHWM (kB) of one PID every :data:`SAMPLE_SECONDS` until stopped."""

    pid: int
    max_rss_kb: int = 0
    hwm_kb: int = 0
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        status = Path(f"/proc/{self.pid}/status")
        while not self._stop.is_set():
            try:
                text = status.read_text()
            except OSError:  # gone
                return
            for line in text.splitlines():
                key, _, value = line.partition(":")
                if key == "VmRSS":
                    self.max_rss_kb = max(self.max_rss_kb, int(value.split()[0]))
                    self.samples += 1
                elif key == "VmHWM":
                    self.hwm_kb = max(self.hwm_kb, int(value.split()[0]))
            self._stop.wait(SAMPLE_SECONDS)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class RunResult:
    rows: int
    rc: int
    wall: float
    cpu: float
    load: tuple[float, float]
    maxrss_kb: int
    sampled_rss_kb: int
    sampled_hwm_kb: int
    samples: int
    stored_rows: int
    source_mb: float
    output: str

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.wall if self.wall else 0.0

    @property
    def peak_mb(self) -> float:
        return self.maxrss_kb * 1024 / MB

    @property
    def correct(self) -> bool:
        return self.rc == 0 and self.stored_rows == self.rows


def client_env(home: Path, sim: SimulatorProcess) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CDYB_JXC_", "AIRFLOW"))}
    conn = {
        "conn_type": "cdyb_jxc",
        "host": sim.endpoint,
        "login": USER,
        "password": SECRET,
        "extra": {"institution_code": INSTITUTION, "environment": "test"},
    }
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW_CONN_CDYB_JXC_DEFAULT=json.dumps(conn, ensure_ascii=False),
    )
    return env


def run_upload(rows: int, base: Path) -> RunResult:
    work = base / f"run_{rows}"
    home = work / "airflow_home"
    home.mkdir(parents=True)
    source = work / f"outbound_{rows}.csv"
    started = time.perf_counter()
    write_source(source, rows, SERIAL_PREFIX)
    print(
        f"[{rows:>9,} rows] wrote {source.name} ({source.stat().st_size / MB:.1f} MB) "
        f"in {time.perf_counter() - started:.1f}s",
        flush=True,
    )
    sim = SimulatorProcess(work)
    try:
        print(f"[{rows:>9,} rows] simulator ready on {sim.endpoint}; uploading …", flush=True)
        output = work / "client.out"
        command = [CLI, "upload", "--transaction", "outbound", "--file", str(source)]
        command += ["--ledger", f"sqlite:///{work / 'ledger.db'}", "--no-progress"]
        load_before = os.getloadavg()[0]
        wrapper = subprocess.Popen(
            [sys.executable, "-c", WRAPPER, str(output), *command],
            stdout=subprocess.PIPE,
            text=True,
            env=client_env(home, sim),
            cwd=work,
        )
        pipe = wrapper.stdout
        if pipe is None:  # pragma: no cover - stdout=PIPE always gives a pipe
            raise RuntimeError("no pipe from the wrapper")
        sampler = RssSampler(int(pipe.readline()))
        summary_line = pipe.readline()
        wrapper.wait()
        sampler.stop()
        summary = json.loads(summary_line)
        stored = int(sim.stats()["stored_rows"])  # type: ignore[call-overload]
    finally:
        sim.stop()
    result = RunResult(
        rows=rows,
        rc=int(summary["rc"]),
        wall=float(summary["wall"]),
        cpu=float(summary["cpu"]),
        load=(load_before, os.getloadavg()[0]),
        maxrss_kb=int(summary["maxrss_kb"]),
        sampled_rss_kb=sampler.max_rss_kb,
        sampled_hwm_kb=sampler.hwm_kb,
        samples=sampler.samples,
        stored_rows=stored,
        source_mb=source.stat().st_size / MB,
        output=output.read_text(encoding="utf-8", errors="replace"),
    )
    source.unlink()
    print(
        f"[{rows:>9,} rows] exit {result.rc} in {result.wall:.1f}s, peak RSS {result.peak_mb:.1f} MB, "
        f"simulator stored {stored:,} rows; client printed:",
        flush=True,
    )
    print("    " + "\n    ".join(summarise_output(result.output)), flush=True)
    return result


def summarise_output(text: str) -> list[str]:
    """The client's output without its per-request log lines (one per 100 rows), which are counted."""
    lines = text.strip().splitlines()
    per_request = [line for line in lines if PER_REQUEST_LOG in line]
    kept = [line for line in lines if PER_REQUEST_LOG not in line]
    if per_request:
        kept.insert(0, f"({len(per_request):,} per-request log lines '{PER_REQUEST_LOG} …' omitted)")
    return kept


# -- report ---------------------------------------------------------------------------------------------


def report(reference: RunResult, big: RunResult) -> None:
    header = (
        f"{'rows':>10} {'source MB':>9} {'wall s':>7} {'rows/s':>7} {'client CPU s':>12} {'load':>9} "
        f"{'peak RSS MB':>11} {'sampled VmRSS MB':>16} {'exit':>4} {'stored rows':>11} "
        f"{f'vs {TARGET_MB:.0f} MB':>9}"
    )
    print(f"\nhost: {os.cpu_count()} CPUs; load = 1-minute load average before→after the upload")
    print(header)
    print("-" * len(header))
    for res in (reference, big):
        verdict = ("PASS" if res.peak_mb < TARGET_MB else "FAIL") if res is big else "(ref)"
        load = f"{res.load[0]:.1f}→{res.load[1]:.1f}"
        print(
            f"{res.rows:>10,} {res.source_mb:>9.1f} {res.wall:>7.1f} {res.rows_per_second:>7,.0f} "
            f"{res.cpu:>12.1f} {load:>9} {res.peak_mb:>11.1f} {res.sampled_rss_kb * 1024 / MB:>16.1f} "
            f"{res.rc:>4} {res.stored_rows:>11,} {verdict:>9}"
        )
    ratio = big.peak_mb / reference.peak_mb if reference.peak_mb else float("nan")
    print(
        f"\npeak RSS {big.rows:,} rows / {reference.rows:,} rows = {ratio:.2f}x for "
        f"{big.rows / reference.rows:.0f}x the rows (~1.0x means the upload streams)"
    )
    print(
        "peak RSS = getrusage(RUSAGE_CHILDREN).ru_maxrss of a wrapper whose only child is the client; "
        f"sampled = max /proc/PID/status VmRSS over {big.samples} samples every {SAMPLE_SECONDS}s "
        f"(last VmHWM seen: {reference.sampled_hwm_kb * 1024 / MB:.1f} / "
        f"{big.sampled_hwm_kb * 1024 / MB:.1f} MB)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", type=int, default=1_000_000, help="rows of the main run (default 1,000,000)"
    )
    parser.add_argument(
        "--reference-rows", type=int, default=100_000, help="rows of the reference run (default 100,000)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cdyb_jxc_bench_mem_") as tmp:
        base = Path(tmp)
        try:
            reference = run_upload(args.reference_rows, base)
            big = run_upload(args.rows, base)
        except RuntimeError as err:
            print(f"FAILED: {err}", file=sys.stderr)
            return 1
    report(reference, big)
    failures = [
        f"{r.rows:,}-row run: exit {r.rc}, simulator stored {r.stored_rows:,} of {r.rows:,} rows"
        for r in (reference, big)
        if not r.correct
    ]
    for failure in failures:
        print(f"CORRECTNESS FAILURE: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

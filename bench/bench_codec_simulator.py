"""Throughput benchmark: the simulator over SOAP and the codec, each beside a bare-lxml reference.

1. Simulator: rows/s the simulator accepts for 100-row JXC003 requests prebuilt with the package codec,
   wrapped in SOAP envelopes. The simulator runs as its own process, started the production way through the
   CLI (``cdyb-jxc simulator seed`` then ``cdyb-jxc simulator serve``) on a SQLite file store holding 2,000
   对码 entries. Beside it, a bare-lxml reference server in a second process (this script re-invoked with
   ``--reference-server PORT DB``): a ThreadingHTTPServer that parses the envelope and ``inputXml`` with lxml,
   extracts the rows' (tag, text) pairs, inserts them into a SQLite file table in one transaction and returns
   a fixed reply (no validation). Each server has its own loopback port; the load comes from this process,
   ``THREADS`` client threads over kept-alive ``requests.Session`` objects, the same requests to both, one
   server loaded at a time. Only the POST loop is timed. Target: simulator >= 10,000 rows/s.
2. Codec: rows/s for source rows (str, Decimal, datetime, date) through row_to_wire + precheck_row (local
   对码 registry) + build_request (100-row batches) + parse_request + build_reply/parse_reply. Beside it, a
   bare lxml build (SubElement per field, str() values, tostring GBK) and parse (fromstring, iterate rows).
   Target: package >= 30,000 rows/s.

Each measurement is repeated 3 times; the best is reported. Exit status 1 only on a correctness failure
(a reply whose retcode is not 1, a stored-row count that differs from the rows sent, a row held back) or
when a server process cannot be started.

``--threads N`` changes the client thread count (2 was best on the 2-core machine; 1 and 3 were slower).
``--profile-simulator OUT`` instead runs one simulator round (1 client thread unless ``--threads``, so the
server's handler thread never waits for the GIL or the store lock) with every server thread under cProfile
(``python -m cProfile`` alone would only see the accept loop of the main thread), writes the merged stats
to OUT and prints the top entries by cumulative and by internal time.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import socket
import socketserver
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from datetime import date, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests
from lxml import etree

from cdyb_jxc.exceptions import CodecError
from cdyb_jxc.simulator.server import SOAP_ENV
from cdyb_jxc.wire.codec import SUCCESS, build_reply, build_request, parse_reply, parse_request
from cdyb_jxc.wire.profile import load_profile
from cdyb_jxc.wire.rules import MappingEntry, precheck_row
from cdyb_jxc.wire.values import row_to_wire

INSTITUTION, USER, SECRET = "H51010400001", "his_user", "S3cret-验证码-value"
ITEMS = 2_000  # 对码 registry entries
REQUESTS, BATCH, THREADS, REPEATS = 300, 100, 2, 3
CODEC_ROWS = 20_000
SIM_TARGET, CODEC_TARGET = 10_000, 30_000
READY_TIMEOUT = 30.0  # seconds a server process gets to answer its first GET

PROFILE = load_profile()
TXN = PROFILE.transaction("outbound")
SVC = PROFILE.service
HEADERS = {"Content-Type": "text/xml; charset=UTF-8", "SOAPAction": '""'}
CREDS = {"user": USER, "verification_code": SECRET, "institution_code": INSTITUTION}
REGISTRY = {f"M{i:04d}": MappingEntry(f"XA{i:06d}", i % 10 == 9) for i in range(1, ITEMS + 1)}
HERE = Path(__file__).resolve()


def source_row(serial: str, n: int) -> dict[str, object]:
    """One outbound row with Python values, as a SQL driver would return it."""
    i = n % ITEMS + 1
    return {
        "serial_no": serial,
        "insurance_item_code": f"XA{i:06d}",
        "hospital_item_name": f"阿莫西林胶囊{i}号",
        "mapping_serial_no": f"M{i:04d}",
        "split_flag": "0",
        "unit": "盒",
        "operator_name": "张药师",
        "outbound_type": "21",
        "sale_price": Decimal("12.50"),
        "quantity": Decimal(n % 7 + 1),
        "event_time": datetime(2026, 11, 20, 10, n % 60, 0),
        "visit_no": f"MZ{n:08d}",
        "lot_no": "B20261101",
        "expiry_date": date(2028, 10, 31),
    }


# -- 1. simulator over SOAP: client side --------------------------------------------------------------


def soap_envelope(input_xml: str) -> bytes:
    env = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"soap": SOAP_ENV})
    body = etree.SubElement(env, f"{{{SOAP_ENV}}}Body")
    call = etree.SubElement(
        body, f"{{{SVC['namespace']}}}{SVC['operation']}", nsmap={"ns2": SVC["namespace"]}
    )
    etree.SubElement(call, SVC["input_part"]).text = input_xml
    return etree.tostring(env, encoding="UTF-8", xml_declaration=True)


def request_bodies(tag: str) -> list[bytes]:
    """REQUESTS envelopes of BATCH rows each, serial numbers unique per ``tag``."""
    bodies = []
    for r in range(REQUESTS):
        rows = [row_to_wire(TXN, source_row(f"{tag}{r:04d}{k:03d}", r * BATCH + k)) for k in range(BATCH)]
        bodies.append(soap_envelope(build_request(PROFILE, TXN, rows, **CREDS)))
    return bodies


def post_all(sessions: list[requests.Session], url: str, bodies: list[bytes]) -> tuple[float, list[bytes]]:
    """POST every body, one thread per session over kept-alive sessions. Returns (seconds, reply bodies)."""
    threads = len(sessions)

    def worker(t: int) -> list[tuple[int, bytes]]:
        out = []
        for i in range(t, len(bodies), threads):
            resp = sessions[t].post(url, data=bodies[i], headers=HEADERS, timeout=60)
            out.append((i, resp.content if resp.status_code == 200 else b""))
        return out

    with ThreadPoolExecutor(threads) as pool:
        start = time.perf_counter()
        results = [r for part in pool.map(worker, range(threads)) for r in part]
        elapsed = time.perf_counter() - start
    return elapsed, [content for _, content in sorted(results)]


def all_success(replies: list[bytes]) -> bool:
    """Every reply is HTTP 200 with a ``return`` whose retcode is the profile's success code."""
    try:
        for content in replies:
            node = etree.fromstring(content).find(f".//{SVC['output_part']}") if content else None
            if node is None or parse_reply(PROFILE, node.text).retcode != PROFILE.return_codes["success"]:
                return False
    except (etree.XMLSyntaxError, CodecError):
        return False
    return True


# -- 1. simulator over SOAP: server processes ---------------------------------------------------------


class RefHandler(BaseHTTPRequestHandler):
    """Bare lxml reference: parse envelope and inputXml, store (tag, text) pairs, fixed reply. No rules."""

    protocol_version = "HTTP/1.1"
    server: RefServer
    input_path = f"{{{SOAP_ENV}}}Body/{{{SVC['namespace']}}}{SVC['operation']}/{SVC['input_part']}"
    row_path = f"{PROFILE.request['data']}/{PROFILE.request['row']}"
    serial_tag = TXN.by_name["serial_no"].tag

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        """Readiness probe."""
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        inner = etree.fromstring(body).find(self.input_path).text or ""
        root = etree.fromstring(inner.split("?>", 1)[1])
        records = []
        for row in root.iterfind(self.row_path):
            pairs = {el.tag: el.text for el in row}
            records.append((pairs[self.serial_tag], json.dumps(pairs, ensure_ascii=False)))
        srv = self.server
        with srv.lock:
            srv.conn.execute("BEGIN IMMEDIATE")
            srv.conn.executemany("INSERT INTO ref_row VALUES (?, ?)", records)
            srv.conn.execute("COMMIT")
        # One write for headers and body: two small writes meet Nagle + delayed ACK (~40 ms a reply).
        self.wfile.write(srv.response)


class RefServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, db: Path) -> None:
        super().__init__(("127.0.0.1", port), RefHandler)
        self.lock = threading.Lock()
        self.conn = sqlite3.connect(db, check_same_thread=False, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("CREATE TABLE ref_row (serial_no TEXT PRIMARY KEY, payload TEXT NOT NULL)")
        returned = build_reply(
            PROFILE, SUCCESS, f"本次上传{BATCH}条，成功{BATCH}条，失败0条", succnum=BATCH, failnum=0
        )
        wrapper = etree.Element(f"{{{SVC['namespace']}}}{SVC['operation']}Response")
        etree.SubElement(wrapper, SVC["output_part"]).text = returned
        env = etree.Element(f"{{{SOAP_ENV}}}Envelope")
        etree.SubElement(env, f"{{{SOAP_ENV}}}Body").append(wrapper)
        reply = etree.tostring(env, encoding="UTF-8", xml_declaration=True)
        head = f"HTTP/1.1 200 OK\r\nContent-Type: text/xml; charset=UTF-8\r\nContent-Length: {len(reply)}\r\n"
        self.response = head.encode("ascii") + b"\r\n" + reply


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def serve_reference(port: int, db: Path) -> int:
    """``--reference-server PORT DB``: serve the bare-lxml reference until SIGTERM."""
    ref = RefServer(port, db)
    signal.signal(signal.SIGTERM, _interrupt)
    print(f"reference serving http://127.0.0.1:{port}{SVC['path']}", flush=True)
    try:
        ref.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        ref.server_close()
        with ref.lock:
            ref.conn.close()
    return 0


def serve_simulator_profiled(port: int, db: Path, out: Path) -> int:
    """``--simulator-profiled PORT DB OUT``: ``cdyb-jxc simulator serve`` in this process, every connection
    thread under its own cProfile; the merged stats go to OUT on SIGTERM."""
    import cProfile
    import pstats

    from cdyb_jxc.cli import main as cli_main

    profiles: list[cProfile.Profile] = []
    lock = threading.Lock()
    original = socketserver.ThreadingMixIn.process_request_thread

    def profiled(self: socketserver.ThreadingMixIn, request: socket.socket, client_address: object) -> None:
        prof = cProfile.Profile()
        prof.enable()
        try:
            original(self, request, client_address)  # type: ignore[arg-type]
        finally:
            prof.disable()
            with lock:
                profiles.append(prof)

    socketserver.ThreadingMixIn.process_request_thread = profiled  # type: ignore[method-assign]
    try:
        return cli_main(["simulator", "serve", "--port", str(port), "--db", str(db)])
    finally:
        for thread in threading.enumerate():
            if thread is not threading.current_thread():
                thread.join(timeout=5)
        with lock:
            if profiles:
                pstats.Stats(*profiles).dump_stats(out)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli_command() -> list[str]:
    """The ``cdyb-jxc`` console script beside this interpreter, else the same CLI through ``-m``."""
    script = Path(sys.executable).with_name("cdyb-jxc")
    return [str(script)] if script.exists() else [sys.executable, "-m", "cdyb_jxc"]


def seed_simulator(tmp: Path, db: Path) -> None:
    """``cdyb-jxc simulator seed`` from the two CSVs of SPEC §8."""
    inst, mapping = tmp / "institutions.csv", tmp / "mapping.csv"
    with inst.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["institution_code", "environment", "user", "verification_code"])
        writer.writerow([INSTITUTION, "test", USER, SECRET])
    with mapping.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["institution_code", "mapping_serial_no", "insurance_item_code", "off_hospital_delivery"]
        )
        for m, e in REGISTRY.items():
            writer.writerow([INSTITUTION, m, e.insurance_item_code, int(e.off_hospital_delivery)])
    cmd = [*cli_command(), "simulator", "seed", "--db", str(db), "--institutions", str(inst)]
    subprocess.run([*cmd, "--mapping", str(mapping)], check=True, capture_output=True, timeout=60)


@contextmanager
def server_process(name: str, cmd: list[str], probe: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``cmd`` (stdout+stderr to ``log``), poll GET ``probe`` until it answers, terminate on exit."""
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} process exited with {proc.returncode} before serving:\n{tail}")
            try:
                if requests.get(probe, timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} process not answering {probe} after {READY_TIMEOUT:.0f} s")
            time.sleep(0.1)
        yield proc
    finally:
        stop_process(proc)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def start_simulator(
    stack: ExitStack, tmp: Path, profile_out: Path | None = None
) -> tuple[str, Callable[[], int], subprocess.Popen[bytes]]:
    """Seed and start the simulator process.

    :return: (SOAP URL, stored-row counter reading /admin/stats, the process)
    """
    db, port = tmp / "simulator.db", free_port()
    seed_simulator(tmp, db)
    if profile_out is None:
        cmd = [*cli_command(), "simulator", "serve", "--port", str(port), "--db", str(db)]
    else:
        cmd = [sys.executable, str(HERE), "--simulator-profiled", str(port), str(db), str(profile_out)]
    url = f"http://127.0.0.1:{port}{SVC['path']}"
    proc = stack.enter_context(server_process("simulator", cmd, f"{url}?wsdl", tmp / "simulator.log"))

    def stored() -> int:
        stats = requests.get(f"http://127.0.0.1:{port}/admin/stats", timeout=10)
        return int(stats.json()["stored_rows"])

    return url, stored, proc


def count_reference(db: Path) -> int:
    conn = sqlite3.connect(db, timeout=30)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM ref_row").fetchone()[0])
    finally:
        conn.close()


def bench_simulator(tmp: Path, threads: int) -> tuple[float, float, list[str]]:
    errors: list[str] = []
    best = {"sim": 0.0, "ref": 0.0}
    ref_db, ref_port = tmp / "reference.db", free_port()
    ref_url = f"http://127.0.0.1:{ref_port}{SVC['path']}"
    ref_cmd = [sys.executable, str(HERE), "--reference-server", str(ref_port), str(ref_db)]
    with ExitStack() as stack:
        sim_url, sim_count, _ = start_simulator(stack, tmp)
        ref_proc = stack.enter_context(server_process("reference", ref_cmd, ref_url, tmp / "reference.log"))
        sessions = {name: [requests.Session() for _ in range(threads)] for name in ("sim", "ref")}
        for s in (*sessions["sim"], *sessions["ref"]):
            stack.callback(s.close)
        targets = (("sim", sim_url, sim_count), ("ref", ref_url, lambda: count_reference(ref_db)))
        for rep in range(REPEATS):
            bodies = request_bodies(f"S{rep}")
            sent = (rep + 1) * REQUESTS * BATCH
            for name, url, count in targets:
                elapsed, replies = post_all(sessions[name], url, bodies)
                best[name] = max(best[name], REQUESTS * BATCH / elapsed)
                if not all_success(replies):
                    errors.append(f"{name} round {rep + 1}: a reply is missing or its retcode is not 1")
                if (stored := count()) != sent:
                    errors.append(f"{name} round {rep + 1}: store holds {stored} rows, {sent} sent")
        for s in (*sessions["sim"], *sessions["ref"]):
            s.close()
        stop_process(ref_proc)
        if ref_proc.returncode != 0:
            errors.append(f"reference process exited with {ref_proc.returncode}")
        if (stored := count_reference(ref_db)) != REPEATS * REQUESTS * BATCH:
            errors.append(f"ref after exit: file holds {stored} rows, {REPEATS * REQUESTS * BATCH} sent")
    return best["sim"], best["ref"], errors


def profile_simulator(out: Path, threads: int, top: int = 25) -> int:
    """One simulator round with every server thread profiled; print the top entries of the merged stats."""
    import pstats

    with tempfile.TemporaryDirectory(prefix="cdyb-bench-") as tmp_name, ExitStack() as stack:
        tmp = Path(tmp_name)
        url, count, proc = start_simulator(stack, tmp, out)
        bodies = request_bodies("P")
        sessions = [requests.Session() for _ in range(threads)]
        elapsed, replies = post_all(sessions, url, bodies)
        for s in sessions:
            s.close()
        ok, stored = all_success(replies), count()
        stop_process(proc)
    rate = REQUESTS * BATCH / elapsed
    print(f"profiled simulator round: {rate:,.0f} rows/s under cProfile, {threads} client thr, ", end="")
    print(f"retcodes ok={ok}, stored {stored:,} of {REQUESTS * BATCH:,} rows")
    stats = pstats.Stats(str(out))
    stats.strip_dirs().sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    return 0 if ok and stored == REQUESTS * BATCH else 1


# -- 2. codec build + parse ---------------------------------------------------------------------------


def codec_package(rows: list[dict[str, object]]) -> int:
    """The client and server codec path; returns the number of rows held back or lost (0 when correct)."""
    bad = 0
    offset = int(SVC["timezone_offset_hours"])
    for start in range(0, len(rows), BATCH):
        wire = [row_to_wire(TXN, row, offset) for row in rows[start : start + BATCH]]
        bad += sum(precheck_row(PROFILE, TXN, values, REGISTRY) is not None for values in wire)
        parsed = parse_request(PROFILE, build_request(PROFILE, TXN, wire, **CREDS))
        msg = f"本次上传{len(wire)}条，成功{len(wire)}条，失败0条"
        reply = parse_reply(PROFILE, build_reply(PROFILE, SUCCESS, msg, succnum=len(wire), failnum=0))
        bad += len(wire) - len(parsed.rows) + (reply.status != SUCCESS)
    return bad


CONTROL = [("jyfwbm", TXN.code), ("jyfwyh", USER), ("jyfwyzm", SECRET), ("akb020", INSTITUTION)]
FIELDS = [(spec.name, spec.tag) for spec in TXN.fields]


def codec_reference(rows: list[dict[str, object]]) -> int:
    """Bare lxml: same document shape, str() values, no conversion rules or checks."""
    bad = 0
    sub = etree.SubElement
    for start in range(0, len(rows), BATCH):
        batch = rows[start : start + BATCH]
        root = etree.Element("input")
        control = sub(root, "control")
        for tag, value in CONTROL:
            sub(control, tag).text = value
        sub(control, "nums").text = str(len(batch))
        data = sub(root, "data")
        for row in batch:
            elem = sub(data, "row")
            for name, tag in FIELDS:
                value = row.get(name)
                if value is not None:
                    sub(elem, tag).text = str(value)
        parsed = etree.fromstring(etree.tostring(root, encoding="GBK", xml_declaration=True))
        got = [[(el.tag, el.text) for el in row] for row in parsed.iterfind("data/row")]
        out = etree.Element("output")
        sub(out, "retcode").text = "1"
        reply = etree.fromstring(etree.tostring(out, encoding="GBK", xml_declaration=True))
        bad += len(batch) - len(got) + (reply.findtext("retcode") != "1")
    return bad


def bench_codec() -> tuple[float, float, list[str]]:
    rows = [source_row(f"C{n:08d}", n) for n in range(CODEC_ROWS)]
    errors, best = [], {}
    for name, func in (("package", codec_package), ("reference", codec_reference)):
        times = []
        for _ in range(REPEATS):
            start = time.perf_counter()
            bad = func(rows)
            times.append(time.perf_counter() - start)
            if bad:
                errors.append(f"codec {name}: {bad} rows held back or lost")
        best[name] = CODEC_ROWS / min(times)
    return best["package"], best["reference"], errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--threads", type=int, help=f"client threads (default {THREADS}; 1 with --profile-simulator)"
    )
    parser.add_argument("--profile-simulator", type=Path, metavar="OUT", help="profile one simulator round")
    parser.add_argument("--reference-server", nargs=2, metavar=("PORT", "DB"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--simulator-profiled", nargs=3, metavar=("PORT", "DB", "OUT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.reference_server:
        return serve_reference(int(args.reference_server[0]), Path(args.reference_server[1]))
    if args.simulator_profiled:
        port, db, out = args.simulator_profiled
        return serve_simulator_profiled(int(port), Path(db), Path(out))
    if args.profile_simulator:
        return profile_simulator(args.profile_simulator, args.threads or 1)

    threads = args.threads or THREADS
    signal.signal(signal.SIGTERM, _interrupt)  # a terminated benchmark still stops its server processes
    with tempfile.TemporaryDirectory(prefix="cdyb-bench-") as tmp:
        try:
            sim, sim_ref, sim_errors = bench_simulator(Path(tmp), threads)
        except (RuntimeError, OSError, subprocess.SubprocessError, requests.RequestException) as err:
            print(f"SIMULATOR BENCHMARK FAILED: {err}", file=sys.stderr)
            return 1
    codec, codec_ref, codec_errors = bench_codec()
    print(
        f"{'measurement (best of 3)':<42}{'package':>12}{'bare lxml':>12}{'ratio':>8}{'target':>10}  result"
    )
    for label, pkg, ref, target in (
        (f"simulator SOAP JXC003 {REQUESTS}x{BATCH} rows, {threads} thr", sim, sim_ref, SIM_TARGET),
        (f"codec build+parse {CODEC_ROWS} rows, {BATCH}/batch", codec, codec_ref, CODEC_TARGET),
    ):
        verdict = "PASS" if pkg >= target else "FAIL"
        print(f"{label:<42}{pkg:>12,.0f}{ref:>12,.0f}{pkg / ref:>8.2f}{target:>10,}  {verdict}")
    print("rows/s; ratio = package / bare lxml reference")
    print(
        f"processes: simulator = own `cdyb-jxc simulator serve` process, reference = own python process"
        f" (both SQLite files, own loopback ports, loaded one at a time), client = this process,"
        f" {threads} thr, kept-alive sessions; {os.cpu_count()} CPUs; codec in this process"
    )
    if not sim_errors:
        stored = REPEATS * REQUESTS * BATCH
        print(
            f"checked: every reply retcode 1; simulator (/admin/stats) and reference (SQLite file after exit)"
            f" each stored {stored:,} rows"
        )
    for error in sim_errors + codec_errors:
        print(f"CORRECTNESS FAILURE: {error}")
    return 1 if sim_errors or codec_errors else 0


if __name__ == "__main__":
    sys.exit(main())

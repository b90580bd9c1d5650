"""Throughput benchmark: the simulator over SOAP and the codec, each beside a bare-lxml reference.

1. Simulator: rows/s the real :class:`Simulator` accepts (SQLite file store, 2,000 对码 entries) for
   100-row JXC003 requests prebuilt with the package codec, wrapped in SOAP envelopes and POSTed by 2 client
   threads over kept-alive ``requests.Session`` objects. Only the POST loop is timed. Beside it, a minimal
   ThreadingHTTPServer that parses the envelope and ``inputXml`` with lxml, extracts the rows' (tag, text)
   pairs, inserts them into a SQLite file table in one transaction and returns a fixed reply (no validation),
   driven by the same client code with the same requests. Target: simulator >= 10,000 rows/s.
2. Codec: rows/s for source rows (str, Decimal, datetime, date) through row_to_wire + precheck_row (local
   对码 registry) + build_request (100-row batches) + parse_request + build_reply/parse_reply. Beside it, a
   bare lxml build (SubElement per field, str() values, tostring GBK) and parse (fromstring, iterate rows).
   Target: package >= 30,000 rows/s.

Each measurement is repeated 3 times; the best is reported. Exit status 1 only on a correctness failure
(a reply whose retcode is not 1, a stored-row count that differs from the rows sent, a row held back).
"""

from __future__ import annotations

import json
import sqlite3
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests
from lxml import etree

from cdyb_jxc.codec import SUCCESS, build_reply, build_request, parse_reply, parse_request
from cdyb_jxc.exceptions import CodecError
from cdyb_jxc.profile import load_profile
from cdyb_jxc.simulator.server import SOAP_ENV, Simulator
from cdyb_jxc.simulator.store import SimulatorStore
from cdyb_jxc.validation import MappingEntry, precheck_row
from cdyb_jxc.values import row_to_wire

INSTITUTION, USER, SECRET = "H51010400001", "his_user", "S3cret-验证码-value"
ITEMS = 2_000  # 对码 registry entries
REQUESTS, BATCH, THREADS, REPEATS = 300, 100, 2, 3
CODEC_ROWS = 20_000
SIM_TARGET, CODEC_TARGET = 10_000, 30_000

PROFILE = load_profile()
TXN = PROFILE.transaction("outbound")
SVC = PROFILE.service
HEADERS = {"Content-Type": "text/xml; charset=UTF-8", "SOAPAction": '""'}
CREDS = {"user": USER, "verification_code": SECRET, "institution_code": INSTITUTION}
REGISTRY = {f"M{i:04d}": MappingEntry(f"XA{i:06d}", i % 10 == 9) for i in range(1, ITEMS + 1)}


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


# -- 1. simulator over SOAP ---------------------------------------------------------------------------


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
    """POST every body, THREADS at a time over kept-alive sessions. Returns (seconds, reply bodies)."""

    def worker(t: int) -> list[tuple[int, bytes]]:
        out = []
        for i in range(t, len(bodies), THREADS):
            resp = sessions[t].post(url, data=bodies[i], headers=HEADERS, timeout=60)
            out.append((i, resp.content if resp.status_code == 200 else b""))
        return out

    with ThreadPoolExecutor(THREADS) as pool:
        start = time.perf_counter()
        results = [r for part in pool.map(worker, range(THREADS)) for r in part]
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


class RefHandler(BaseHTTPRequestHandler):
    """Bare lxml reference: parse envelope and inputXml, store (tag, text) pairs, fixed reply. No rules."""

    protocol_version = "HTTP/1.1"
    server: RefServer
    input_path = f"{{{SOAP_ENV}}}Body/{{{SVC['namespace']}}}{SVC['operation']}/{SVC['input_part']}"
    row_path = f"{PROFILE.request['data']}/{PROFILE.request['row']}"
    serial_tag = TXN.by_name["serial_no"].tag

    def log_message(self, format: str, *args: object) -> None:
        pass

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

    def __init__(self, db: Path) -> None:
        super().__init__(("127.0.0.1", 0), RefHandler)
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

    def count(self) -> int:
        with self.lock:
            return int(self.conn.execute("SELECT COUNT(*) FROM ref_row").fetchone()[0])


def bench_simulator(tmp: Path) -> tuple[float, float, list[str]]:
    errors: list[str] = []
    store = SimulatorStore(tmp / "simulator.db")
    store.add_institution(INSTITUTION, "test", USER, SECRET)
    store.add_mapping(
        (INSTITUTION, m, e.insurance_item_code, e.off_hospital_delivery) for m, e in REGISTRY.items()
    )
    sim = Simulator(PROFILE, store, environment="test", host="127.0.0.1", port=0).start()
    ref = RefServer(tmp / "reference.db")
    threading.Thread(target=ref.serve_forever, daemon=True).start()
    ref_url = f"http://127.0.0.1:{ref.server_address[1]}{SVC['path']}"
    sessions = {
        "sim": [requests.Session() for _ in range(THREADS)],
        "ref": [requests.Session() for _ in range(THREADS)],
    }
    best = {"sim": 0.0, "ref": 0.0}
    try:
        for rep in range(REPEATS):
            bodies = request_bodies(f"S{rep}")
            sent = (rep + 1) * REQUESTS * BATCH
            for name, url, count in (("sim", sim.url, store.count_rows), ("ref", ref_url, ref.count)):
                elapsed, replies = post_all(sessions[name], url, bodies)
                best[name] = max(best[name], REQUESTS * BATCH / elapsed)
                if not all_success(replies):
                    errors.append(f"{name} round {rep + 1}: a reply is missing or its retcode is not 1")
                if count() != sent:
                    errors.append(f"{name} round {rep + 1}: store holds {count()} rows, {sent} sent")
    finally:
        for s in (*sessions["sim"], *sessions["ref"]):
            s.close()
        sim.stop()
        store.close()
        ref.shutdown()
        ref.server_close()
    return best["sim"], best["ref"], errors


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
    with tempfile.TemporaryDirectory(prefix="cdyb-bench-") as tmp:
        sim, sim_ref, sim_errors = bench_simulator(Path(tmp))
    codec, codec_ref, codec_errors = bench_codec()
    print(
        f"{'measurement (best of 3)':<42}{'package':>12}{'bare lxml':>12}{'ratio':>8}{'target':>10}  result"
    )
    for label, pkg, ref, target in (
        (f"simulator SOAP JXC003 {REQUESTS}x{BATCH} rows, {THREADS} thr", sim, sim_ref, SIM_TARGET),
        (f"codec build+parse {CODEC_ROWS} rows, {BATCH}/batch", codec, codec_ref, CODEC_TARGET),
    ):
        verdict = "PASS" if pkg >= target else "FAIL"
        print(f"{label:<42}{pkg:>12,.0f}{ref:>12,.0f}{pkg / ref:>8.2f}{target:>10,}  {verdict}")
    print("rows/s; ratio = package / bare lxml reference")
    if not sim_errors:
        stored = REPEATS * REQUESTS * BATCH
        print(f"checked: every reply retcode 1; simulator and reference each stored {stored:,} rows")
    for error in sim_errors + codec_errors:
        print(f"CORRECTNESS FAILURE: {error}")
    return 1 if sim_errors or codec_errors else 0


if __name__ == "__main__":
    sys.exit(main())

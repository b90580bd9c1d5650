"""``cdyb-jxc simulator seed|serve|dump`` as operations teams run them (real processes, real sockets)."""

from __future__ import annotations

import csv
import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import zeep

from cdyb_jxc.wire.codec import FAILURE, PARTIAL, SUCCESS, build_request, parse_reply

CLI = [sys.executable, "-m", "cdyb_jxc"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def seeded_db(tmp_path: Path) -> Path:
    db = tmp_path / "sim.db"
    (tmp_path / "inst.csv").write_text(
        "institution_code,environment,user,verification_code\nH51010400001,test,his,pw-test\n"
        "H51010400001,prod,his,pw-prod\n",
        encoding="utf-8",
    )
    (tmp_path / "map.csv").write_text(
        "institution_code,mapping_serial_no,insurance_item_code,off_hospital_delivery\n"
        + "".join(f"H51010400001,M{i:04d},XA{i:06d},{1 if i == 3 else 0}\n" for i in range(1, 6)),
        encoding="utf-8",
    )
    out = subprocess.run(
        [
            *CLI,
            "simulator",
            "seed",
            "--db",
            str(db),
            "--institutions",
            str(tmp_path / "inst.csv"),
            "--mapping",
            str(tmp_path / "map.csv"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "seeded 2 institution credentials and 5 mapping entries" in out.stdout
    return db


@pytest.fixture
def served(seeded_db: Path):
    port = _free_port()
    proc = subprocess.Popen(
        [*CLI, "simulator", "serve", "--port", str(port), "--db", str(seeded_db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/services/SjcjService"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}?wsdl", timeout=1).status_code == 200:
                break
        except requests.ConnectionError:
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail(f"simulator did not start: {proc.stdout.read() if proc.stdout else ''}")
    yield url, seeded_db, port
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0


def _row(serial: str, i: int = 1) -> dict[str, str]:
    return {
        "serial_no": serial,
        "insurance_item_code": f"XA{i:06d}",
        "hospital_item_name": "布洛芬缓释胶囊",
        "mapping_serial_no": f"M{i:04d}",
        "split_flag": "0",
        "unit": "盒",
        "outbound_type": "21",
        "sale_price": "8.8",
        "quantity": "1",
        "event_time": "2026-11-20 10:00:00",
    }


def _dump(db: Path) -> list[dict[str, str]]:
    out = subprocess.run(
        [*CLI, "simulator", "dump", "--db", str(db)], capture_output=True, text=True, check=True
    )
    return list(csv.DictReader(io.StringIO(out.stdout)))


def test_served_wsdl_shows_call_business(served):
    url, _, _ = served
    out = subprocess.run(
        [sys.executable, "-m", "zeep", f"{url}?wsdl"], capture_output=True, text=True, timeout=60
    )
    assert "callBusiness(inputXml: xsd:string) -> return: xsd:string" in out.stdout


def test_done_when_scenario_limit_and_partial_duplicate(served, profile):
    url, db, _ = served
    client = zeep.Client(f"{url}?wsdl")
    txn = profile.transaction("outbound")

    def call(rows):
        xml = build_request(
            profile, txn, rows, user="his", verification_code="pw-test", institution_code="H51010400001"
        )
        return parse_reply(profile, client.service.callBusiness(inputXml=xml))

    # 101 rows: built by hand since the codec itself refuses to exceed the limit
    from cdyb_jxc.wire.codec import build_request as _br

    big = [_row(f"B{i:03d}") for i in range(101)]
    first = _br(
        profile, txn, big[:100], user="his", verification_code="pw-test", institution_code="H51010400001"
    )
    xml101 = first.replace("<nums>100</nums>", "<nums>101</nums>").replace(
        "</data>",
        "<row>" + first.split("<row>")[1].split("</row>")[0].replace("B000", "B100") + "</row></data>",
    )
    reply = parse_reply(profile, client.service.callBusiness(inputXml=xml101))
    assert reply.status == FAILURE
    assert reply.retmsg == "【单次上传明细条数超过最大限制100条】本次101条"
    assert _dump(db) == []

    assert call([_row("CK1")]).status == SUCCESS
    reply = call([_row("CK2", 2), _row("CK1"), _row("CK3", 3)])
    assert reply.status == PARTIAL
    assert [(f.serial_no, f.category) for f in reply.failures] == [("CK1", "数据重复上传")]
    dumped = _dump(db)
    assert [(r["institution_code"], r["transaction_code"], r["serial_no"]) for r in dumped] == [
        ("H51010400001", "JXC003", "CK1"),
        ("H51010400001", "JXC003", "CK2"),
        ("H51010400001", "JXC003", "CK3"),
    ]
    assert list(dumped[0])[:3] == ["institution_code", "transaction_code", "serial_no"]
    assert dumped[1]["hospital_item_name"] == "布洛芬缓释胶囊"
    assert dumped[1]["sale_price"] == "8.8"


def test_serve_binds_loopback_by_default(served):
    _, _, port = served
    listening = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, _, hex_port = local.partition(":")
        if state == "0A" and int(hex_port, 16) == port:
            listening.append(address)
    assert listening == ["0100007F"]  # 127.0.0.1, not 0.0.0.0


def test_store_survives_restart(served, profile):
    url, db, _ = served
    client = zeep.Client(f"{url}?wsdl")
    xml = build_request(
        profile,
        profile.transaction("outbound"),
        [_row("P1")],
        user="his",
        verification_code="pw-test",
        institution_code="H51010400001",
    )
    assert parse_reply(profile, client.service.callBusiness(inputXml=xml)).status == SUCCESS
    assert [r["serial_no"] for r in _dump(db)] == ["P1"]


def test_seed_rejects_bad_csv(tmp_path):
    (tmp_path / "inst.csv").write_text("institution_code,user\nH1,u\n", encoding="utf-8")
    (tmp_path / "map.csv").write_text("x\n", encoding="utf-8")
    out = subprocess.run(
        [
            *CLI,
            "simulator",
            "seed",
            "--db",
            str(tmp_path / "s.db"),
            "--institutions",
            str(tmp_path / "inst.csv"),
            "--mapping",
            str(tmp_path / "map.csv"),
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert "missing columns: environment, verification_code" in out.stderr


def test_serve_rejects_bad_fault_spec(tmp_path):
    out = subprocess.run(
        [
            *CLI,
            "simulator",
            "serve",
            "--port",
            str(_free_port()),
            "--db",
            str(tmp_path / "s.db"),
            "--faults",
            "nope",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ},
    )
    assert out.returncode == 2
    assert "unknown fault 'nope'" in out.stderr

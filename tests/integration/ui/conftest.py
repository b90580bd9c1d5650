"""The Airflow api-server app (with our plugin mounted) under TestClient, and a ledger with known content."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cdyb_jxc.ledger import Ledger
from cdyb_jxc.ui import app as monitor
from cdyb_jxc.upload.engine import Uploader
from cdyb_jxc.upload.result import RunInfo
from cdyb_jxc.wire.client import CentreClient
from tests.conftest import (
    AIRFLOW_HOME,
    INSTITUTION,
    OTHER_INSTITUTION,
    SECRET,
    USER,
    inbound_row,
    outbound_row,
    stock_row,
)

ADMIN_PASSWORD = "monitor-admin-pw"
TODAY = (datetime.now(UTC) + timedelta(hours=8)).date()  # business days are Asia/Shanghai days
D1 = (TODAY - timedelta(days=2)).isoformat()
D2 = (TODAY - timedelta(days=1)).isoformat()
DAILY = {code: f"cdyb_jxc_daily__{code}" for code in (INSTITUTION, OTHER_INSTITUTION)}


@pytest.fixture(scope="session")
def api_app(airflow_db: Path):
    import os

    passwords = AIRFLOW_HOME / "ui_passwords.json"
    passwords.write_text(json.dumps({"admin": ADMIN_PASSWORD}))
    os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] = "admin:admin"
    os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] = str(passwords)
    from airflow.api_fastapi.app import create_app

    return create_app()


@pytest.fixture
def client(api_app) -> Iterator[TestClient]:
    with TestClient(api_app) as c:
        yield c


@pytest.fixture
def token(client: TestClient) -> str:
    resp = client.post("/auth/token", json={"username": "admin", "password": ADMIN_PASSWORD})
    assert resp.status_code == 201, resp.text
    return resp.json()["access_token"]


def _upload(profile, client: CentreClient, ledger: Ledger, txn: str, rows: list, run: RunInfo) -> None:
    """``rows`` of ``txn`` uploaded for real, as the client's institution, by ``run``."""
    Uploader(
        profile=profile,
        txn_key=txn,
        institution_code=client.institution_code,
        sender=client,
        ledger=ledger,
        run=run,
        resend_attempts=0,
    ).run([rows])


@pytest.fixture
def filled_ledger(tmp_path, monkeypatch, profile, simulator, store):
    """Two business days uploaded for real through the simulator: D1 partial, D2 complete; one conflict."""
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv("CDYB_JXC_LEDGER_URL", url)
    monitor._engine.cache_clear()
    ledger = Ledger(url)
    client = CentreClient(
        profile, endpoint=simulator.url, user=USER, verification_code=SECRET, institution_code=INSTITUTION
    )

    def upload(txn, rows, run_id):
        run = RunInfo(token=run_id, dag_id="cdyb_jxc_daily", run_id=run_id, task_id=f"upload_{txn}")
        _upload(profile, client, ledger, txn, rows, run)

    upload(
        "outbound",
        [outbound_row(f"A{i}", event_time=f"{D1} 10:00:00") for i in range(5)]
        + [
            outbound_row("A-BAD", event_time=f"{D1} 11:00:00", quantity="0"),
            outbound_row("A-UNMAPPED", event_time=f"{D1} 11:00:00", mapping_serial_no="M9999"),
        ],
        "run_d1",
    )
    upload("stock", [stock_row(f"K{i}", stock_date=D1) for i in range(3)], "run_d1")
    upload("outbound", [outbound_row(f"B{i}", event_time=f"{D2} 10:00:00") for i in range(4)], "run_d2")
    # a row someone else already stored: conflict
    other = CentreClient(
        profile, endpoint=simulator.url, user=USER, verification_code=SECRET, institution_code=INSTITUTION
    )
    other.send("stock", [stock_row("K-X", stock_date=D2)])
    upload("stock", [stock_row("K-X", stock_date=D2, stock_quantity="7")], "run_d2")
    # an inbound row without 流水号: never sent, kept as a source issue
    upload("inbound", [inbound_row("", event_time=f"{D2} 09:00:00")], "run_d2")
    yield ledger
    monitor._engine.cache_clear()


@pytest.fixture
def two_institutions(filled_ledger, profile, simulator, store, tmp_path, monkeypatch):
    """The shared ledger: ``INSTITUTION``'s two days, and ``OTHER_INSTITUTION``'s D2 with one reject."""
    store.add_mapping([(OTHER_INSTITUTION, "M0001", "XA000001", False)])
    client = CentreClient(
        profile,
        endpoint=simulator.url,
        user="other",
        verification_code="other-secret",
        institution_code=OTHER_INSTITUTION,
    )
    run = RunInfo(token="o2", dag_id=DAILY[OTHER_INSTITUTION], run_id="o2", task_id="upload_outbound")
    rows = [outbound_row(f"O{i}", event_time=f"{D2} 10:00:00") for i in range(3)]
    rows.append(outbound_row("O-BAD", event_time=f"{D2} 11:00:00", quantity="0"))
    _upload(profile, client, filled_ledger, "outbound", rows, run)
    config = tmp_path / "cdyb_jxc.yaml"
    config.write_text(
        "institutions:\n"
        f"  - code: {INSTITUTION}\n    name: 第一医院\n    conn_id: centre_a\n"
        f"  - code: {OTHER_INSTITUTION}\n    name: 第二医院\n    conn_id: centre_b\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("CDYB_JXC_CONFIG", str(config))
    return filled_ledger

"""The monitor reads the ledger with the profile the uploads use: the one the centre connection names."""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest

from cdyb_jxc.ledger import Ledger
from cdyb_jxc.simulator.server import Simulator
from cdyb_jxc.ui import app as monitor
from cdyb_jxc.upload.result import RunInfo
from cdyb_jxc.wire.client import CentreClient
from cdyb_jxc.wire.profile import load_profile
from tests.conftest import INSTITUTION, SECRET, USER, make_uploader, outbound_row
from tests.integration.ui.conftest import D1

# a deployment whose centre numbers its transactions differently and words a category its own way
CODES = {"JXC001": "YB101", "JXC002": "YB102", "JXC003": "YB103", "JXC004": "YB104"}
UNMAPPED = "医保目录未对码"


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _override(path: Path, codes: dict[str, str]) -> Path:
    text = resources.files("cdyb_jxc").joinpath("data/default_profile.toml").read_text(encoding="utf-8")
    for default, code in codes.items():
        assert f'code = "{default}"' in text
        text = text.replace(f'code = "{default}"', f'code = "{code}"')
    assert 'unmapped = "未对码"' in text
    path.write_text(text.replace('unmapped = "未对码"', f'unmapped = "{UNMAPPED}"'), encoding="utf-8")
    return path


def _centre_connection(monkeypatch: pytest.MonkeyPatch, conn_id: str, profile_path: Path) -> None:
    conn = {
        "conn_type": "cdyb_jxc",
        "host": "http://127.0.0.1:1/services/SjcjService",
        "login": USER,
        "password": SECRET,
        "extra": {"institution_code": INSTITUTION, "environment": "test", "profile": str(profile_path)},
    }
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))


@pytest.fixture
def override_file(tmp_path: Path) -> Path:
    return _override(tmp_path / "override_profile.toml", CODES)


@pytest.fixture
def override_ledger(tmp_path, monkeypatch, override_file, store) -> Iterator[Ledger]:
    """Day D1 uploaded through a centre that speaks the override profile: one row accepted, one not mapped."""
    override = load_profile(override_file)
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv("CDYB_JXC_LEDGER_URL", url)
    monkeypatch.delenv("CDYB_JXC_LEDGER_CONN_ID", raising=False)
    monkeypatch.delenv("AIRFLOW_CONN_CDYB_JXC_DEFAULT", raising=False)
    monkeypatch.delenv("CDYB_JXC_CONN_ID", raising=False)
    monitor._engine.cache_clear()
    ledger = Ledger(url)
    sim = Simulator(override, store).start()
    sender = CentreClient(
        override, endpoint=sim.url, user=USER, verification_code=SECRET, institution_code=INSTITUTION
    )
    rows = [
        outbound_row("P1", event_time=f"{D1} 10:00:00"),
        outbound_row("P-UNMAPPED", event_time=f"{D1} 11:00:00", mapping_serial_no="M9999"),
    ]
    run = RunInfo(token="run_p", dag_id="cdyb_jxc_daily", run_id="run_p", task_id="upload_outbound")
    try:
        make_uploader(override, sender, ledger, run=run).run([rows])
    finally:
        sender.close()
        sim.stop()
    yield ledger
    ledger.dispose()
    monitor._engine.cache_clear()


@pytest.mark.parametrize("conn_id", [None, "cdyb_jxc_east"], ids=["default-connection", "CDYB_JXC_CONN_ID"])
def test_monitor_uses_the_profile_the_centre_connection_names(
    client, token, monkeypatch, override_file, override_ledger, conn_id
):
    if conn_id:
        monkeypatch.setenv("CDYB_JXC_CONN_ID", conn_id)
    _centre_connection(monkeypatch, conn_id or "cdyb_jxc_default", override_file)

    cal = client.get("/cdyb-jxc/api/calendar?days=3", headers=_auth(token)).json()
    assert cal["columns"] == [
        {"code": "YB102", "label": "入库", "key": "inbound"},
        {"code": "YB103", "label": "出库", "key": "outbound"},
        {"code": "YB104", "label": "库存", "key": "stock"},
    ]
    assert cal["names"] == {"YB101": "初始化", "YB102": "入库", "YB103": "出库", "YB104": "库存"}
    day = next(d for d in cal["days"] if d["business_date"] == D1)
    assert day["transactions"]["YB103"]["status"] == "partial"
    assert day["transactions"]["YB104"]["status"] == "missing"
    # D1 is past its T+1 deadline: the row the centre did not accept is overdue in this deployment's codes
    assert client.get("/cdyb-jxc/api/summary", headers=_auth(token)).json()["overdue"] == 1
    rejects = client.get("/cdyb-jxc/api/rejects", params={"transaction": "YB103"}, headers=_auth(token))
    assert rejects.status_code == 200
    assert [(r["serial_no"], r["category"]) for r in rejects.json()["rows"]] == [("P-UNMAPPED", UNMAPPED)]
    # the packaged profile's code is not a transaction of this deployment
    packaged = client.get("/cdyb-jxc/api/rejects", params={"transaction": "JXC003"}, headers=_auth(token))
    assert packaged.status_code == 422


def test_connection_profile_wins_over_cdyb_jxc_profile(
    client, token, monkeypatch, tmp_path, override_file, override_ledger
):
    """As for an upload: the connection's ``profile`` extra first, ``$CDYB_JXC_PROFILE`` only without one."""
    other = _override(tmp_path / "other_profile.toml", {"JXC002": "ZZ102", "JXC003": "ZZ103"})
    monkeypatch.setenv("CDYB_JXC_PROFILE", str(other))
    _centre_connection(monkeypatch, "cdyb_jxc_default", override_file)
    cal = client.get("/cdyb-jxc/api/calendar?days=3", headers=_auth(token)).json()
    assert [c["code"] for c in cal["columns"]] == ["YB102", "YB103", "YB104"]

    monkeypatch.delenv("AIRFLOW_CONN_CDYB_JXC_DEFAULT")
    cal = client.get("/cdyb-jxc/api/calendar?days=3", headers=_auth(token)).json()
    assert [c["code"] for c in cal["columns"]] == ["ZZ102", "ZZ103", "JXC004"]


def test_a_broken_profile_named_by_the_connection_is_reported(
    client, token, monkeypatch, tmp_path, override_ledger
):
    broken = tmp_path / "broken_profile.toml"
    broken.write_text("profile_version = 1\n", encoding="utf-8")
    _centre_connection(monkeypatch, "cdyb_jxc_default", broken)
    resp = client.get("/cdyb-jxc/api/calendar", headers=_auth(token))
    assert resp.status_code == 503
    assert resp.json()["detail"].startswith("接口配置文件错误 (profile): ")

"""The upload monitor's JSON API and pages, mounted in Airflow's api-server app, read from a real ledger."""

from __future__ import annotations

import io

import pandas as pd
import pytest

from cdyb_jxc.ui import app as monitor
from tests.conftest import INSTITUTION, SECRET, USER, outbound_row
from tests.integration.ui.conftest import D1, D2


def _auth(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    "path",
    [
        "/cdyb-jxc/",
        "/cdyb-jxc/run?dag_id=a&run_id=b",
        "/cdyb-jxc/api/summary",
        "/cdyb-jxc/api/calendar",
        "/cdyb-jxc/api/trend",
        "/cdyb-jxc/api/rejects",
        "/cdyb-jxc/api/rejects/export",
        "/cdyb-jxc/api/queues",
        "/cdyb-jxc/api/run?dag_id=a&run_id=b",
    ],
)
def test_anonymous_requests_get_401(client, path):
    assert client.get(path).status_code == 401


def test_forged_token_gets_401(client):
    assert client.get("/cdyb-jxc/api/summary", headers=_auth("not.a.jwt")).status_code == 401


def test_ui_session_cookie_is_accepted(client, token, filled_ledger):
    client.cookies.set("_token", token)
    resp = client.get("/cdyb-jxc/api/summary")
    assert resp.status_code == 200


def test_summary_counts_and_t1_rate(client, token, filled_ledger):
    s = client.get("/cdyb-jxc/api/summary", headers=_auth(token)).json()
    assert s["states"] == {"ACCEPTED": 12, "REJECTED": 2, "DUPLICATE_CONFLICT": 1}
    # D1 was uploaded after the end of D1+1 (late), D2 within T+1: 4 of 12 accepted rows on time
    assert s["t1_compliance_rate"] == round(4 / 12, 4)
    assert s["late"] == 8
    assert (s["in_doubt"], s["conflicts"], s["source_issues"]) == (0, 1, 1)
    # D1 (two days ago) is past its T+1 deadline: its two rejected outbound rows are overdue; D2 is not yet
    assert s["overdue"] == 2
    assert s["last_business_date"] == D2


def test_calendar_colours_days_by_status(client, token, filled_ledger):
    cal = client.get("/cdyb-jxc/api/calendar?days=3", headers=_auth(token)).json()
    days = {d["business_date"]: d["transactions"] for d in cal["days"]}
    assert days[D1]["JXC003"]["status"] == "partial"
    assert days[D1]["JXC004"]["status"] == "late"
    assert days[D1]["JXC002"]["status"] == "missing"
    assert days[D2]["JXC003"]["status"] == "complete"
    assert days[D2]["JXC004"]["status"] == "failed"  # the conflict needs a person
    # the day's only inbound row had no 流水号: nothing sent, not "missing" but failed, with the issue count
    assert (days[D2]["JXC002"]["status"], days[D2]["JXC002"]["source_issues"]) == ("failed", 1)
    assert cal["columns"] == [
        {"code": "JXC002", "label": "入库"},
        {"code": "JXC003", "label": "出库"},
        {"code": "JXC004", "label": "库存"},
    ]
    assert cal["labels"]["missing"] == "缺报"


def test_trend_has_rows_and_reject_rate(client, token, filled_ledger):
    points = client.get("/cdyb-jxc/api/trend", headers=_auth(token)).json()["points"]
    d1 = next(p for p in points if p["business_date"] == D1 and p["transaction_code"] == "JXC003")
    assert (d1["rows"], d1["rejected"], d1["reject_rate"]) == (7, 2, round(2 / 7, 4))


def test_rejects_with_reasons_and_filters(client, token, filled_ledger):
    r = client.get("/cdyb-jxc/api/rejects", headers=_auth(token)).json()
    assert r["total"] == 3
    by_serial = {x["serial_no"]: x for x in r["rows"]}
    assert by_serial["A-BAD"]["detail"] == "出库数量(akc226)必须大于0: '0'"
    assert by_serial["A-BAD"]["category"] == "字段校验失败"
    assert by_serial["A-UNMAPPED"]["category"] == "未对码"
    assert set(r["categories"]) == {"字段校验失败", "未对码", "数据重复上传"}
    only = client.get("/cdyb-jxc/api/rejects", params={"category": "未对码"}, headers=_auth(token)).json()
    assert [x["serial_no"] for x in only["rows"]] == ["A-UNMAPPED"]
    by_item = client.get("/cdyb-jxc/api/rejects", params={"item": "M9999"}, headers=_auth(token)).json()
    assert by_item["total"] == 1
    by_day = client.get(
        "/cdyb-jxc/api/rejects", params={"day": D2, "transaction": "JXC004"}, headers=_auth(token)
    ).json()
    assert [x["serial_no"] for x in by_day["rows"]] == ["K-X"]


def test_rejects_export_csv_and_excel(client, token, filled_ledger):
    csv_resp = client.get(
        "/cdyb-jxc/api/rejects/export", params={"fmt": "csv", "day": D1}, headers=_auth(token)
    )
    assert csv_resp.status_code == 200
    assert csv_resp.headers["content-disposition"].endswith(f'cdyb_jxc_rejects_{D1}.csv"')
    frame = pd.read_csv(io.BytesIO(csv_resp.content), encoding="utf-8-sig")
    assert set(frame["流水号 serial_no"]) == {"A-BAD", "A-UNMAPPED"}
    xlsx = client.get("/cdyb-jxc/api/rejects/export", params={"fmt": "xlsx"}, headers=_auth(token))
    assert xlsx.status_code == 200
    assert len(pd.read_excel(io.BytesIO(xlsx.content))) == 3


def test_queues_list_conflicts(client, token, filled_ledger):
    q = client.get("/cdyb-jxc/api/queues", headers=_auth(token)).json()
    assert q["in_doubt"] == []
    assert [x["serial_no"] for x in q["conflicts"]] == ["K-X"]
    (issue,) = q["source_issues"]
    assert (issue["transaction_code"], issue["business_date"], issue["source_row"]) == ("JXC002", D2, 1)
    assert (issue["category"], issue["detail"]) == ("字段校验失败", "源数据第1行: 流水号(yka105)不能为空")


def test_run_view_shows_that_runs_upload(client, token, filled_ledger):
    r = client.get(
        "/cdyb-jxc/api/run", params={"dag_id": "cdyb_jxc_daily", "run_id": "run_d1"}, headers=_auth(token)
    ).json()
    assert r["transactions"] == {"JXC003": {"ACCEPTED": 5, "REJECTED": 2}, "JXC004": {"ACCEPTED": 3}}
    assert [b["row_count"] for b in r["batches"]] == [6, 3]  # A-BAD held back, never sent
    assert {x["serial_no"] for x in r["rejects"]} == {"A-BAD", "A-UNMAPPED"}


def test_pages_are_served_to_logged_in_users(client, token, filled_ledger):
    page = client.get("/cdyb-jxc/", headers=_auth(token))
    assert page.status_code == 200
    assert "医保上传监控" in page.text
    assert 'id="calendar"' in page.text
    assert client.get("/cdyb-jxc/run?dag_id=x&run_id=y", headers=_auth(token)).status_code == 200


def test_unreachable_ledger_is_reported_not_raised(client, token, monkeypatch):
    monkeypatch.setenv("CDYB_JXC_LEDGER_URL", "postgresql+psycopg2://nobody@127.0.0.1:1/none")
    monitor._engine.cache_clear()
    resp = client.get("/cdyb-jxc/api/summary", headers=_auth(token))
    assert resp.status_code == 503
    assert resp.json()["detail"] == "账本不可达 (ledger unreachable): OperationalError"
    monitor._engine.cache_clear()


def test_plugin_registers_nav_page_and_run_tab(client, token):
    plugins = client.get("/api/v2/plugins", headers=_auth(token)).json()["plugins"]
    ours = [p for p in plugins if p["name"] == "cdyb_jxc"]
    assert len(ours) == 1
    views = {v["destination"]: v for v in ours[0]["external_views"]}
    assert views["nav"]["name"] == "医保上传监控"
    assert views["dag_run"]["href"] == "cdyb-jxc/run?dag_id={DAG_ID}&run_id={RUN_ID}"


def test_ledger_given_as_an_airflow_connection_is_read_with_its_password(
    client, token, monkeypatch, pg_database, profile, simulator
):
    """Operators (``ledger_conn_id``) and the monitor (``CDYB_JXC_LEDGER_CONN_ID``) share a PostgreSQL
    ledger named by an Airflow connection; the monitor must not lose the password (``str(url)`` masks it)."""
    from sqlalchemy import create_engine, make_url

    from cdyb_jxc.client import CentreClient
    from cdyb_jxc.ledger.schema import metadata
    from cdyb_jxc.operators.upload import make_ledger
    from cdyb_jxc.upload import Uploader

    engine = create_engine(pg_database)
    metadata.drop_all(engine)
    engine.dispose()
    url = make_url(pg_database).set(drivername="postgresql", password="ledger-pw-1")
    monkeypatch.setenv("AIRFLOW_CONN_LEDGER_PG", url.render_as_string(hide_password=False))
    monkeypatch.setenv("CDYB_JXC_LEDGER_CONN_ID", "ledger_pg")
    ledger = make_ledger(ledger_conn_id="ledger_pg")
    sender = CentreClient(
        profile, endpoint=simulator.url, user=USER, verification_code=SECRET, institution_code=INSTITUTION
    )
    Uploader(
        profile=profile, txn_key="outbound", institution_code=INSTITUTION, sender=sender, ledger=ledger
    ).run([[outbound_row("PG-1")]])
    ledger.dispose()
    monitor._engine.cache_clear()
    try:
        assert monitor.ledger_url().password == "ledger-pw-1"
        s = client.get("/cdyb-jxc/api/summary", headers=_auth(token)).json()
        assert s["states"] == {"ACCEPTED": 1}
    finally:
        monitor._engine.cache_clear()

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
        "/cdyb-jxc/api/balance?day=2026-11-29",
        "/cdyb-jxc/api/day?day=2026-11-29&transaction=JXC003",
        "/cdyb-jxc/api/institutions",
        "/cdyb-jxc/static/monitor.js",
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
        {"code": "JXC002", "label": "入库", "key": "inbound"},
        {"code": "JXC003", "label": "出库", "key": "outbound"},
        {"code": "JXC004", "label": "库存", "key": "stock"},
    ]
    assert cal["labels"]["missing"] == "缺报"


def test_trend_has_rows_and_reject_rate(client, token, filled_ledger):
    points = client.get("/cdyb-jxc/api/trend", headers=_auth(token)).json()["points"]
    d1 = next(p for p in points if p["business_date"] == D1 and p["transaction_code"] == "JXC003")
    assert (d1["rows"], d1["rejected"], d1["reject_rate"]) == (7, 2, round(2 / 7, 4))
    # D1 was uploaded after its T+1 deadline: its 5 accepted rows all came late; D2's 4 on time
    assert (d1["late"], d1["late_rate"]) == (5, 1.0)
    d2 = next(p for p in points if p["business_date"] == D2 and p["transaction_code"] == "JXC003")
    assert (d2["late"], d2["late_rate"]) == (0, 0.0)


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

    from cdyb_jxc.ledger.schema import metadata
    from cdyb_jxc.operators.upload import make_ledger
    from cdyb_jxc.upload.engine import Uploader
    from cdyb_jxc.wire.client import CentreClient

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


# --- every query parameter is checked: a 422, never a 500, never reflected into a header -------------------

HEADER_INJECTION = "2026-11-20\r\nSet-Cookie: pwned=1"
BAD_PARAMETERS = [
    ("/cdyb-jxc/api/rejects", {"day": "2026-13-45"}),
    ("/cdyb-jxc/api/rejects", {"day": "2026-02-30"}),
    ("/cdyb-jxc/api/rejects", {"day": "' OR 1=1 --"}),
    ("/cdyb-jxc/api/rejects", {"day": "２０２６-１１-２０"}),
    ("/cdyb-jxc/api/rejects", {"day": HEADER_INJECTION}),
    ("/cdyb-jxc/api/rejects", {"transaction": "JXC999"}),
    ("/cdyb-jxc/api/rejects", {"transaction": "J" * 17}),
    ("/cdyb-jxc/api/rejects", {"category": "未" * 201}),
    ("/cdyb-jxc/api/rejects", {"category": "未对码\x00"}),
    ("/cdyb-jxc/api/rejects", {"item": "x" * 201}),
    ("/cdyb-jxc/api/rejects", {"item": "M\x00"}),
    ("/cdyb-jxc/api/rejects", {"limit": "0"}),
    ("/cdyb-jxc/api/rejects", {"limit": "1000000"}),
    ("/cdyb-jxc/api/rejects", {"offset": "-1"}),
    ("/cdyb-jxc/api/rejects", {"offset": str(10**30)}),
    ("/cdyb-jxc/api/rejects/export", {"day": HEADER_INJECTION}),
    ("/cdyb-jxc/api/rejects/export", {"day": '2026-11-20"; filename="evil.exe'}),
    ("/cdyb-jxc/api/rejects/export", {"fmt": "pdf"}),
    ("/cdyb-jxc/api/rejects/export", {"fmt": "csv\r\nX: y"}),
    ("/cdyb-jxc/api/rejects/export", {"transaction": "JXC999"}),
    ("/cdyb-jxc/api/calendar", {"today": "0001-01-01"}),
    ("/cdyb-jxc/api/calendar", {"today": "9999-12-31"}),
    ("/cdyb-jxc/api/calendar", {"today": "tomorrow"}),
    ("/cdyb-jxc/api/calendar", {"today": "1700000000"}),
    ("/cdyb-jxc/api/calendar", {"days": "0"}),
    ("/cdyb-jxc/api/calendar", {"days": str(10**30)}),
    ("/cdyb-jxc/api/trend", {"today": "0001-01-01"}),
    ("/cdyb-jxc/api/trend", {"days": "-1"}),
    ("/cdyb-jxc/api/run", {"dag_id": "d" * 251, "run_id": "r"}),
    ("/cdyb-jxc/api/run", {"dag_id": "cdyb_jxc_daily", "run_id": "r\x00"}),
    ("/cdyb-jxc/api/run", {"dag_id": "cdyb_jxc_daily"}),
]


@pytest.mark.parametrize(("path", "params"), BAD_PARAMETERS)
def test_bad_query_parameter_is_a_422_and_never_reaches_a_header(client, token, filled_ledger, path, params):
    resp = client.get(path, params=params, headers=_auth(token))
    assert resp.status_code == 422, resp.text
    for name, value in resp.headers.items():
        assert "pwned" not in value, (name, value)
        assert "evil" not in value, (name, value)
    assert "set-cookie" not in resp.headers


def test_export_file_name_is_built_from_checked_values_only(client, token, filled_ledger):
    plain = client.get("/cdyb-jxc/api/rejects/export", params={"fmt": "xlsx"}, headers=_auth(token))
    assert plain.headers["content-disposition"] == 'attachment; filename="cdyb_jxc_rejects_all.xlsx"'
    dated = client.get("/cdyb-jxc/api/rejects/export", params={"day": D2}, headers=_auth(token))
    assert dated.headers["content-disposition"] == f'attachment; filename="cdyb_jxc_rejects_{D2}.csv"'


def test_empty_filters_mean_no_filter_and_the_item_filter_is_a_plain_substring(client, token, filled_ledger):
    every = client.get(
        "/cdyb-jxc/api/rejects", params={"day": "", "transaction": "", "item": ""}, headers=_auth(token)
    )
    assert every.json()["total"] == 3
    # % and _ are not wildcards: no item contains them
    for pattern in ("%", "_", "A%BAD"):
        resp = client.get("/cdyb-jxc/api/rejects", params={"item": pattern}, headers=_auth(token))
        assert resp.json()["total"] == 0, pattern


@pytest.mark.parametrize("path", ["/cdyb-jxc/docs", "/cdyb-jxc/redoc", "/cdyb-jxc/openapi.json"])
def test_monitor_publishes_no_api_docs(client, token, path):
    assert client.get(path).status_code in (401, 404)
    assert client.get(path, headers=_auth(token)).status_code == 404


FORMULA_TEXTS = ['=HYPERLINK("http://evil.example","x")', "+1+1", "-1+1", "@SUM(1)", "\t=1", "\r=1"]


def _formula_rows(day):
    from datetime import datetime

    now = datetime(2026, 11, 21, 1, 0)
    rows = []
    for i, text in enumerate(FORMULA_TEXTS):
        rows.append(
            {
                "institution_code": INSTITUTION,
                "serial_no": f"{text}{i}",
                "transaction_code": "JXC003",
                "business_date": day,
                "mapping_serial_no": text,
                "item_name": text,
                "payload_hash": "0" * 64,
                "state": "REJECTED",
                "category": "字段校验失败",
                "field": text,
                "detail": text,
                "attempts": 1,
                "held_back": 0,
                "first_seen_at": now,
                "updated_at": now,
            }
        )
    return rows


def test_exports_hold_no_live_formula(client, token, filled_ledger):
    from openpyxl import load_workbook

    day = "2026-01-05"
    filled_ledger.insert_rows(_formula_rows(day))
    csv_resp = client.get(
        "/cdyb-jxc/api/rejects/export", params={"fmt": "csv", "day": day}, headers=_auth(token)
    )
    frame = pd.read_csv(io.BytesIO(csv_resp.content), encoding="utf-8-sig", dtype=str, keep_default_na=False)
    assert len(frame) == len(FORMULA_TEXTS)
    for column in ("流水号 serial_no", "医院项目名称 hospital_item_name", "原因 reason", "字段 field"):
        assert sorted(frame[column]) == sorted(
            "'" + t + (str(i) if column.startswith("流水号") else "") for i, t in enumerate(FORMULA_TEXTS)
        )
    assert set(frame["发送次数 attempts"]) == {"1"}  # numbers stay numbers (no quote)
    xlsx = client.get(
        "/cdyb-jxc/api/rejects/export", params={"fmt": "xlsx", "day": day}, headers=_auth(token)
    )
    sheet = load_workbook(io.BytesIO(xlsx.content)).active
    cells = [cell for row in sheet.iter_rows() for cell in row]
    assert [c.coordinate for c in cells if c.data_type == "f"] == []
    items = sorted(row[4].value for row in sheet.iter_rows(min_row=2))
    assert items == sorted(FORMULA_TEXTS)  # the exact text, as string cells
    assert {row[10].value for row in sheet.iter_rows(min_row=2)} == {1}


def test_bad_profile_is_a_503_naming_the_key_not_a_500(client, token, filled_ledger, tmp_path, monkeypatch):
    from importlib import resources

    text = resources.files("cdyb_jxc").joinpath("data/default_profile.toml").read_text(encoding="utf-8")
    path = tmp_path / "latin1.toml"
    path.write_text(text.replace('inner_encoding = "GBK"', 'inner_encoding = "latin-1"'), encoding="utf-8")
    monkeypatch.setenv("CDYB_JXC_PROFILE", str(path))
    resp = client.get("/cdyb-jxc/api/calendar", headers=_auth(token))
    assert resp.status_code == 503
    assert resp.json()["detail"] == (
        "接口配置文件错误 (profile): profile key service.inner_encoding must hold every GBK character in two "
        "bytes (GBK or GB18030), not 'latin-1'"
    )


def test_summary_counts_rows_accepted_on_their_own_day_beside_t1(tmp_path):
    from datetime import datetime

    from cdyb_jxc.ledger import Ledger
    from cdyb_jxc.ui import queries

    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    at = datetime(2026, 11, 30, 12)
    # seconds from the T+1 deadline (end of D+1): on day D itself, on D+1, after the deadline
    lateness = {"T0-1": -90_000.0, "T0-2": -86_400.0, "T1-1": -3_600.0, "LATE": 120.0}
    ledger.insert_rows([
        {
            "institution_code": INSTITUTION, "serial_no": serial, "transaction_code": "JXC003",
            "business_date": "2026-11-29", "payload_hash": "h", "state": "ACCEPTED", "attempts": 1,
            "held_back": 0, "first_seen_at": at, "updated_at": at, "accepted_at": at, "late_seconds": late,
        }
        for serial, late in lateness.items()
    ])  # fmt: skip
    s = queries.summary(ledger.engine)
    ledger.dispose()
    assert (s["accepted"], s["same_day"], s["late"]) == (4, 2, 1)
    assert s["t0_rate"] == 0.5
    assert s["t1_compliance_rate"] == 0.75


def test_the_calendar_shows_each_days_balance_and_the_day_lists_its_items(
    client, token, filled_ledger, tmp_path
):
    from cdyb_jxc.upload.balance import write_balance_report

    report = write_balance_report(filled_ledger, INSTITUTION, D1, tmp_path / "reports")
    cal = client.get("/cdyb-jxc/api/calendar?days=3", headers=_auth(token)).json()
    by_day = {d["business_date"]: d["balance"] for d in cal["days"]}
    # D1 has stock but no opening (no initialization, no stock the day before): not checkable, not ok
    assert by_day[D1]["status"] == "unchecked"
    assert by_day[D1]["items"] == report.items > 0
    assert by_day[D2]["status"] == "none"  # not audited
    day = client.get(f"/cdyb-jxc/api/balance?day={D1}", headers=_auth(token)).json()
    assert day["status"] == "unchecked"
    accepted = [r for r in day["rows"] if r["status"] is not None]
    assert {r["status"] for r in accepted} == {"no_opening"}
    assert len(accepted) == day["unchecked"]
    # an item whose every row was refused (未对码) is in the source's audit only
    refused = {r["mapping_serial_no"]: r for r in day["rows"] if r["status"] is None}
    assert refused["M9999"]["source_status"] == "no_opening"
    assert client.get("/cdyb-jxc/api/balance?day=not-a-day", headers=_auth(token)).status_code == 422


@pytest.mark.parametrize("filters", [{}, {"day": D1}, {"category": "未对码"}, {"transaction": "JXC004"}])
def test_reject_pages_from_the_day_counts_are_the_pages_the_rows_give(filled_ledger, filters):
    from cdyb_jxc.ui import rejects

    engine = filled_ledger.engine
    for offset in range(5):
        counted = rejects.rejects(engine, limit=1, offset=offset, **filters)
        scanned = rejects._rejects_from_rows(engine, 1, offset, **filters)
        assert counted == scanned
    everything = rejects.rejects(engine, limit=10)
    assert everything["total"] == 3
    assert [r["business_date"] for r in everything["rows"]] == [D2, D1, D1]  # latest day first


def test_a_ledger_without_day_counts_is_read_from_its_rows_alike(filled_ledger):
    from sqlalchemy import text

    from cdyb_jxc.ui import queries, rejects

    engine = filled_ledger.engine
    today = queries.local_today()
    routes = {
        "summary": lambda: queries.summary(engine, today),
        "calendar": lambda: queries.calendar(engine, 7, today),
        "trend": lambda: queries.trend(engine, 7, today),
        "rejects": lambda: rejects.rejects(engine, limit=2, offset=1),
        "rejects by category": lambda: rejects.rejects(engine, category="未对码"),
    }
    counted = {name: route() for name, route in routes.items()}
    with engine.begin() as conn:  # as a ledger of an earlier version, which the monitor never upgrades
        conn.execute(text("DROP TABLE cdyb_jxc_day_count"))
    assert {name: route() for name, route in routes.items()} == counted


def test_a_calendar_cell_opens_to_its_counts_reasons_and_runs(client, token, filled_ledger):
    cell = client.get(f"/cdyb-jxc/api/day?day={D1}&transaction=JXC003", headers=_auth(token)).json()
    assert (cell["business_date"], cell["transaction_code"], cell["rows"]) == (D1, "JXC003", 7)
    assert cell["states"] == {"ACCEPTED": 5, "REJECTED": 2}
    assert sum(cell["categories"].values()) == 2
    assert "未对码" in cell["categories"]
    reasons = {r["serial_no"]: (r["category"], r["detail"]) for r in cell["rejects"]["rows"]}
    assert set(reasons) == {"A-BAD", "A-UNMAPPED"}
    assert all(category and detail for category, detail in reasons.values())  # every reject says why
    assert cell["runs"] == [{"dag_id": "cdyb_jxc_daily", "run_id": "run_d1", "rows": 7}]
    assert (cell["in_doubt"], cell["source_issues"]) == ([], [])
    assert cell["balance"]["status"] == "none"  # not audited

    inbound = client.get(f"/cdyb-jxc/api/day?day={D2}&transaction=JXC002", headers=_auth(token)).json()
    (issue,) = inbound["source_issues"]
    assert issue["field"] == "serial_no"
    assert issue["detail"]
    assert inbound["rows"] == 0  # the row without 流水号 never reached the ledger's rows


@pytest.mark.parametrize(
    "query", ["day=2026-02-30&transaction=JXC003", f"day={D1}&transaction=JXC999", f"day={D1}"]
)
def test_a_bad_calendar_cell_is_a_422(client, token, filled_ledger, query):
    assert client.get(f"/cdyb-jxc/api/day?{query}", headers=_auth(token)).status_code == 422


def test_the_vendored_echarts_is_the_npm_release_recorded_beside_it_with_its_licence(client, token):
    import hashlib
    from importlib import resources

    recorded = dict(
        line.split("=", 1)
        for line in resources.files("cdyb_jxc.ui").joinpath("static/echarts/VERSION").read_text().split()
    )
    script = client.get("/cdyb-jxc/static/echarts.min.js", headers=_auth(token))
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert hashlib.sha256(script.content).hexdigest() == recorded["sha256"]
    assert recorded["integrity"].startswith("sha512-")
    licence = client.get("/cdyb-jxc/static/echarts-LICENSE", headers=_auth(token)).text
    assert "Apache License" in licence
    assert "Apache ECharts" in client.get("/cdyb-jxc/static/echarts-NOTICE", headers=_auth(token)).text


@pytest.mark.parametrize("name", ["app.py", "..%2Fapp.py", "echarts/LICENSE", "monitor.html"])
def test_only_the_pages_assets_are_served(client, token, name):
    assert client.get(f"/cdyb-jxc/static/{name}", headers=_auth(token)).status_code in (404, 422)

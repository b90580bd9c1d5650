"""A real browser: Airflow's api-server with the plugin, headless Chromium logs in and opens 医保上传监控."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from tests.conftest import INSTITUTION, OTHER_INSTITUTION
from tests.integration.ui.conftest import ADMIN_PASSWORD, D1, D2, DAILY

REPO = Path(__file__).resolve().parents[3]
ARTIFACTS = REPO / "var" / "test-artifacts"
VIEWER_PASSWORD = "monitor-viewer-pw"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def api_server(airflow_db, two_institutions, tmp_path):
    """Airflow's api-server with the plugin, on a metadata database of its own that holds the packaged DAGs
    of the two institutions (so that 补传 can create a run); users ``admin`` and ``viewer``."""
    port = _free_port()
    passwords = tmp_path / "passwords.json"
    passwords.write_text(json.dumps({"admin": ADMIN_PASSWORD, "viewer": VIEWER_PASSWORD}))
    env = {
        **os.environ,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin,viewer:viewer",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
    }
    for step in (["db", "migrate"], ["dags", "reserialize"]):
        out = subprocess.run(
            [sys.executable, "-m", "airflow", *step], env=env, capture_output=True, text=True, timeout=600
        )
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    log = (tmp_path / "api-server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "airflow", "api-server", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.RequestException):
            if requests.get(f"{base}/api/v2/monitor/health", timeout=2).status_code == 200:
                break
        time.sleep(1)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("api-server did not start:\n" + (tmp_path / "api-server.log").read_text()[-3000:])
    yield base
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
    log.close()


@pytest.fixture
def browser(tmp_path):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.fail(
            "chromium and chromedriver are required (scripts/test.sh installs them: apt-get install "
            "chromium chromium-driver)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1400,2200",
        f"--user-data-dir={tmp_path / 'chrome'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _log_in(browser, base: str, user: str, password: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    browser.delete_all_cookies()
    browser.get(f"{base}/auth/login")
    WebDriverWait(browser, 60).until(ec.presence_of_element_located((By.NAME, "username"))).send_keys(user)
    browser.find_element(By.NAME, "password").send_keys(password)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(browser, 60).until(lambda d: any(c["name"] == "_token" for c in d.get_cookies()))


def _open_monitor(browser, url: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url)
    loaded = WebDriverWait(browser, 60).until(
        lambda d: (
            d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded") in ("1", "error")
            and d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded")
        )
    )
    assert loaded == "1", browser.find_element(By.ID, "banner").text


def _drill_into(browser, day: str, code: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.find_element(By.CSS_SELECTOR, f'#calendar td.cell[data-day="{day}"][data-txn="{code}"]').click()
    WebDriverWait(browser, 30).until(lambda d: day in d.find_element(By.ID, "detail-title").text)
    return browser.find_element(By.ID, "detail")


def test_admin_drills_into_a_partial_day_and_triggers_a_resend(api_server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    wait = WebDriverWait(browser, 60)
    # anonymous: the monitor refuses
    browser.get(f"{api_server}/cdyb-jxc/api/summary")
    assert "not authenticated" in browser.page_source
    _log_in(browser, api_server, "admin", ADMIN_PASSWORD)
    _open_monitor(browser, f"{api_server}/cdyb-jxc/")
    choices = [o.get_attribute("value") for o in Select(browser.find_element(By.ID, "institution")).options]
    assert choices == ["", INSTITUTION, OTHER_INSTITUTION]
    # the charts are the vendored ECharts release, fed the trend: rows per day of each transaction
    recorded = (REPO / "plugins/cdyb_jxc/ui/static/echarts/VERSION").read_text().split()
    assert f"version={browser.execute_script('return echarts.version')}" in recorded
    series = browser.execute_script(
        "return echarts.getInstanceByDom(document.getElementById('chart-rows')).getOption().series"
        ".map((s) => [s.name, s.data]);"
    )
    assert ["出库 JXC003", [7, 8]] in series  # D1: the first institution's 7; D2: 4 of each
    assert browser.find_elements(By.CSS_SELECTOR, "#chart-rows svg text")
    assert "T+1 合规率" in browser.find_element(By.ID, "t1-rate").text
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "monitor-overview.png"))
    # choose the first institution: its D1 outbound is partly rejected
    Select(browser.find_element(By.ID, "institution")).select_by_value(INSTITUTION)
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded") == "1")
    cell = browser.find_element(By.CSS_SELECTOR, f'#calendar td.cell[data-day="{D1}"][data-txn="JXC003"]')
    assert cell.get_attribute("data-status") == "partial"
    statuses = {
        c.get_attribute("data-status") for c in browser.find_elements(By.CSS_SELECTOR, "#calendar td.cell")
    }
    assert "missing" in statuses
    detail = _drill_into(browser, D1, "JXC003")
    reasons = [r.text for r in detail.find_elements(By.CSS_SELECTOR, "#detail-rejects td.reason")]
    assert "出库数量(akc226)必须大于0: '0'" in reasons
    assert "run_d1" in detail.find_element(By.ID, "detail-runs").text
    issues = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#queue-source tr.source-issue")]
    assert any("源数据第1行: 流水号(yka105)不能为空" in text for text in issues), issues
    assert browser.save_screenshot(str(ARTIFACTS / "monitor-drilldown.png"))
    # 补传 through Airflow's REST API as the admin: a run of the institution's daily DAG is created
    browser.find_element(By.ID, "rerun").click()
    wait.until(lambda d: d.find_element(By.ID, "rerun-status").get_attribute("data-run-id"))
    run_id = browser.find_element(By.ID, "rerun-status").get_attribute("data-run-id")
    token = requests.post(
        f"{api_server}/auth/token", json={"username": "admin", "password": ADMIN_PASSWORD}, timeout=10
    ).json()["access_token"]
    run = requests.get(
        f"{api_server}/api/v2/dags/{DAILY[INSTITUTION]}/dagRuns/{run_id}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    ).json()
    assert run["conf"] == {"business_date": D1}
    wait.until(lambda d: d.find_element(By.ID, "rerun-state").get_attribute("data-state"))
    # the tab of one DAG run
    browser.get(f"{api_server}/cdyb-jxc/run?dag_id=cdyb_jxc_daily&run_id=run_d1")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#batches tbody tr"))
    assert "A-UNMAPPED" in browser.find_element(By.ID, "rejects").text
    browser.save_screenshot(str(ARTIFACTS / "upload-monitor-run-tab.png"))


def test_a_viewer_reads_the_monitor_but_airflow_refuses_its_resend(api_server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _log_in(browser, api_server, "viewer", VIEWER_PASSWORD)
    _open_monitor(browser, f"{api_server}/cdyb-jxc/?institution={OTHER_INSTITUTION}&theme=dark")
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("data-theme") == "dark"
    detail = _drill_into(browser, D2, "JXC003")
    assert "出库数量(akc226)必须大于0: '0'" in detail.find_element(By.ID, "detail-rejects").text
    browser.find_element(By.ID, "rerun").click()
    refused = WebDriverWait(browser, 30).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "#rerun-status .refused[data-refused]")
    )
    assert refused[0].get_attribute("data-refused") == "403"
    assert not browser.find_element(By.ID, "rerun-status").get_attribute("data-run-id")
    assert browser.save_screenshot(str(ARTIFACTS / "monitor-viewer-dark.png"))

"""A real browser: Airflow's api-server with the plugin, headless Chromium logs in and opens 医保上传监控."""

from __future__ import annotations

import contextlib
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

from tests.conftest import AIRFLOW_HOME
from tests.integration.ui.conftest import ADMIN_PASSWORD, D1

REPO = Path(__file__).resolve().parents[3]
ARTIFACTS = REPO / "var" / "test-artifacts"
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def api_server(airflow_db, filled_ledger, tmp_path):
    port = _free_port()
    env = {
        **os.environ,
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(AIRFLOW_HOME / "ui_passwords.json"),
    }
    (AIRFLOW_HOME / "ui_passwords.json").write_text(f'{{"admin": "{ADMIN_PASSWORD}"}}')
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


def test_logged_in_user_sees_calendar_rejects_and_charts(api_server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60)
    # anonymous: the monitor refuses
    browser.get(f"{api_server}/cdyb-jxc/api/summary")
    assert "not authenticated" in browser.page_source
    # log in through Airflow's own login form
    browser.get(f"{api_server}/auth/login")
    wait.until(ec.presence_of_element_located((By.NAME, "username"))).send_keys("admin")
    browser.find_element(By.NAME, "password").send_keys(ADMIN_PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(lambda d: any(c["name"] == "_token" for c in d.get_cookies()))
    # the page people open every morning
    browser.get(f"{api_server}/cdyb-jxc/")
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded") in ("1", "error"))
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-loaded") == "1", (
        browser.find_element(By.ID, "banner").text
    )
    cells = browser.find_elements(By.CSS_SELECTOR, "#calendar td[data-status]")
    statuses = {c.get_attribute("data-status") for c in cells}
    assert {"partial", "missing"} <= statuses
    day_row = next(r for r in browser.find_elements(By.CSS_SELECTOR, "#calendar tbody tr") if D1 in r.text)
    assert "部分被拒" in day_row.text
    reasons = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#rejects td.reason")]
    assert "出库数量(akc226)必须大于0: '0'" in reasons
    issues = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#queue-source tr.source-issue")]
    assert any("源数据第1行: 流水号(yka105)不能为空" in text for text in issues), issues
    assert browser.find_elements(By.CSS_SELECTOR, "#chart-rows polyline.series")
    assert "T+1 合规率" in browser.find_element(By.ID, "t1-rate").text
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "upload-monitor.png"
    assert browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    # the tab of one DAG run
    browser.get(f"{api_server}/cdyb-jxc/run?dag_id=cdyb_jxc_daily&run_id=run_d1")
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#batches tbody tr"))
    assert "A-UNMAPPED" in browser.find_element(By.ID, "rejects").text
    browser.save_screenshot(str(ARTIFACTS / "upload-monitor-run-tab.png"))

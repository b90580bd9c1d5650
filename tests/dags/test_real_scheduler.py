"""A real deployment: scheduler, dag-processor, api-server (LocalExecutor) on a PostgreSQL metadata database.

The DAGs are unpaused and triggered through the REST API like an operator would, then backfilled with
`airflow backfill create`; every run is waited on until success, then the simulator's store is checked
against the ledger.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from cdyb_jxc.ledger import Ledger
from tests.conftest import INSTITUTION, SECRET, USER

REPO = Path(__file__).resolve().parents[2]
ADMIN_PASSWORD = "cdyb-jxc-admin-pw"


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def deployment(tmp_path: Path, pg_db: str, simulator, store, demo_env) -> Iterator[dict]:
    home = tmp_path / "airflow"
    home.mkdir()
    port = _free_port()
    (home / "passwords.json").write_text(json.dumps({"admin": ADMIN_PASSWORD}))
    ledger_url = pg_db  # the production path: ledger on PostgreSQL too (own tables, same database)
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg_db,
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "CDYB_JXC_LEDGER_URL": ledger_url,
        "AIRFLOW_CONN_CDYB_JXC_DEFAULT": json.dumps(
            {
                "conn_type": "cdyb_jxc",
                "host": simulator.url,
                "login": USER,
                "password": SECRET,
                "extra": {"institution_code": INSTITUTION, "environment": "test"},
            }
        ),
    }
    airflow = [sys.executable, "-m", "airflow"]
    migrate = subprocess.run(
        [*airflow, "db", "migrate"], env=env, capture_output=True, text=True, timeout=600
    )
    assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]
    procs = []
    logs = []
    for component in (["scheduler"], ["dag-processor"], ["api-server", "--port", str(port)]):
        log = (tmp_path / f"{component[0]}.log").open("w")
        logs.append(log)
        procs.append(
            subprocess.Popen(
                [*airflow, *component], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(
            lambda: requests.get(f"{base}/api/v2/monitor/health", timeout=2).status_code == 200,
            180,
            "api-server",
        )
        token = requests.post(
            f"{base}/auth/token", json={"username": "admin", "password": ADMIN_PASSWORD}, timeout=10
        ).json()["access_token"]
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        yield {"base": base, "session": session, "ledger_url": ledger_url, "logs": tmp_path, "env": env}
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        for log in logs:
            log.close()


def _wait(check, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except requests.RequestException:
            pass
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def _run_to_end(api: dict, dag_id: str, body: dict) -> dict:
    base, s = api["base"], api["session"]
    _wait(
        lambda: s.get(f"{base}/api/v2/dags/{dag_id}", timeout=5).status_code == 200, 180, f"{dag_id} parsed"
    )
    assert s.patch(f"{base}/api/v2/dags/{dag_id}", json={"is_paused": False}, timeout=10).status_code == 200
    resp = s.post(f"{base}/api/v2/dags/{dag_id}/dagRuns", json=body, timeout=10)
    assert resp.status_code == 200, resp.text
    run_id = resp.json()["dag_run_id"]
    state: dict = {}

    def finished() -> bool:
        state.update(s.get(f"{base}/api/v2/dags/{dag_id}/dagRuns/{run_id}", timeout=5).json())
        return state["state"] in ("success", "failed")

    try:
        _wait(finished, 300, f"{dag_id} run {run_id}")
    except AssertionError:
        for log in sorted(Path(api["logs"]).glob("*.log")):
            print(f"==== {log.name}\n" + log.read_text(errors="replace")[-4000:])
        raise
    tis = s.get(f"{base}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", timeout=5).json()
    state["tasks"] = {ti["task_id"]: ti["state"] for ti in tis["task_instances"]}
    return state


def test_scheduler_runs_init_and_daily_triggered_through_the_rest_api(deployment, store, demo_env):
    init = _run_to_end(deployment, "cdyb_jxc_init", {"logical_date": None})
    assert init["state"] == "success", init["tasks"]
    day0, day = demo_env["days"][:2]
    # a manual run for one business day, the way the trigger form's business_date param does it (unpausing
    # also lets the scheduler start the latest scheduled run, catchup off: yesterday, day 2)
    daily = _run_to_end(deployment, "cdyb_jxc_daily", {"logical_date": None, "conf": {"business_date": day}})
    assert daily["state"] == "success", daily["tasks"]
    assert daily["tasks"]["upload_stock"] == "success"
    assert daily["tasks"]["done"] == "success"
    every_run = _wait_for_runs(deployment, "cdyb_jxc_daily")
    assert {r["state"] for r in every_run} == {"success"}, every_run
    stored = {(r["transaction_code"], r["serial_no"]) for r in store.accepted_rows()}
    assert {t for t, _ in stored} == {"JXC001", "JXC002", "JXC003", "JXC004"}
    assert day in _stock_dates(store)
    assert day0 not in _stock_dates(store)
    ledger = Ledger(deployment["ledger_url"])
    assert stored == _ledger_accepted(ledger)

    # `airflow backfill create` over day 0 (new) and day 1 (already uploaded): day 1 sends nothing again,
    # but its returns refused 【原出库记录不存在】 for an outbound of day 0, which goes now (resend_returns).
    # Scheduled and backfill runs cover the data interval that starts at their logical date (02:00 +08:00).
    day1_rows = _stored_on(store, day)
    waiting_returns = {
        r["serial_no"]
        for r in ledger.iter_rows()
        if r["business_date"] == day and r["category"] == "原出库记录不存在"
    }
    before = {r["serial_no"] for r in store.accepted_rows()}
    backfill = subprocess.run(
        [
            sys.executable,
            "-m",
            "airflow",
            "backfill",
            "create",
            "--dag-id",
            "cdyb_jxc_daily",
            "--from-date",
            f"{day0}T02:00:00+08:00",
            "--to-date",
            f"{day}T02:00:00+08:00",
            "--max-active-runs",
            "1",
        ],
        env=deployment["env"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert backfill.returncode == 0, backfill.stdout[-3000:] + backfill.stderr[-3000:]
    runs = _wait_for_runs(deployment, "cdyb_jxc_daily", run_type="backfill", expected=2)
    assert sorted(r["state"] for r in runs) == ["success", "success"], runs
    late_of_day = {
        r["serial_no"]
        for r in store.accepted_rows()
        if r["serial_no"] not in before and (r.get("event_time") or r.get("stock_date") or "")[:10] == day
    }
    assert late_of_day <= waiting_returns  # nothing of day 1 went again but the returns now valid
    assert _stored_on(store, day) == day1_rows + len(late_of_day)
    assert day0 in _stock_dates(store)
    serials = [r["serial_no"] for r in store.accepted_rows()]
    assert len(serials) == len(set(serials))
    assert {(r["transaction_code"], r["serial_no"]) for r in store.accepted_rows()} == _ledger_accepted(
        ledger
    )
    ledger.dispose()


def _stock_dates(store) -> set[str]:
    return {r["stock_date"] for r in store.accepted_rows() if r["transaction_code"] == "JXC004"}


def _ledger_accepted(ledger: Ledger) -> set[tuple[str, str]]:
    return {
        (r["transaction_code"], r["serial_no"])
        for r in ledger.iter_rows()
        if r["state"] in ("ACCEPTED", "ACCEPTED_RECONCILED")
    }


def _stored_on(store, day: str) -> int:
    """Rows the centre holds for business day ``day`` (movement time or stock date)."""
    return sum(
        1
        for r in store.accepted_rows()
        if r["transaction_code"] != "JXC001"
        and (r.get("event_time") or r.get("stock_date") or "")[:10] == day
    )


def _wait_for_runs(
    api: dict, dag_id: str, run_type: str | None = None, expected: int | None = None
) -> list[dict]:
    """Wait until every run of ``dag_id`` (of ``run_type``) has finished, and ``expected`` of them exist."""
    base, s = api["base"], api["session"]
    runs: list[dict] = []
    params = {"run_type": run_type} if run_type else {}

    def done() -> bool:
        resp = s.get(f"{base}/api/v2/dags/{dag_id}/dagRuns", params=params, timeout=5)
        runs[:] = resp.json()["dag_runs"]
        count_ok = expected is None or len(runs) == expected
        return count_ok and all(r["state"] in ("success", "failed") for r in runs)

    try:
        _wait(done, 300, f"{dag_id} {run_type or ''} runs")
    except AssertionError:
        print("runs:", json.dumps(runs, indent=1)[:4000])
        for log in sorted(Path(api["logs"]).glob("*.log")):
            print(f"==== {log.name}\n" + log.read_text(errors="replace")[-4000:])
        raise
    return runs

"""Scale-out on CeleryExecutor: three institutions from one deployment file, two workers, one killed.

A real deployment: Redis as the broker, PostgreSQL for the metadata database, Celery's result backend and
the ledger, the scheduler, dag-processor and api-server, and two ``airflow celery worker`` processes whose
hostnames differ. Three institutions' daily DAGs are triggered at once through the REST API; then one worker
is killed with SIGKILL while an upload of it has batches out, and its task is retried on the other worker.
Afterwards the simulator holds every row exactly once and the ledger agrees with it.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from sqlalchemy import create_engine, text

from cdyb_jxc.ledger import Ledger
from tests.conftest import INSTITUTION, SECRET, USER
from tests.dags.test_real_scheduler import _free_port, _wait, _wait_for_runs

REPO = Path(__file__).resolve().parents[2]
REDIS = ("127.0.0.1", 6379)
CODES = (INSTITUTION, "H51010400021", "H51010400022")
WORKERS = ("cdyb-worker-a", "cdyb-worker-b")
ADMIN_PASSWORD = "cdyb-jxc-celery-admin"
UPLOADS = ("upload_inbound", "upload_outbound", "upload_stock")

pytestmark = pytest.mark.timeout(1500)


def _redis_db() -> int:
    """A Redis database of its own for this run's broker, emptied first (fails if Redis is not running)."""
    with socket.create_connection(REDIS, timeout=5) as conn:
        db = 11
        conn.sendall(f"SELECT {db}\r\nFLUSHDB\r\n".encode())
        reply = conn.recv(100)
    assert reply.startswith(b"+OK"), f"Redis at {REDIS} answered {reply!r}"
    return db


def _seed_other_institutions(store, mapping: Path) -> None:
    """The demo HIS serves all three institutions: each is known to the centre with the same 对码."""
    with mapping.open(encoding="utf-8") as fh:
        entries = [
            (r["mapping_serial_no"], r["insurance_item_code"], r["off_hospital_delivery"])
            for r in csv.DictReader(fh)
        ]
    for code in CODES[1:]:
        store.add_institution(code, "test", USER, SECRET)
        store.add_mapping((code, m, c, off == "1") for m, c, off in entries)


def _deployment_file(tmp_path: Path, ledger_url: str, start: str) -> Path:
    lines = [
        "defaults:",
        f"  ledger_url: {ledger_url}",
        f"  report_dir: {tmp_path / 'reports'}",
        f"  start_date: {start}",
        "  retries: 3",
        "  retry_delay_seconds: 1",
        "  source_conn_id: cdyb_jxc_his",
        "institutions:",
    ]
    for n, code in enumerate(CODES):
        lines += [f"  - code: {code}", f"    name: 测试医院{n}", f"    conn_id: centre_{code.lower()}"]
    path = tmp_path / "cdyb_jxc.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _connections(url: str) -> dict[str, str]:
    """One centre connection per institution; the last names no code (the file's is used)."""
    out = {}
    for code in CODES:
        extra = {"environment": "test", "timeout": 30, "max_in_flight": 2}
        if code != CODES[-1]:
            extra["institution_code"] = code
        conn = {"conn_type": "cdyb_jxc", "host": url, "login": USER, "password": SECRET, "extra": extra}
        out[f"AIRFLOW_CONN_CENTRE_{code}"] = json.dumps(conn)
    return out


@pytest.fixture
def celery_deployment(tmp_path: Path, pg_db: str, simulator, store, demo_env) -> Iterator[dict]:
    _seed_other_institutions(store, tmp_path / "mapping.csv")
    home = tmp_path / "airflow"
    home.mkdir()
    (home / "passwords.json").write_text(json.dumps({"admin": ADMIN_PASSWORD}))
    # distinct worker hostnames on one machine: Airflow records what [core] hostname_callable returns
    (tmp_path / "cdyb_test_hostname.py").write_text(
        "import os\n\ndef hostname():\n    return os.environ['CDYB_TEST_HOSTNAME']\n", encoding="utf-8"
    )
    port = _free_port()
    config = _deployment_file(tmp_path, pg_db, demo_env["days"][0])
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDYB_JXC_")}
    env |= {
        "AIRFLOW_HOME": str(home),
        "CDYB_JXC_CONFIG": str(config),
        "PYTHONPATH": os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "CDYB_TEST_HOSTNAME": "cdyb-scheduler",
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "cdyb_test_hostname.hostname",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__PARALLELISM": "8",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": pg_db,
        "AIRFLOW__CELERY__BROKER_URL": f"redis://{REDIS[0]}:{REDIS[1]}/{_redis_db()}",
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + pg_db,
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        # a worker killed with SIGKILL stops heartbeating: its task is failed and retried within seconds
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_SEC": "2",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "3",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "AIRFLOW_CONN_CDYB_JXC_HIS": json.dumps({"conn_type": "sqlite", "host": str(demo_env["his"])}),
        **_connections(simulator.url),
    }
    airflow = [sys.executable, "-m", "airflow"]
    migrate = subprocess.run(
        [*airflow, "db", "migrate"], env=env, capture_output=True, text=True, timeout=600
    )
    assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]
    procs: dict[str, subprocess.Popen] = {}
    logs = []

    def start(name: str, args: list[str], hostname: str = "cdyb-scheduler") -> None:
        log = (tmp_path / f"{name}.log").open("w")
        logs.append(log)
        procs[name] = subprocess.Popen(
            [*airflow, *args],
            env={**env, "CDYB_TEST_HOSTNAME": hostname},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: SIGKILL reaches the task processes too
        )

    start("scheduler", ["scheduler"])
    start("dag-processor", ["dag-processor"])
    start("api-server", ["api-server", "--port", str(port)])
    for worker in WORKERS:
        start(worker, ["celery", "worker", "--celery-hostname", f"{worker}@%h", "--skip-serve-logs"], worker)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: requests.get(f"{base}/api/v2/monitor/health", timeout=2).status_code == 200, 180, "api")
        # a worker still starting takes no task: the other would run them all
        for worker in WORKERS:
            log = tmp_path / f"{worker}.log"
            _wait(lambda log=log: " ready." in log.read_text(errors="replace"), 180, f"{worker} ready")
        token = requests.post(
            f"{base}/auth/token", json={"username": "admin", "password": ADMIN_PASSWORD}, timeout=10
        ).json()["access_token"]
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        yield {"base": base, "session": session, "ledger_url": pg_db, "logs": tmp_path, "procs": procs}
    finally:
        for proc in procs.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        for log in logs:
            log.close()


def _trigger(api: dict, dag_id: str, body: dict) -> str:
    base, s = api["base"], api["session"]
    _wait(
        lambda: s.get(f"{base}/api/v2/dags/{dag_id}", timeout=5).status_code == 200, 180, f"{dag_id} parsed"
    )
    assert s.patch(f"{base}/api/v2/dags/{dag_id}", json={"is_paused": False}, timeout=10).status_code == 200
    resp = s.post(f"{base}/api/v2/dags/{dag_id}/dagRuns", json=body, timeout=10)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["dag_run_id"])


def _finished(api: dict, runs: dict[str, str], seconds: float = 600) -> dict[str, dict]:
    """Wait for every (dag_id → run_id) to finish; each one's state and task instances."""
    base, s = api["base"], api["session"]
    out: dict[str, dict] = {}

    def done() -> bool:
        for dag_id, run_id in runs.items():
            out[dag_id] = s.get(f"{base}/api/v2/dags/{dag_id}/dagRuns/{run_id}", timeout=5).json()
        return all(r["state"] in ("success", "failed") for r in out.values())

    try:
        _wait(done, seconds, f"runs {runs}")
    except AssertionError:
        for log in sorted(Path(api["logs"]).glob("*.log")):
            print(f"==== {log.name}\n" + log.read_text(errors="replace")[-4000:])
        raise
    for dag_id, run_id in runs.items():
        tis = s.get(f"{base}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", timeout=5).json()
        out[dag_id]["tis"] = {ti["task_id"]: ti for ti in tis["task_instances"]}
    return out


def _in_flight(ledger_url: str, code: str) -> int:
    return _count(ledger_url, code, "IN_FLIGHT")


def _running_upload(api: dict, dag_id: str, run_id: str) -> dict | None:
    base, s = api["base"], api["session"]
    tis = s.get(f"{base}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances", timeout=5).json()
    return next(
        (ti for ti in tis["task_instances"] if ti["task_id"] in UPLOADS and ti["state"] == "running"), None
    )


def _check_exactly_once(store, ledger_url: str) -> None:
    keys = [(r["institution_code"], r["transaction_code"], r["serial_no"]) for r in store.accepted_rows()]
    assert len(keys) == len(set(keys))
    ledger = Ledger(ledger_url)
    try:
        rows = list(ledger.iter_rows())
    finally:
        ledger.dispose()
    accepted = {
        (r["institution_code"], r["transaction_code"], r["serial_no"])
        for r in rows
        if r["state"] in ("ACCEPTED", "ACCEPTED_RECONCILED")
    }
    assert set(keys) == accepted
    assert not [r for r in rows if r["state"] in ("IN_FLIGHT", "PENDING", "IN_DOUBT")]


def test_three_institutions_on_two_celery_workers_survive_a_killed_worker(
    celery_deployment, simulator, store, demo_env
):
    api, ledger_url = celery_deployment, celery_deployment["ledger_url"]
    inits = {
        f"cdyb_jxc_init__{c}": _trigger(api, f"cdyb_jxc_init__{c}", {"logical_date": None}) for c in CODES
    }
    for dag_id, run in _finished(api, inits).items():
        assert run["state"] == "success", (dag_id, {t: ti["state"] for t, ti in run["tis"].items()})

    # three institutions' daily DAGs at once, for the same business day
    day = demo_env["days"][1]
    body = {"logical_date": None, "conf": {"business_date": day}}
    # each call takes 1 s, so three institutions' uploads overlap: more than one worker's two slots
    simulator.set_faults("latency=1")
    dailies = {f"cdyb_jxc_daily__{c}": _trigger(api, f"cdyb_jxc_daily__{c}", body) for c in CODES}
    finished = _finished(api, dailies)
    simulator.set_faults("")
    hosts = set()
    for dag_id, run in finished.items():
        assert run["state"] == "success", (dag_id, {t: ti["state"] for t, ti in run["tis"].items()})
        hosts |= {run["tis"][task]["hostname"] for task in UPLOADS}
    assert hosts == set(WORKERS), hosts  # both workers ran uploads
    for dag_id in dailies:  # unpausing also started each DAG's latest scheduled run (day 3): all finish
        assert {r["state"] for r in _wait_for_runs(api, dag_id)} == {"success"}
    for code in CODES:
        assert {r["transaction_code"] for r in store.accepted_rows() if r["institution_code"] == code} == {
            "JXC001",
            "JXC002",
            "JXC003",
            "JXC004",
        }
    _check_exactly_once(store, ledger_url)

    # a worker killed with SIGKILL while its upload has batches out: retried on the other worker (day 1:
    # the only day no daily run has sent yet)
    dag_id, first_day = f"cdyb_jxc_daily__{CODES[0]}", demo_env["days"][0]
    simulator.set_faults("latency=4")  # each call takes 4 s: long enough to catch batches out
    calls = simulator.requests
    run_id = _trigger(api, dag_id, {"logical_date": None, "conf": {"business_date": first_day}})
    deadline, victim = time.monotonic() + 300, None
    while time.monotonic() < deadline and victim is None:
        ti = _running_upload(api, dag_id, run_id)
        # rows IN_FLIGHT are committed before their request leaves: killed only once a request of the run
        # has reached the centre (counted once its body is read; stored after the 4 s), so some rows out
        # are certainly stored, and the retry's resend must reconcile them
        reached = simulator.requests > calls
        if ti and ti["hostname"] in WORKERS and reached and _in_flight(ledger_url, CODES[0]):
            victim = ti
        else:
            time.sleep(0.3)
    assert victim is not None, "no upload with batches out was seen"
    _kill_tree(api["procs"][victim["hostname"]].pid)
    simulator.set_faults("")
    run = _finished(api, {dag_id: run_id})[dag_id]
    assert run["state"] == "success", {t: ti["state"] for t, ti in run["tis"].items()}
    retried = run["tis"][victim["task_id"]]
    assert retried["try_number"] >= 2
    (survivor,) = set(WORKERS) - {victim["hostname"]}
    assert retried["hostname"] == survivor
    _check_exactly_once(store, ledger_url)
    # the batches that were out when the worker died reached the centre: the retry's resend reconciled them
    assert _count(ledger_url, CODES[0], "ACCEPTED_RECONCILED") > 0


def _kill_tree(pid: int) -> None:
    """SIGKILL a worker and every process under it at once, as when its machine dies: the task runs in a
    process of its own session, which killing the worker's process group would leave running."""
    import psutil

    root = psutil.Process(pid)
    for proc in [*root.children(recursive=True), root]:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()


def _count(ledger_url: str, code: str, state: str) -> int:
    engine = create_engine(ledger_url)
    try:
        with engine.connect() as conn:
            query = "SELECT count(*) FROM cdyb_jxc_upload_row WHERE institution_code = :c AND state = :s"
            return int(conn.execute(text(query), {"c": code, "s": state}).scalar_one())
    finally:
        engine.dispose()

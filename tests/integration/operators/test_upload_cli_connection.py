"""Where ``cdyb-jxc upload`` finds its connection: ``AIRFLOW_CONN_<ID>`` is read without importing Airflow;
every other source of Airflow's (its metadata database, a secrets backend) is searched through Airflow, in
Airflow's order."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from urllib.parse import quote

from tests.conftest import INSTITUTION, SECRET, USER, outbound_row
from tests.integration.operators.conftest import write_csv

BACKEND = "airflow.secrets.local_filesystem.LocalFilesystemBackend"


def _conn(url: str, password: str = SECRET) -> dict:
    return {
        "conn_type": "cdyb_jxc",
        "host": url,
        "login": USER,
        "password": password,
        "extra": {"institution_code": INSTITUTION, "environment": "test"},
    }


def _env(**extra: str) -> dict[str, str]:
    """This process's environment without any centre connection or secrets backend, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "AIRFLOW__SECRETS__"))}
    return {**env, **extra}


def _upload(
    tmp_path, env: dict[str, str], *options: str, python: tuple[str, ...] = ()
) -> subprocess.CompletedProcess:
    src = write_csv(tmp_path / f"{uuid.uuid4().hex}.csv", [outbound_row(f"CN{uuid.uuid4().hex[:12]}")])
    return subprocess.run(
        [sys.executable, *python, "-m", "cdyb_jxc", "upload", "--transaction", "outbound", "--file", str(src),
         "--ledger", f"sqlite:///{tmp_path / 'ledger.db'}", "--no-progress", *options],
        capture_output=True, text=True, timeout=180, env=env,
    )  # fmt: skip


def _imported(stderr: str) -> set[str]:
    """Module names from ``python -X importtime``'s report."""
    return set(re.findall(r"^import time:\s+\d+ \|\s+\d+ \| +(\S+)$", stderr, flags=re.MULTILINE))


def test_a_connection_in_the_environment_uploads_without_importing_airflow(tmp_path, simulator, store):
    env = _env(AIRFLOW_CONN_CDYB_JXC_DEFAULT=json.dumps(_conn(simulator.url)))
    out = _upload(tmp_path, env, python=("-X", "importtime"))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "ACCEPTED             1" in out.stdout
    assert store.count_rows() == 1
    modules = _imported(out.stderr)
    assert {"cdyb_jxc.upload.session", "cdyb_jxc.wire.client", "zeep"} <= modules  # the report is complete
    assert not {m for m in modules if m == "airflow" or m.startswith("airflow.")}
    assert "pandas" not in modules  # a CSV needs no pandas either


def test_the_uri_form_works_the_same(tmp_path, simulator, store):
    host, password = quote(simulator.url, safe=""), quote(SECRET, safe="")  # 验证码 and URL percent-encoded
    uri = f"cdyb-jxc://{USER}:{password}@{host}?institution_code={INSTITUTION}"
    out = _upload(tmp_path, _env(AIRFLOW_CONN_CDYB_JXC_DEFAULT=uri))
    assert out.returncode == 0, out.stderr[-3000:]
    assert store.count_rows() == 1
    assert SECRET not in out.stdout + out.stderr


def test_a_connection_in_airflows_metadata_database_is_found_without_the_variable(
    airflow_db, tmp_path, simulator, store
):
    conn_id = f"cdyb_meta_{uuid.uuid4().hex[:8]}"
    add = ["airflow", "connections", "add", conn_id, "--conn-json", json.dumps(_conn(simulator.url))]
    added = subprocess.run(
        [sys.executable, "-m", *add], capture_output=True, text=True, timeout=180, env=_env()
    )
    assert added.returncode == 0, added.stdout + added.stderr
    try:
        out = _upload(tmp_path, _env(), "--conn-id", conn_id)
    finally:
        subprocess.run(
            [sys.executable, "-m", "airflow", "connections", "delete", conn_id],
            capture_output=True, timeout=180, env=_env(),
        )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    assert store.count_rows() == 1
    assert SECRET not in out.stdout + out.stderr


def test_a_secrets_backend_is_asked_before_the_variable_as_airflow_does(tmp_path, simulator, store):
    secrets = tmp_path / "connections.json"
    secrets.write_text(json.dumps({"cdyb_jxc_default": _conn(simulator.url)}), encoding="utf-8")
    env = _env(
        AIRFLOW__SECRETS__BACKEND=BACKEND,
        AIRFLOW__SECRETS__BACKEND_KWARGS=json.dumps({"connections_file_path": str(secrets)}),
        AIRFLOW_CONN_CDYB_JXC_DEFAULT=json.dumps(_conn(simulator.url, password="wrong-code")),
    )
    out = _upload(tmp_path, env)
    assert out.returncode == 0, out.stderr[-3000:]  # the backend's 验证码, not the variable's wrong one
    assert store.count_rows() == 1
    assert SECRET not in out.stdout + out.stderr

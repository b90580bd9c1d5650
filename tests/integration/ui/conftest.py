"""The Airflow api-server app (with our plugin mounted) under TestClient, and a ledger with known content."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import AIRFLOW_HOME

ADMIN_PASSWORD = "monitor-admin-pw"


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

"""Client-side fixtures: a ledger on SQLite or PostgreSQL, a real client of the served simulator."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text

from cdyb_jxc.client import CentreClient
from cdyb_jxc.ledger import Ledger
from cdyb_jxc.ledger.schema import metadata
from cdyb_jxc.profile import Profile
from cdyb_jxc.simulator.server import Simulator
from tests.conftest import INSTITUTION, SECRET, USER

PG_ADMIN_URL = os.environ.get("CDYB_JXC_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A throw-away PostgreSQL database for the session (the production-path ledger)."""
    name = f"cdyb_jxc_test_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def ledger_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    url = request.getfixturevalue("pg_database")
    engine = create_engine(url)
    metadata.drop_all(engine)
    engine.dispose()
    return url


@pytest.fixture
def ledger(ledger_url: str) -> Iterator[Ledger]:
    led = Ledger(ledger_url)
    yield led
    led.dispose()


@pytest.fixture
def client(profile: Profile, simulator: Simulator) -> Iterator[CentreClient]:
    c = CentreClient(
        profile,
        endpoint=simulator.url,
        user=USER,
        verification_code=SECRET,
        institution_code=INSTITUTION,
        timeout=10,
    )
    yield c
    c.close()

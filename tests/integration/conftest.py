"""Integration fixtures: a ledger on SQLite and on PostgreSQL (a module overrides ``ledger_url`` to use one),
and a real client of the served simulator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine

from cdyb_jxc.ledger import Ledger
from cdyb_jxc.ledger.schema import metadata
from cdyb_jxc.simulator.server import Simulator
from cdyb_jxc.wire.client import CentreClient
from cdyb_jxc.wire.profile import Profile
from tests.conftest import INSTITUTION, SECRET, USER, assert_day_counts_match_rows


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
    assert_day_counts_match_rows(led.engine)
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

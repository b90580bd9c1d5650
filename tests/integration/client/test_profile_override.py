"""A deployment's profile renames the SOAP operation and its parts: client and simulator follow it."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from importlib import resources

import pytest

from cdyb_jxc.simulator.server import Simulator
from cdyb_jxc.simulator.store import SimulatorStore
from cdyb_jxc.wire.client import CentreClient
from cdyb_jxc.wire.profile import Profile, parse_profile
from tests.conftest import INSTITUTION, SECRET, USER, outbound_row, seed_store


@pytest.fixture
def renamed() -> Profile:
    raw = tomllib.loads(
        resources.files("cdyb_jxc").joinpath("data/default_profile.toml").read_text(encoding="utf-8")
    )
    raw["service"].update(
        operation="uploadJxcData",
        input_part="xmlIn",
        output_part="xmlOut",
        namespace="http://example.org/jxc/",
    )
    return parse_profile(raw, "renamed")


@pytest.fixture
def renamed_centre(renamed: Profile) -> Iterator[Simulator]:
    store = SimulatorStore(":memory:")
    seed_store(store)
    sim = Simulator(renamed, store).start()
    yield sim
    sim.stop()
    store.close()


def test_client_calls_the_operation_the_profile_names(renamed, renamed_centre):
    client = CentreClient(
        renamed,
        endpoint=renamed_centre.url,
        user=USER,
        verification_code=SECRET,
        institution_code=INSTITUTION,
        timeout=10,
    )
    try:
        exchange = client.send("outbound", [outbound_row("OP1")])
    finally:
        client.close()
    assert (exchange.reply.retcode, exchange.reply.succnum) == ("1", 1)

"""Fixtures of the unit tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cdyb_jxc.ledger import Ledger


@pytest.fixture
def ledger(tmp_path) -> Iterator[Ledger]:
    """An empty SQLite ledger file in the test's temp dir."""
    led = Ledger(f"sqlite:///{tmp_path}/ledger.db")
    yield led
    led.dispose()

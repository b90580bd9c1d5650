"""The ledger keeps each day's 进销存平衡 audit for the monitor; a later audit of the day replaces it."""

from __future__ import annotations

import pytest

from cdyb_jxc.ledger import Ledger
from tests.conftest import INSTITUTION, OTHER_INSTITUTION

DAY = "2026-11-29"


@pytest.fixture
def ledger(tmp_path):
    led = Ledger(f"sqlite:///{tmp_path}/ledger.db")
    yield led
    led.dispose()


def _item(serial: str, status: str, difference: float | None = 1.0) -> dict:
    return {
        "mapping_serial_no": serial,
        "opening": 10.0,
        "inbound": 2.0,
        "outbound": 0.5,
        "closing": 12.5,
        "difference": difference,
        "status": status,
        "source_difference": difference,
        "source_status": status,
    }


def test_a_days_audit_is_kept_and_replaced_by_the_next_audit_of_that_day(ledger):
    summary = {"items": 40, "imbalance": 2, "source_imbalance": 1, "unchecked": 1, "report": "/r/balance.csv"}
    ledger.record_balance(
        INSTITUTION, DAY, summary, [_item("M0001", "imbalance"), _item("M0002", "no_closing")]
    )
    assert ledger.balance_days(DAY, DAY) == {
        DAY: {"items": 40, "imbalance": 2, "source_imbalance": 1, "unchecked": 1}
    }
    assert [r["mapping_serial_no"] for r in ledger.balance_items(DAY)] == ["M0001", "M0002"]
    assert ledger.balance_items(DAY)[0]["opening"] == 10.0

    ledger.record_balance(INSTITUTION, DAY, {**summary, "imbalance": 0, "source_imbalance": 0}, [])
    assert ledger.balance_days(DAY, DAY)[DAY]["imbalance"] == 0
    assert ledger.balance_items(DAY) == []


def test_institutions_are_added_up_unless_one_is_asked_for(ledger):
    ledger.record_balance(
        INSTITUTION, DAY, {"items": 3, "imbalance": 1, "source_imbalance": 0, "unchecked": 0}, []
    )
    ledger.record_balance(
        OTHER_INSTITUTION, DAY, {"items": 5, "imbalance": 0, "source_imbalance": 2, "unchecked": 1}, []
    )
    assert ledger.balance_days(DAY, DAY)[DAY] == {
        "items": 8,
        "imbalance": 1,
        "source_imbalance": 2,
        "unchecked": 1,
    }
    assert ledger.balance_days(DAY, DAY, OTHER_INSTITUTION)[DAY]["items"] == 5
    assert ledger.balance_days("2026-11-30", "2026-12-01") == {}


def test_an_item_named_by_any_text_of_the_source_is_kept(ledger):
    odd = "M" * 500 + "\x00"  # a source row may carry anything there; the audit still counts it
    summary = {"items": 1, "imbalance": 1, "source_imbalance": 0, "unchecked": 0}
    ledger.record_balance(INSTITUTION, DAY, summary, [_item(odd, "imbalance")])
    (row,) = ledger.balance_items(DAY)
    assert row["mapping_serial_no"].startswith("M" * 500)

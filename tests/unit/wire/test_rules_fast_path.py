"""The fast path never accepts a row the exact checks reject (and accepts the ordinary valid rows)."""

from __future__ import annotations

import random

import pytest

from cdyb_jxc.wire.rules import charset_error, field_error, row_is_clean
from tests.conftest import inbound_row, init_row, outbound_row, stock_row

NASTY = [
    "",
    "0",
    "-0",
    "-1",
    "1.",
    ".5",
    "1e3",
    "+1",
    "1.23456",
    "12345678901234567",
    "0.00",
    "-0.00",
    "000",
    "0.0001",
    "-0.5",
    "24",
    "1",
    "2026-02-30",
    "2026-11-20",
    "2026-11-20 10:00:00",
    "2026-11-20 25:00:00",
    "䓬",
    "\x01",
    "a\tb",
    "\u3000",
    "批" * 16,
    "x" * 31,
    "11",
    "15",
    "21",
    "23",
    "28",
    "２",
]


@pytest.mark.parametrize("make", [outbound_row, inbound_row, init_row, stock_row])
def test_fast_path_agrees_with_the_exact_checks(profile, make):
    txn = profile.transaction(
        {outbound_row: "outbound", inbound_row: "inbound", init_row: "init", stock_row: "stock"}[make]
    )
    rng = random.Random(7)
    names = [f.name for f in txn.fields]
    accepted = 0
    for n in range(3000):
        row = make(f"S{n}")
        for _ in range(rng.randrange(0, 3)):
            row[rng.choice(names)] = rng.choice(NASTY)
        exact = charset_error(txn, row, "GBK") or field_error(txn, row, "GBK")
        if row_is_clean(txn, row, "GBK"):
            accepted += 1
            assert exact is None, (row, exact)
    assert accepted > 300  # the fast path does take the ordinary rows
    assert row_is_clean(txn, make("OK"), "GBK")


def test_a_value_that_passed_one_field_is_checked_again_for_another(profile):
    # each field remembers the numbers and dates that passed it: 0 is a valid 销售单价 but not a 数量
    txn = profile.transaction("outbound")
    assert row_is_clean(txn, outbound_row("P1", sale_price="0", quantity="2"), "GBK")
    assert not row_is_clean(txn, outbound_row("P2", sale_price="0", quantity="0"), "GBK")
    assert row_is_clean(txn, outbound_row("P3", sale_price="2026-11-20", quantity="2"), "GBK") is False
    assert row_is_clean(txn, outbound_row("P4", expiry_date="2026-11-20"), "GBK")
    assert not row_is_clean(txn, outbound_row("P5", event_time="2026-11-20"), "GBK")  # a date, not a time


def test_remembered_values_never_let_a_bad_one_through(profile):
    txn = profile.transaction("outbound")
    for n in range(3000):  # more passing values than a field remembers
        assert row_is_clean(txn, outbound_row(f"M{n}", sale_price=f"{n}.5", quantity=str(n + 1)), "GBK")
    assert not row_is_clean(txn, outbound_row("BAD1", sale_price="12.34567"), "GBK")
    assert not row_is_clean(txn, outbound_row("BAD2", event_time="2026-02-30 10:00:00"), "GBK")
    assert not row_is_clean(txn, outbound_row("BAD3", quantity="-1"), "GBK")

"""The 进销存平衡 audit on hand-computed cases: 拆零, lots, 院外配送, missing stock, initialization."""

from __future__ import annotations

from datetime import datetime

import pytest

from cdyb_jxc.ledger import Ledger
from cdyb_jxc.upload.balance import BalanceStatus, audit_balance, packages_of
from cdyb_jxc.wire.rules import MappingEntry
from tests.conftest import make_uploader, outbound_row
from tests.unit.upload.fake_centre import FakeCentre

H = "H51010400001"
NOW = datetime(2026, 11, 22, 3)
CODES = {"init": "JXC001", "in": "JXC002", "out": "JXC003", "stock": "JXC004"}


@pytest.fixture
def ledger(tmp_path):
    led = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield led
    led.dispose()


def _rows(ledger: Ledger, *rows: tuple[str, str, str, float, str]) -> None:
    """(transaction, day, item, packages, state) per row, each with a 流水号 of its own."""
    ledger.insert_rows(
        [
            {
                "institution_code": H,
                "serial_no": f"S{n}",
                "transaction_code": CODES[txn],
                "business_date": day,
                "mapping_serial_no": item,
                "quantity_packages": qty,
                "state": state,
                "payload_hash": "0" * 64,
                "attempts": 1,
                "held_back": 0,
                "first_seen_at": NOW,
                "updated_at": NOW,
            }
            for n, (txn, day, item, qty, state) in enumerate(rows)
        ]
    )


A, R = "ACCEPTED", "REJECTED"


@pytest.fixture
def month(ledger):
    _rows(
        ledger,
        # M1: initialization of 11-19 in two lots (10 + 5), then two days of movements
        ("init", "2026-11-19", "M1", 10, A),
        ("init", "2026-11-19", "M1", 5, A),
        ("in", "2026-11-20", "M1", 4, A),
        ("out", "2026-11-20", "M1", 12 / 24, "ACCEPTED_RECONCILED"),  # 拆零: 12 粒 of a 24-粒 box
        ("out", "2026-11-20", "M1", 2, A),
        ("out", "2026-11-20", "M1", 100, R),  # refused by the centre: not part of the balance
        ("stock", "2026-11-20", "M1", 10, A),  # two lots: 10 + 6.5 = 16.5 = 15 + 4 - 2.5
        ("stock", "2026-11-20", "M1", 6.5, A),
        ("out", "2026-11-21", "M1", 1, A),
        ("stock", "2026-11-21", "M1", 15, A),  # 16.5 - 1 = 15.5 expected: 0.5 missing
        # M2: 院外配送, dispensed without inbound
        ("stock", "2026-11-20", "M2", 0, A),
        ("out", "2026-11-21", "M2", 3, A),
        ("stock", "2026-11-21", "M2", 0, A),
        # M3: no stock row on 11-21
        ("stock", "2026-11-20", "M3", 7, A),
        ("out", "2026-11-21", "M3", 1, A),
        # M4: new item on 11-21 without opening
        ("in", "2026-11-21", "M4", 5, A),
        ("stock", "2026-11-21", "M4", 5, A),
    )
    return ledger


def test_the_balance_per_day_and_item(month):
    registry = {"M2": MappingEntry("XA2", off_hospital_delivery=True)}
    rows = {
        (r.business_date, r.mapping_serial_no): r
        for r in audit_balance(month, H, "2026-11-20", "2026-11-21", registry=registry)
    }
    day1 = rows[("2026-11-20", "M1")]
    assert (day1.opening, day1.inbound, day1.outbound, day1.closing) == (15, 4, 2.5, 16.5)
    assert (day1.difference, day1.status) == (0, BalanceStatus.OK)
    day2 = rows[("2026-11-21", "M1")]
    assert (day2.opening, day2.outbound, day2.closing, day2.difference) == (16.5, 1, 15, -0.5)
    assert day2.status == BalanceStatus.IMBALANCE
    assert rows[("2026-11-21", "M2")].status == BalanceStatus.OFF_HOSPITAL
    assert rows[("2026-11-21", "M2")].difference == 3  # reported, not flagged
    assert (rows[("2026-11-21", "M3")].status, rows[("2026-11-21", "M3")].closing) == (
        BalanceStatus.NO_CLOSING,
        None,
    )
    assert rows[("2026-11-21", "M4")].status == BalanceStatus.NO_OPENING
    assert rows[("2026-11-20", "M2")].status == BalanceStatus.OFF_HOSPITAL
    assert ("2026-11-20", "M4") not in rows


def test_without_the_mapping_copy_an_off_hospital_item_is_audited_like_any(month):
    rows = {
        (r.business_date, r.mapping_serial_no): r for r in audit_balance(month, H, "2026-11-21", "2026-11-21")
    }
    assert rows[("2026-11-21", "M2")].status == BalanceStatus.IMBALANCE


def test_the_source_audit_counts_what_the_centre_refused_too(month):
    (m1,) = [
        r
        for r in audit_balance(month, H, "2026-11-20", "2026-11-20", accepted_only=False)
        if r.mapping_serial_no == "M1"
    ]
    assert (m1.outbound, m1.status) == (102.5, BalanceStatus.IMBALANCE)


def test_a_tolerance_absorbs_rounding_only(month):
    rows = list(audit_balance(month, H, "2026-11-21", "2026-11-21", tolerance=0.5))
    assert {r.mapping_serial_no: r.status for r in rows}["M1"] == BalanceStatus.OK


@pytest.mark.parametrize(
    ("txn", "wire", "expected"),
    [
        ("outbound", {"quantity": "2"}, 2.0),
        ("outbound", {"quantity": "12", "split_flag": "1", "pack_ratio": "24"}, 0.5),
        ("outbound", {"quantity": "12", "split_flag": "0", "pack_ratio": "24"}, 12.0),
        ("stock", {"stock_quantity": "7.25", "quantity": "99"}, 7.25),
        ("outbound", {"quantity": "abc"}, None),
        ("outbound", {"quantity": "3", "split_flag": "1", "pack_ratio": "0"}, None),
        ("outbound", {"quantity": None}, None),
        ("outbound", {"quantity": "1e309"}, None),  # no database should have to store inf
        ("outbound", {"quantity": "1e400", "split_flag": "1", "pack_ratio": "24"}, None),
    ],
)
def test_packages_of_a_row(profile, txn, wire, expected):
    assert packages_of(profile.transaction(txn), wire) == expected


def test_the_upload_records_each_rows_packages(profile, ledger):
    rows = [
        outbound_row("P1", quantity="3"),
        outbound_row("P2", quantity="6", split_flag="1", pack_ratio="12", unit="粒"),
    ]
    make_uploader(profile, FakeCentre(profile), ledger).run([rows])
    assert {r["serial_no"]: r["quantity_packages"] for r in ledger.iter_rows()} == {"P1": 3.0, "P2": 0.5}

"""The column-by-column fast check says of every row what row_is_clean says of it."""

from __future__ import annotations

import random

import pytest

from cdyb_jxc.wire.clean_rows import clean_rows
from cdyb_jxc.wire.rules import charset_error, field_error, row_is_clean
from tests.conftest import inbound_row, init_row, outbound_row, stock_row
from tests.unit.wire.test_rules_fast_path import NASTY

MAKERS = {"outbound": outbound_row, "inbound": inbound_row, "init": init_row, "stock": stock_row}


def wire(txn, row):
    """A row as row_to_wire gives it: every field of the transaction, text or None."""
    return {f.name: row.get(f.name) or None for f in txn.fields}


@pytest.mark.parametrize("txn_key", sorted(MAKERS))
def test_each_row_gets_the_answer_row_is_clean_gives_it(profile, txn_key):
    txn, make = profile.transaction(txn_key), MAKERS[txn_key]
    rng = random.Random(11)
    names = [f.name for f in txn.fields]
    refused = 0
    for b in range(60):
        batch = [wire(txn, make(f"S{b}-{n}", 1 + n % 7)) for n in range(100)]
        for _ in range(b % 4):  # batches with no bad value, and with one, two or three
            row = rng.choice(batch)
            row[rng.choice(names)] = rng.choice(NASTY) or None
        got = clean_rows(txn, batch, "GBK")
        assert got == [row_is_clean(txn, row, "GBK") for row in batch]
        for row, clean in zip(batch, got, strict=True):
            if clean:
                assert (charset_error(txn, row, "GBK") or field_error(txn, row, "GBK")) is None, row
        refused += got.count(False)
    assert 0 < refused < 60 * 100 // 10  # bad values were met, and the ordinary rows passed


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("serial_no", None),  # required
        ("hospital_item_name", "批" * 101),  # 202 bytes in GBK: too long
        ("insurance_item_code", "X" * 51),  # too long
        ("hospital_item_name", "头孢\x01"),  # not printable
        ("hospital_item_name", "头孢䓬"),  # not in GBK
        ("outbound_type", "99"),  # not one of the codes
        ("sale_price", "12.34567"),  # too many decimals
        ("quantity", "-1"),  # below its minimum
        ("expiry_date", "2026-02-30"),  # no such day
        ("event_time", "2026-11-20"),  # a date where a time is due
        ("event_time", "2026-11-20 25:00:00"),  # no such hour
    ],
)
def test_one_bad_value_among_good_rows_is_found_by_its_column(profile, field, value):
    txn = profile.transaction("outbound")
    batch = [
        wire(txn, outbound_row(f"G{n}", 1 + n % 5, event_time=f"2026-11-20 10:{n % 60:02d}:00"))
        for n in range(50)
    ]
    batch[17][field] = value
    assert clean_rows(txn, batch, "GBK") == [n != 17 for n in range(50)]


def test_an_empty_conditional_field_is_refused_only_where_its_condition_holds(profile):
    txn = profile.transaction("outbound")
    batch = [wire(txn, outbound_row(f"C{n}")) for n in range(10)]
    batch[3].update(outbound_type="23", dept_code=None, dept_name="内科")  # 科室 required for type 23
    batch[5].update(outbound_type="21", dept_code=None)  # not required for type 21
    batch[7].update(split_flag="1", pack_ratio=None)  # 拆零 needs its ratio
    assert clean_rows(txn, batch, "GBK") == [n not in (3, 7) for n in range(10)]


def test_rows_missing_a_field_are_checked_row_by_row(profile):
    txn = profile.transaction("outbound")
    batch = [wire(txn, outbound_row(f"R{n}")) for n in range(6)]
    del batch[1]["remark"]
    del batch[2]["serial_no"]
    batch[4]["serial_no"] = None
    assert clean_rows(txn, batch, "GBK") == [row_is_clean(txn, row, "GBK") for row in batch]
    assert clean_rows(txn, [], "GBK") == []


@pytest.mark.parametrize(
    ("encoding", "value", "fits"),
    [
        ("GBK", "批" * 100, True),  # 200 bytes: the field's length exactly
        ("GBK", "批" * 101, False),
        ("GB18030", "批" * 100, True),
        ("GB18030", "\U00020000" * 50, True),  # 4 bytes each in GB18030
        ("GB18030", "\U00020000" * 51, False),
        ("GBK", "\U00020000", False),  # not in GBK at all
    ],
)
def test_text_is_measured_in_the_encodings_bytes(profile, encoding, value, fits):
    txn = profile.transaction("outbound")
    batch = [wire(txn, outbound_row(f"E{n}", 1 + n % 5)) for n in range(20)]
    batch[9]["hospital_item_name"] = value
    got = clean_rows(txn, batch, encoding)
    assert got == [row_is_clean(txn, row, encoding) for row in batch]
    assert got[9] is fits
    assert all(got[:9] + got[10:])

"""Conversion of source values (SQL, CSV, DataFrame cells) to wire text."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pytest

from cdyb_jxc.wire.profile import FieldSpec, Profile
from cdyb_jxc.wire.values import is_absent, row_to_wire, to_wire
from tests.conftest import outbound_row

ABSENT = [None, float("nan"), np.nan, np.float64("nan"), pd.NA, pd.NaT, "", " ", "\t\u3000 "]
ABSENT_IDS = ["None", "nan", "np.nan", "np.float64-nan", "pd.NA", "pd.NaT", "empty-string", "space", "blanks"]


def spec(profile: Profile, name: str, txn: str = "outbound") -> FieldSpec:
    return profile.transaction(txn).by_name[name]


# --- absent values ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ABSENT, ids=ABSENT_IDS)
def test_absent_values_are_recognised(value: Any) -> None:
    assert is_absent(value) is True


@pytest.mark.parametrize("value", [0, 0.0, "0", " x", False, Decimal(0), "NaN", "NULL"])
def test_falsy_but_present_values_are_not_absent(value: Any) -> None:
    assert is_absent(value) is False


@pytest.mark.parametrize("value", ABSENT, ids=ABSENT_IDS)
@pytest.mark.parametrize("field_name", ["quantity", "event_time", "hospital_item_name", "outbound_type"])
def test_absent_values_convert_to_none_for_every_field_type(
    profile: Profile, field_name: str, value: Any
) -> None:
    assert to_wire(spec(profile, field_name), value) is None


def test_row_to_wire_covers_every_profile_field_and_ignores_other_columns(profile: Profile) -> None:
    txn = profile.transaction("outbound")
    row = {**outbound_row("CK1"), "remark": pd.NA, "lot_no": np.nan, "not_a_field": "x"}

    wire = row_to_wire(txn, row)

    assert list(wire) == [f.name for f in txn.fields]
    assert "not_a_field" not in wire
    assert wire["remark"] is None
    assert wire["lot_no"] is None
    assert wire["dept_code"] is None
    assert {k: v for k, v in wire.items() if v is not None} == outbound_row("CK1")


def test_row_to_wire_converts_typed_source_values(profile: Profile) -> None:
    txn = profile.transaction("outbound")
    row = {
        **outbound_row("CK1"),
        "split_flag": 1,
        "pack_ratio": Decimal("10.00"),
        "outbound_type": np.int64(23),
        "sale_price": 12.35,
        "quantity": np.int64(3),
        "event_time": pd.Timestamp("2026-11-20 10:00:00"),
        "expiry_date": date(2028, 10, 31),
        "dept_code": 1001.0,
    }

    wire = row_to_wire(txn, row)

    assert wire["split_flag"] == "1"
    assert wire["pack_ratio"] == "10"
    assert wire["outbound_type"] == "23"
    assert wire["sale_price"] == "12.35"
    assert wire["quantity"] == "3"
    assert wire["event_time"] == "2026-11-20 10:00:00"
    assert wire["expiry_date"] == "2028-10-31"
    assert wire["dept_code"] == "1001"


TEXT_VALUES = [
    "", " ", "\u3000", "x", " x ", "0", "-0", "-0.0", "00", "007", "0.10", "1.50", "12.5", "-12.5", "1.",
    ".5", "1e3", "+1", " 12", "12 ", "1,000", "0.0001", "123456789012345678901234567890.25", "２",
    "2026-11-20", "2026-11-20 10:00:00", "20261120", "NULL", "\x01", "阿莫西林",
]  # fmt: skip


@pytest.mark.parametrize("key", ["init", "inbound", "outbound", "stock"])
def test_row_to_wire_gives_what_to_wire_gives_for_each_field(profile: Profile, key: str) -> None:
    # row_to_wire's shortcuts for text (kept, or a number already written plainly) are to_wire's answer
    txn = profile.transaction(key)
    values: list[Any] = [*TEXT_VALUES, None, 0, 2.50, Decimal("3.10"), date(2026, 11, 20), np.nan]
    for shift in range(len(values)):
        row = {f.name: values[(i + shift) % len(values)] for i, f in enumerate(txn.fields)}
        assert row_to_wire(txn, row) == {f.name: to_wire(f, row[f.name]) for f in txn.fields}


# --- numbers ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("1.50000"), "1.5"),
        (Decimal("100"), "100"),
        (Decimal("100.00"), "100"),
        (Decimal("0.0000"), "0"),
        (Decimal("-0.0"), "0"),
        (Decimal("1E+3"), "1000"),
        (Decimal("-2.25"), "-2.25"),
        (12.35, "12.35"),
        (0.1, "0.1"),
        (2.0, "2"),
        (1e-7, "0.0000001"),
        (1e20, "100000000000000000000"),
        (np.float64(2.5), "2.5"),
        (7, "7"),
        (-3, "-3"),
        (np.int64(42), "42"),
        (np.int32(5), "5"),
        ("12.500", "12.5"),
        ("7", "7"),
    ],
)
def test_numbers_are_written_plainly(profile: Profile, value: Any, expected: str) -> None:
    assert to_wire(spec(profile, "sale_price"), value) == expected


@pytest.mark.parametrize("value", ["1e3", "+1", ".5", "abc", " 1"])
def test_unreadable_number_text_passes_through_for_validation_to_name(profile: Profile, value: str) -> None:
    assert to_wire(spec(profile, "quantity"), value) == value


# --- dates and times --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "date_text", "datetime_text"),
    [
        (date(2026, 11, 20), "2026-11-20", "2026-11-20 00:00:00"),
        (datetime(2026, 11, 20, 10, 0, 5), "2026-11-20", "2026-11-20 10:00:05"),
        (datetime(2026, 11, 20, 10, 0, 5, 999999), "2026-11-20", "2026-11-20 10:00:05"),
        (pd.Timestamp("2026-11-20 10:00:05"), "2026-11-20", "2026-11-20 10:00:05"),
    ],
)
def test_dates_and_datetimes_use_the_d_and_dt_formats(
    profile: Profile, value: Any, date_text: str, datetime_text: str
) -> None:
    assert to_wire(spec(profile, "expiry_date"), value) == date_text
    assert to_wire(spec(profile, "event_time"), value) == datetime_text


def test_utc_datetime_is_converted_to_utc_plus_8(profile: Profile) -> None:
    aware = datetime(2026, 11, 20, 2, 0, 0, tzinfo=UTC)
    assert to_wire(spec(profile, "event_time"), aware) == "2026-11-20 10:00:00"


def test_utc_evening_is_the_next_day_in_utc_plus_8(profile: Profile) -> None:
    aware = datetime(2026, 11, 20, 20, 30, 0, tzinfo=UTC)
    assert to_wire(spec(profile, "expiry_date"), aware) == "2026-11-21"
    assert to_wire(spec(profile, "event_time"), aware) == "2026-11-21 04:30:00"


def test_tz_aware_pandas_timestamp_is_converted_to_utc_plus_8(profile: Profile) -> None:
    assert to_wire(spec(profile, "event_time"), pd.Timestamp("2026-11-20 02:00:00", tz="UTC")) == (
        "2026-11-20 10:00:00"
    )
    assert to_wire(spec(profile, "event_time"), pd.Timestamp("2026-11-20 10:00:00", tz="Asia/Shanghai")) == (
        "2026-11-20 10:00:00"
    )


def test_aware_datetime_in_another_zone_is_converted(profile: Profile) -> None:
    aware = datetime(2026, 11, 20, 10, 0, 0, tzinfo=timezone(timedelta(hours=-5)))
    assert to_wire(spec(profile, "event_time"), aware) == "2026-11-20 23:00:00"


def test_offset_hours_argument_is_honoured(profile: Profile) -> None:
    aware = datetime(2026, 11, 20, 2, 0, 0, tzinfo=UTC)
    assert to_wire(spec(profile, "event_time"), aware, offset_hours=0) == "2026-11-20 02:00:00"


def test_naive_datetime_is_taken_as_local_time(profile: Profile) -> None:
    assert to_wire(spec(profile, "event_time"), datetime(2026, 11, 20, 2, 0, 0)) == "2026-11-20 02:00:00"


def test_date_and_time_text_passes_through(profile: Profile) -> None:
    assert to_wire(spec(profile, "event_time"), "2026-11-20 10:00:00") == "2026-11-20 10:00:00"
    assert to_wire(spec(profile, "expiry_date"), "2026/11/20") == "2026/11/20"


# --- text and codes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (123.0, "123"),
        (123.5, "123.5"),
        (42, "42"),
        (np.int64(7), "7"),
        ("阿莫西林胶囊", "阿莫西林胶囊"),
        ("00123", "00123"),
        (" 盒 ", " 盒 "),
        ("地西泮䓬片", "地西泮䓬片"),
    ],
)
def test_text_fields(profile: Profile, value: Any, expected: str) -> None:
    assert to_wire(spec(profile, "dept_code"), value) == expected


@pytest.mark.parametrize(
    ("value", "expected"), [("21", "21"), (21, "21"), (21.0, "21"), (np.int64(23), "23")]
)
def test_code_fields_accept_numbers_from_the_source(profile: Profile, value: Any, expected: str) -> None:
    assert to_wire(spec(profile, "outbound_type"), value) == expected


def test_split_flag_from_an_integer_column(profile: Profile) -> None:
    assert to_wire(spec(profile, "split_flag"), 0) == "0"
    assert to_wire(spec(profile, "split_flag"), np.int64(1)) == "1"

"""Text and counts fitted to what every ledger database stores: caps in characters with a marker naming the
original length, unstorable characters escaped, out-of-range integers stored as unknown."""

from __future__ import annotations

import pytest
from sqlalchemy import BigInteger, Column, Float, Integer, MetaData, SmallInteger, String, Table, Text

from cdyb_jxc.safety.textcap import (
    MARKER,
    TEXT_MAX,
    IntRange,
    cap,
    column_caps,
    encoded,
    fit,
    fit_rows,
    fit_values,
    storable,
    unstorable,
)

SAMPLE = Table(
    "sample",
    MetaData(),
    Column("key", String(30), primary_key=True),
    Column("code", String(8)),
    Column("note", Text),
    Column("count", Integer),
    Column("total", Integer, nullable=False),
    Column("big", BigInteger),
    Column("small", SmallInteger),
    Column("ratio", Float),
)


def test_text_within_the_limit_is_kept_as_it_is():
    assert cap("出库数量超出库存", 8) == "出库数量超出库存"
    assert fit("出库数量超出库存", 8) == "出库数量超出库存"


def test_a_cut_text_keeps_its_head_and_ends_with_the_marker_naming_its_length():
    text = "【字段校验失败】" + "长" * 5000

    kept = cap(text, TEXT_MAX)

    assert len(kept) == TEXT_MAX
    assert kept.startswith("【字段校验失败】长长")
    assert kept.endswith(MARKER.format(n=5008))


def test_caps_count_characters_so_chinese_text_is_not_cut_early():
    text = "药" * TEXT_MAX  # three bytes each in UTF-8

    assert cap(text, TEXT_MAX) == text
    assert fit(text, TEXT_MAX) == text
    assert encoded(text, TEXT_MAX) == text.encode("utf-8")
    assert len(cap(text + "药", TEXT_MAX)) == TEXT_MAX


def test_a_column_too_narrow_for_the_marker_gets_a_plain_cut():
    assert cap("ABCDEFGHIJKLMNOPQRSTUVWXYZ", 10) == "ABCDEFGHIJ"


@pytest.mark.parametrize(
    ("text", "first_bad", "escaped"),
    [
        ("a\x00b", "\x00", "a\\x00b"),
        ("lone \ud800 surrogate", "\ud800", "lone \\ud800 surrogate"),
        ("tail \udfff", "\udfff", "tail \\udfff"),
        ("tab\tand newline\n are fine", None, "tab\tand newline\n are fine"),
        ("中文\u3000全角", None, "中文\u3000全角"),
    ],
)
def test_characters_no_database_stores_are_found_and_escaped(text, first_bad, escaped):
    assert unstorable(text) == first_bad
    assert storable(text) == escaped
    assert fit(text, None) == escaped


def test_fit_escapes_first_then_caps_the_escaped_text():
    text = "\x00" * 100  # 400 characters once escaped

    kept = fit(text, 200)

    assert len(kept) == 200
    assert kept.startswith("\\x00\\x00")
    assert kept.endswith(MARKER.format(n=400))
    assert unstorable(kept) is None


def test_no_limit_means_no_cut():
    assert fit("x" * 100_000, None) == "x" * 100_000


def test_encoded_text_is_capped_utf8_with_surrogates_escaped():
    assert encoded("药\ud800", 100) == "药\\ud800".encode()
    blob = encoded("y" * 1000, 100)
    assert len(blob.decode("utf-8")) == 100
    assert blob.decode("utf-8").endswith(MARKER.format(n=1000))


def test_column_caps_follow_the_column_types():
    caps = column_caps(SAMPLE)

    assert caps["key"] is None  # a key is made storable, never cut: two keys cut alike would become one
    assert caps["code"] == 8
    assert caps["note"] == TEXT_MAX
    assert caps["count"] == IntRange(-(2**31), 2**31 - 1, nullable=True)
    assert caps["total"] == IntRange(-(2**31), 2**31 - 1, nullable=False)
    assert caps["big"] == IntRange(-(2**63), 2**63 - 1, nullable=True)
    assert caps["small"] == IntRange(-(2**15), 2**15 - 1, nullable=True)
    assert "ratio" not in caps


def test_a_count_no_column_holds_is_stored_as_unknown_or_the_nearest_bound():
    caps = column_caps(SAMPLE)

    fitted = fit_values(caps, {"count": 10**30, "total": -(10**30), "big": 2**40, "small": 2**40})

    assert fitted == {"count": None, "total": -(2**31), "big": 2**40, "small": None}


def test_fit_values_fits_every_column_and_leaves_the_rest_alone():
    caps = column_caps(SAMPLE)
    values = {
        "key": "K\x00" + "k" * 100,
        "code": "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "note": "n" * 3000,
        "count": True,  # a flag, not a count
        "ratio": 1.5,
        "elsewhere": "\x00" * 5000,
    }

    fitted = fit_values(caps, values)

    assert fitted["key"] == "K\\x00" + "k" * 100  # escaped, not cut
    assert fitted["code"] == "ABCDEFGH"
    assert len(fitted["note"]) == TEXT_MAX
    assert fitted["note"].endswith(MARKER.format(n=3000))
    assert fitted["count"] is True
    assert fitted["ratio"] == 1.5
    assert fitted["elsewhere"] == values["elsewhere"]  # not a column of the table
    assert values["code"] == "ABCDEFGHIJKLMNOPQRSTUVWXYZ"  # the caller's dict is not changed


def test_fit_values_returns_the_same_dict_when_nothing_needed_fitting():
    values = {"key": "K1", "code": "短", "note": "ok", "count": 3}

    assert fit_values(column_caps(SAMPLE), values) is values


CLEAN = {"key": "K1", "code": "短码", "note": "ok", "count": 3, "total": 0, "big": None, "ratio": 1.5}


def test_fit_rows_keeps_a_batch_that_fits_as_it_is():
    rows = [dict(CLEAN, key=f"K{i}") for i in range(50)]

    fitted = fit_rows(column_caps(SAMPLE), rows)

    assert fitted == rows
    assert all(a is b for a, b in zip(fitted, rows, strict=True))


@pytest.mark.parametrize(
    "hostile",
    [
        {"code": "ABCDEFGHIJ"},  # longer than String(8)
        {"note": "n" * 3000},
        {"key": "K\x00"},  # a key column: escaped, never cut
        {"note": "\ud800"},  # a lone surrogate
        {"count": 10**30},
        {"total": -(10**30)},  # not nullable: the nearest bound
        {"small": 40_000},
        {"code": b"bytes", "note": None},  # not texts: left alone
        {"count": True},
    ],
)
def test_fit_rows_fits_a_hostile_value_in_a_batch_as_fit_values_does(hostile: dict[str, object]) -> None:
    caps = column_caps(SAMPLE)
    rows = [dict(CLEAN, key=f"K{i}") for i in range(5)]
    rows[3] = {**rows[3], **hostile}

    fitted = fit_rows(caps, rows)

    assert fitted == [fit_values(caps, r) for r in rows]
    assert fitted[:3] == rows[:3]
    assert fitted[4] == rows[4]


def test_fit_rows_fits_rows_with_different_columns_one_by_one():
    caps = column_caps(SAMPLE)
    rows = [dict(CLEAN), {"key": "K2", "small": 40_000}, {"key": "K3", "code": "X" * 20, "note": "n"}]

    fitted = fit_rows(caps, rows)

    assert fitted == [fit_values(caps, r) for r in rows]
    assert fitted[1]["small"] is None
    assert fitted[2]["code"] == fit("X" * 20, 8)

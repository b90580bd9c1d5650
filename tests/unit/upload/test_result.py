"""What one upload run reports (:class:`UploadResult`) and the helpers that stamp its rows: payload hash,
business day, T+1 deadline and the field a centre's reason names."""

from __future__ import annotations

import hashlib
import json
import random
from datetime import datetime

import pytest

from cdyb_jxc.ledger import LedgerState
from cdyb_jxc.safety.textcap import MARKER, TEXT_MAX
from cdyb_jxc.upload.result import (
    REJECT_SAMPLE,
    UploadResult,
    business_date_of,
    deadline_utc,
    field_of,
    payload_hash,
)
from cdyb_jxc.wire.values import row_to_wire
from tests.conftest import outbound_row, stock_row

S = LedgerState


def test_result_is_plain_json_with_state_names_as_keys():
    result = UploadResult(transaction="outbound", rows_read=300, seconds=2.0)
    result.states[S.ACCEPTED] += 290
    result.states[S.REJECTED] += 10

    as_dict = json.loads(json.dumps(result.as_dict()))

    assert as_dict["transaction"] == "outbound"
    assert as_dict["states"] == {"ACCEPTED": 290, "REJECTED": 10}
    assert (as_dict["rows_read"], as_dict["rows_per_second"]) == (300, 150.0)


def test_rate_is_unknown_for_a_run_that_took_no_time():
    assert UploadResult(transaction="stock", rows_read=5).as_dict()["rows_per_second"] is None


def test_rejected_counts_the_rows_that_need_someone_to_act():
    result = UploadResult(transaction="outbound")
    for state, n in [(S.REJECTED, 2), (S.DUPLICATE_CONFLICT, 1), (S.IN_DOUBT, 4), (S.ACCEPTED, 7)]:
        result.states[state] += n

    assert result.rejected == 3


def test_the_reject_sample_keeps_the_first_rows_with_their_texts_fitted():
    result = UploadResult(transaction="outbound")
    wire = {"mapping_serial_no": "M0001", "hospital_item_name": "阿莫西林胶囊"}

    for i in range(REJECT_SAMPLE + 5):
        result.count_reject(S.REJECTED, f"R{i}", wire, "字段校验失败", "quantity", "原因\x00" + "长" * 3000)

    assert result.states[S.REJECTED] == REJECT_SAMPLE + 5  # every row counted
    assert len(result.rejects) == REJECT_SAMPLE  # the first ones kept
    first = result.rejects[0]
    assert (first["serial_no"], first["item"], first["item_name"], first["field"]) == (
        "R0",
        "M0001",
        "阿莫西林胶囊",
        "quantity",
    )
    assert first["detail"].startswith("原因\\x00长")
    assert len(first["detail"]) == TEXT_MAX
    assert first["detail"].endswith(MARKER.format(n=3006))


def test_payload_hash_depends_on_the_values_not_their_order_or_empty_fields():
    same = payload_hash({"a": "1", "b": "2", "c": None, "d": ""})

    assert same == payload_hash({"b": "2", "a": "1"})
    assert same != payload_hash({"a": "1", "b": "3"})
    assert payload_hash({"a": "broken \ud800"}) != payload_hash({"a": "broken"})  # still hashes


def _hash_as_stored_before(wire):
    """payload_hash as every earlier version computed it: what existing ledgers hold."""
    canonical = json.dumps({k: v for k, v in wire.items() if v}, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


ODD_TEXT = [
    "", " ", "\t\u3000", "0", "-0", "12.50", 'say "hi"', "back\\slash", "tab\there", "line\nbreak\r\n",
    "\x00\x01\x1f\x7f", "\u2028\u2029", "\ud800 lone", "\udfff", "😀 astral", "阿莫西林胶囊(0.25g*24粒)",
    "䓬", "\ufeffbom", "</row>&amp;", "é\u0301", "x" * 3000,
]  # fmt: skip


def test_payload_hash_is_byte_for_byte_the_digest_earlier_versions_stored(profile):
    # a ledger written by an earlier version must compare equal for unchanged rows: a new digest would turn
    # every accepted row into a false 接收后源数据变更 source issue and every pending one into a resend
    rng = random.Random(12)
    for key in ("init", "inbound", "outbound", "stock"):
        txn = profile.transaction(key)
        for n in range(400):
            row = {f.name: rng.choice([*ODD_TEXT, None, f"v{n}"]) for f in txn.fields}
            for wire in (row, row_to_wire(txn, row)):
                assert payload_hash(wire) == _hash_as_stored_before(wire), wire


@pytest.mark.parametrize(
    "wire",
    [
        {},
        {"a": "1"},
        {"a": None},
        {'we"ird\\key': "x", "键": "值", "\x01": "y"},
        {"b": "2", "a": "1", "c": ""},
        {"a": "1", "n": 5, "f": 1.5, "t": True, "z": 0, "e": None},  # not wire text: json decides
        {"a": "1", "nan": float("nan")},
    ],
)
def test_payload_hash_of_any_mapping_matches_the_earlier_digest(wire):
    assert payload_hash(wire) == _hash_as_stored_before(wire)


def test_payload_hash_of_known_rows_is_unchanged(profile):
    # digests as main computed them before issue 12: a regression check independent of the reference above
    outbound, stock = profile.transaction("outbound"), profile.transaction("stock")
    assert payload_hash(row_to_wire(outbound, outbound_row("CK2026112000001"))) == (
        "1c340750d83b90ef7dddb0a4c333e099226e9b2ab91ffb7f0cb9918d42d71865"
    )
    assert payload_hash(row_to_wire(stock, stock_row("KC1", remark='夜班 "补录"\\'))) == (
        "c44b926da4a5842acaaba06c364523e1ebcef76f63cf9b21c5a523b45e6a6d3f"
    )


def test_business_day_is_the_date_of_the_rows_event_time_or_stock_date(profile):
    outbound, stock = profile.transaction("outbound"), profile.transaction("stock")

    assert business_date_of(outbound, row_to_wire(outbound, outbound_row("B1")), None) == "2026-11-20"
    assert business_date_of(stock, row_to_wire(stock, stock_row("B2")), None) == "2026-11-20"


@pytest.mark.parametrize("event_time", [None, "", "20/11/2026"])
def test_business_day_of_a_row_without_a_readable_date_is_the_fallback(profile, event_time):
    outbound = profile.transaction("outbound")
    wire = {**row_to_wire(outbound, outbound_row("B1")), "event_time": event_time}

    assert business_date_of(outbound, wire, "2026-11-19") == "2026-11-19"
    assert business_date_of(outbound, wire, None) == ""


def test_deadline_is_the_end_of_the_next_day_in_the_centres_zone():
    # T+1: a row of 20 November is on time until 22 November 00:00 Beijing time, 21 November 16:00 UTC
    assert deadline_utc("2026-11-20", 8) == datetime(2026, 11, 21, 16, 0, 0)
    assert deadline_utc("2026-11-20", 0) == datetime(2026, 11, 22, 0, 0, 0)
    assert deadline_utc("", 8) is None
    assert deadline_utc("not a day", 8) is None


def test_field_of_a_reason_is_the_logical_field_whose_tag_it_names(profile):
    outbound = profile.transaction("outbound")
    tag = outbound.by_name["quantity"].tag

    assert field_of(outbound, f"出库数量({tag})超出库存") == "quantity"
    assert field_of(outbound, "出库数量超出库存") is None

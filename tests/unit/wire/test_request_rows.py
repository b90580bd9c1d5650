"""A request's rows: each row's non-empty fields as escaped elements, the batch searched once for what to
escape, a control character refused naming its row and field."""

from __future__ import annotations

import re

import pytest

from cdyb_jxc.exceptions import CodecError
from cdyb_jxc.wire.profile import Profile
from cdyb_jxc.wire.request_rows import escape, row_elements
from cdyb_jxc.wire.values import row_to_wire
from tests.conftest import outbound_row


def _alone(profile: Profile, row: dict) -> str:
    """The row's XML written field by field, the reference."""
    txn = profile.transaction("outbound")
    parts = [f"<{s.tag}>{escape(row[s.name])}</{s.tag}>" for s in txn.fields if row.get(s.name)]
    return "<row>" + "".join(parts) + "</row>"


def test_only_the_row_that_needs_it_is_escaped_and_each_reads_as_written_alone(profile: Profile) -> None:
    txn = profile.transaction("outbound")
    rows = [row_to_wire(txn, outbound_row(f"E{n}")) for n in range(3)]
    rows[1]["remark"] = "A<B> & C\r"
    written = row_elements(txn, rows, "<row>", "</row>")
    assert written == [_alone(profile, row) for row in rows]
    assert "<aae013>A&lt;B&gt; &amp; C&#13;</aae013>" in written[1]
    assert "&" not in written[0] + written[2]


def test_rows_without_every_field_read_as_rows_with_them_empty(profile: Profile) -> None:
    txn = profile.transaction("outbound")
    sparse = outbound_row("S1")  # only the fields it has
    full = {spec.name: sparse.get(spec.name) for spec in txn.fields}
    assert set(sparse) != set(full)
    assert row_elements(txn, [sparse], "<r>", "</r>") == row_elements(txn, [full], "<r>", "</r>")


def test_a_control_character_in_a_later_row_is_refused_naming_that_row(profile: Profile) -> None:
    txn = profile.transaction("outbound")
    rows = [row_to_wire(txn, outbound_row(f"C{n}")) for n in range(3)]
    rows[2]["remark"] = "ok\x07"
    with pytest.raises(CodecError, match=re.escape("row 'C2': 备注(aae013) cannot be written as XML")):
        row_elements(txn, rows, "<row>", "</row>")

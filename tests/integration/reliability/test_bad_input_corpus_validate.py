"""``cdyb-jxc validate`` agrees with the upload's hold-back on the whole bad-row corpus: the rows it lists,
with their category, field and detail, are exactly the rows the upload keeps back (held-back rejects and
source issues), and a row only the centre refuses is not listed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from cdyb_jxc.ledger import Ledger
from cdyb_jxc.upload.validate import SOURCE_ISSUE, validate_rows
from cdyb_jxc.wire.client import CentreClient
from cdyb_jxc.wire.profile import Profile
from tests.conftest import make_uploader, outbound_row
from tests.integration.reliability.conftest import BUILDERS, centre_client, ledger_rows, sqlite_ledger_url
from tests.integration.reliability.test_bad_input_corpus_rows import ROW_CASES

ledger_url = pytest.fixture(sqlite_ledger_url)
Found = set[tuple[str | None, str, str | None, str]]


@pytest.fixture
def client(profile: Profile, simulator: Any) -> Iterator[CentreClient]:
    c = centre_client(profile, simulator.url)
    yield c
    c.close()


def _held_back_by_the_upload(ledger: Ledger) -> Found:
    rows = ledger_rows(ledger).values()
    held = {(r["serial_no"], r["category"], r["field"], r["detail"]) for r in rows if r["held_back"]}
    issues = {(i["serial_no"], SOURCE_ISSUE, i["field"], i["detail"]) for i in ledger.iter_source_issues()}
    return held | issues


def _listed_by_validate(profile: Profile, txn: str, rows: list[dict[str, str]], registry: Any) -> Found:
    problems = validate_rows(profile, txn, [rows], registry=registry)
    return {(p.serial_no, p.category, p.field, p.detail) for p in problems}


@pytest.mark.parametrize(
    ("txn", "overrides", "category", "field", "detail", "held_back", "registry", "centre_check"), ROW_CASES
)
def test_validate_lists_what_the_upload_holds_back(
    profile, simulator, client, ledger, txn, overrides, category, field, detail, held_back, registry,
    centre_check,
):  # fmt: skip
    build = BUILDERS[txn]
    rows = [build("OK1", 1), build("BAD1", 1, **overrides)]
    make_uploader(profile, client, ledger, txn, registry=registry).run([rows])
    listed = _listed_by_validate(profile, txn, rows, registry)
    assert listed == _held_back_by_the_upload(ledger)
    assert listed == ({("BAD1", category, field, detail)} if held_back else set())


def test_source_issues_are_listed_as_the_upload_records_them(profile, simulator, client, ledger):
    rows = [
        outbound_row("CK1"),
        outbound_row(""),
        outbound_row("CK1", quantity="5"),
        outbound_row("X" * 300),
        outbound_row("CK2", quantity="abc"),
    ]
    make_uploader(profile, client, ledger).run([rows[:2], rows[2:]])  # the repeat is in the next chunk
    listed = _listed_by_validate(profile, "outbound", rows, None)
    assert listed == _held_back_by_the_upload(ledger)
    assert {(serial, category) for serial, category, _, _ in listed} == {
        (None, SOURCE_ISSUE),
        ("CK1", SOURCE_ISSUE),
        ("X" * 40 + "…", SOURCE_ISSUE),
        ("CK2", "字段校验失败"),
    }

"""Characters a ledger database cannot store (NUL in PostgreSQL text, lone surrogates anywhere) refuse only
the row that holds them, with the field named; the other rows of the chunk are recorded and sent. Against
the real simulator over loopback; ledger on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cdyb_jxc.exceptions import InDoubtError
from cdyb_jxc.ledger import ACCEPTED, IN_DOUBT, REJECTED
from cdyb_jxc.safety.textcap import MARKER, TEXT_MAX, fit, storable, unstorable
from tests.conftest import INSTITUTION, make_uploader, outbound_row

NUL, SURROGATE = "\x00", "\ud800"


_uploader = make_uploader


def test_bad_characters_reject_only_their_rows(profile, client, ledger, store, simulator):
    chunk = [
        outbound_row("OK1"),
        outbound_row("NUL-NAME", hospital_item_name=f"阿莫西林{NUL}胶囊"),
        outbound_row("NUL-MAP", mapping_serial_no=f"M{NUL}1"),
        outbound_row("SUR-NAME", hospital_item_name=f"阿莫西林{SURROGATE}胶囊"),
        outbound_row("SUR-MAP", mapping_serial_no=f"M{SURROGATE}1"),
        outbound_row("NUL-QTY", quantity=f"2{NUL}"),
        outbound_row(f"CK{NUL}9"),
        outbound_row(f"CK{SURROGATE}8"),
        outbound_row("OK2"),
    ]
    result = _uploader(profile, client, ledger).run([chunk])

    rows = {r["serial_no"]: r for r in ledger.iter_rows()}
    got = {s: (r["state"], r["category"], r["field"], r["detail"]) for s, r in rows.items()}
    assert got == {
        "OK1": (ACCEPTED, None, None, None),
        "OK2": (ACCEPTED, None, None, None),
        "NUL-NAME": (REJECTED, "字段校验失败", "hospital_item_name", "医院项目名称(yka095)含控制字符U+0000"),
        "NUL-MAP": (REJECTED, "字段校验失败", "mapping_serial_no", "医院对码流水号(ake005)含控制字符U+0000"),
        "SUR-NAME": (
            REJECTED,
            "字符集错误",
            "hospital_item_name",
            "医院项目名称(yka095)含GBK无法表示的字符(U+D800)",
        ),
        "SUR-MAP": (
            REJECTED,
            "字符集错误",
            "mapping_serial_no",
            "医院对码流水号(ake005)含GBK无法表示的字符(U+D800)",
        ),
        "NUL-QTY": (REJECTED, "字段校验失败", "quantity", "出库数量(akc226)含控制字符U+0000"),
    }
    assert all(rows[s]["held_back"] == 1 for s in got if s.startswith(("NUL", "SUR")))
    # the stored copies of the source values are escaped, not lost
    assert rows["NUL-NAME"]["item_name"] == "阿莫西林\\x00胶囊"
    assert rows["SUR-NAME"]["item_name"] == "阿莫西林\\ud800胶囊"
    assert rows["NUL-MAP"]["mapping_serial_no"] == "M\\x001"
    assert rows["SUR-MAP"]["mapping_serial_no"] == "M\\ud8001"

    # a 流水号 that cannot be stored cannot key a row: a source issue naming the row, field and character
    issues = sorted(ledger.iter_source_issues(), key=lambda x: x["source_row"])
    reason = "流水号(yka105)含数据库无法存储的字符"
    assert [(x["source_row"], x["serial_no"], x["row_key"], x["field"], x["detail"]) for x in issues] == [
        (7, "CK\\x009", "CK\\x009#7", "serial_no", f"源数据第7行: {reason}U+0000，无法记录"),
        (8, "CK\\ud8008", "CK\\ud8008#8", "serial_no", f"源数据第8行: {reason}U+D800，无法记录"),
    ]
    assert result.source_issues == 2

    # the reject sample is printable JSON (it travels as XCom and is printed by the CLI)
    json.dumps(result.as_dict(), ensure_ascii=False).encode("utf-8")
    assert {r["serial_no"] for r in result.rejects} == set(got) - {"OK1", "OK2"} | {"CK\\x009", "CK\\ud8008"}

    assert sorted(r["serial_no"] for r in store.accepted_rows()) == ["OK1", "OK2"]
    assert simulator.requests == 1


def test_bad_serials_in_a_later_run_do_not_block_the_day(profile, client, ledger, store):
    """A second run with the same bad rows (and a fixed one) replaces the issues instead of failing."""
    _uploader(profile, client, ledger).run([[outbound_row(f"CK{NUL}1"), outbound_row("OK1")]])
    _uploader(profile, client, ledger).run([[outbound_row(f"CK{NUL}1"), outbound_row("OK2")]])
    assert {r["serial_no"]: r["state"] for r in ledger.iter_rows()} == {"OK1": ACCEPTED, "OK2": ACCEPTED}
    assert [x["row_key"] for x in ledger.iter_source_issues()] == ["CK\\x001#1"]


class _LostReply:
    """A sender whose every reply is lost: the rows end IN_DOUBT."""

    def send(self, txn_key: str, rows: Any) -> Any:
        raise InDoubtError("reply lost")


def test_row_in_doubt_that_became_unwritable_does_not_fail_its_batch(profile, client, ledger, store):
    """A row in doubt is normally sent again whatever its error (a duplicate answer reconciles it); one that
    now holds a character XML cannot carry would fail the whole request, so it is not sent: it stays IN_DOUBT
    (the centre may hold the version sent before) with the reason, and the batch goes out without it."""
    with pytest.raises(InDoubtError):
        _uploader(profile, _LostReply(), ledger).run([[outbound_row("D1"), outbound_row("D2")]])
    assert {r["state"] for r in ledger.iter_rows()} == {IN_DOUBT}
    _uploader(profile, client, ledger).run([[outbound_row("D1", unit=f"盒{NUL}"), outbound_row("D2")]])
    rows = {r["serial_no"]: r for r in ledger.iter_rows()}
    assert (rows["D1"]["state"], rows["D1"]["field"], rows["D1"]["detail"]) == (
        IN_DOUBT,
        "unit",
        "在途记录的源数据现已无法发送(计量单位(dw)含控制字符U+0000)；中心可能已保存此前发送的版本，请修正源数据后重传",
    )
    assert rows["D2"]["state"] == ACCEPTED
    assert sorted(r["serial_no"] for r in store.accepted_rows()) == ["D2"]


def _row(serial: str, **values: Any) -> dict[str, Any]:
    from cdyb_jxc.ledger.batch_store import utcnow

    now = utcnow()
    return {
        "institution_code": INSTITUTION,
        "serial_no": serial,
        "transaction_code": "JXC003",
        "business_date": "2026-11-20",
        "payload_hash": "0" * 64,
        "state": REJECTED,
        "first_seen_at": now,
        "updated_at": now,
        "attempts": 0,
        **values,
    }


def test_every_ledger_write_fits_its_values(ledger):
    """The write boundary itself: whatever text reaches the ledger, no write fails (PostgreSQL raises on
    NUL, on surrogates and on a String(n) overflow; SQLite on surrogates)."""
    bad = f"a{NUL}b{SURROGATE}c"
    huge = "长" * 1_000_000
    ledger.insert_rows([_row("R1", item_name=bad, mapping_serial_no=bad, category="类" * 5000, detail=huge)])
    ledger.update_rows(
        INSTITUTION, [{"serial_no": "R1", "field": "f" * 500, "detail": bad, "run_token": bad}]
    )
    (row,) = ledger.iter_rows()
    assert (row["item_name"], row["mapping_serial_no"], row["detail"]) == ("a\\x00b\\ud800c",) * 3
    assert row["category"] == fit("类" * 5000, 64)
    assert row["category"].endswith("…[已截断，原文5000字符]")
    assert (len(row["field"]), len(row["category"])) == (100, 64)

    batch = ledger.start_batch(
        institution_code=INSTITUTION, transaction_code="JXC003", row_count=1, run_token=bad, task_id=bad
    )
    ledger.finish_batch(batch, outcome="in_doubt", retcode="9" * 50, retmsg=huge, error=bad)
    (b,) = ledger.batches()
    assert len(b["retmsg"]) == TEXT_MAX
    assert b["retmsg"].endswith(MARKER.format(n=len(huge)))
    assert (b["error"], b["task_id"], b["retcode"]) == ("a\\x00b\\ud800c", "a\\x00b\\ud800c", "9" * 8)

    ledger.set_milestone(INSTITUTION, "probe", bad)
    assert ledger.milestone(INSTITUTION, "probe")["detail"] == "a\\x00b\\ud800c"  # type: ignore[index]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain 中文", None),
        ("tab\tnew\nline", None),
        (f"x{NUL}", NUL),
        (f"x{SURROGATE}", SURROGATE),
        ("\udfff", "\udfff"),
        ("\ufffe\x01\x7f", None),  # storable: refused by R1 before sending, but a database keeps it
    ],
)
def test_unstorable_characters(text, expected):
    assert unstorable(text) == expected
    assert unstorable(storable(text)) is None


# -- integers no ledger column holds (a hostile succnum of 10**30) ------------------------------------------
@pytest.mark.parametrize("count", [10**30, 99999999999, 2**31, -(2**31) - 1])
def test_count_no_integer_column_holds_is_stored_as_null_not_a_failed_write(ledger, count):
    """PostgreSQL ``integer`` raises "integer out of range", SQLite an OverflowError past 64 bits: the
    ledger's write boundary stores such a count as NULL (a not-null column its nearest bound)."""
    batch = ledger.start_batch(
        institution_code=INSTITUTION, transaction_code="JXC003", run_token="t", row_count=count
    )
    ledger.finish_batch(batch, outcome="in_doubt", retcode="1", succnum=count, failnum=count, error="x")
    (stored,) = ledger.batches()
    assert (stored["succnum"], stored["failnum"], stored["outcome"]) == (None, None, "in_doubt")
    assert stored["row_count"] == (2**31 - 1 if count > 0 else -(2**31))
    ledger.finish_batch(batch, succnum=2**31 - 1, failnum=-(2**31))  # the bounds themselves fit
    (stored,) = ledger.batches()
    assert (stored["succnum"], stored["failnum"]) == (2**31 - 1, -(2**31))


def test_fit_values_leaves_booleans_and_in_range_integers_alone():
    from cdyb_jxc.ledger.schema import upload_batch
    from cdyb_jxc.safety.textcap import column_caps, fit_values

    caps = column_caps(upload_batch)
    values = {"succnum": 3, "failnum": True, "id": 10**30}  # the key column is not fitted
    assert fit_values(caps, values) is values
    assert fit_values(caps, {"succnum": 10**30}) == {"succnum": None}

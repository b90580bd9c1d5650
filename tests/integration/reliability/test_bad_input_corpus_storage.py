"""Bad-input corpus, storage: source values a ledger database cannot store, and centre texts too large to
store, on SQLite and on PostgreSQL (the production ledger, where NUL and over-long values raise).

Same rules as the rest of the corpus (``conftest.py``): the exact text a user sees is asserted, and no
source row is lost (every 流水号 ends in the ledger in a visible state, or as a source issue, with its
reason). One bad value refuses its own row only: the other rows of the chunk are recorded and accepted by
the simulator.
"""

from __future__ import annotations

from typing import Any

import pytest

from cdyb_jxc.cli import main as cli_main
from cdyb_jxc.ledger import ACCEPTED, REJECTED, Ledger
from cdyb_jxc.safety.textcap import storable
from tests.conftest import (
    make_uploader,
    outbound_row,
    write_csv,
)
from tests.integration.reliability.conftest import BUILDERS, conn_env

NUL, HIGH, LOW = "\x00", "\ud83d", "\udc8a"  # NUL; the two halves of 💊, each alone


def case(case_id: str, txn: str, overrides: dict[str, str], category: str, field: str, detail: str) -> Any:
    return pytest.param(txn, overrides, category, field, detail, id=case_id)


CHARSET, FIELD = "字符集错误", "字段校验失败"
UNSTORABLE = "流水号(yka105)含数据库无法存储的字符"
ROW_CASES = [
    # NUL: PostgreSQL text cannot hold it; R1 names it as a control character
    case("nul-in-item-name", "outbound", {"hospital_item_name": f"头孢{NUL}"}, FIELD, "hospital_item_name",
         "医院项目名称(yka095)含控制字符U+0000"),
    case("nul-in-mapping-serial", "outbound", {"mapping_serial_no": f"{NUL}M0001"}, FIELD,
         "mapping_serial_no", "医院对码流水号(ake005)含控制字符U+0000"),
    case("nul-in-unit", "outbound", {"unit": f"盒{NUL}"}, FIELD, "unit", "计量单位(dw)含控制字符U+0000"),
    case("nul-in-code", "outbound", {"outbound_type": f"21{NUL}"}, FIELD, "outbound_type",
         "出库类型(cklx)含控制字符U+0000"),
    case("nul-in-number", "outbound", {"sale_price": f"12.5{NUL}"}, FIELD, "sale_price",
         "出库单价(akc225)含控制字符U+0000"),
    case("nul-in-datetime", "outbound", {"event_time": f"2026-11-20 10:00:00{NUL}"}, FIELD, "event_time",
         "出库时间(aae036)含控制字符U+0000"),
    case("nul-in-lot-no", "inbound", {"lot_no": f"B{NUL}1"}, FIELD, "lot_no",
         "生产批号(scph)含控制字符U+0000"),
    case("nul-in-stock-quantity", "stock", {"stock_quantity": NUL}, FIELD, "stock_quantity",
         "库存数量(kcsl)含控制字符U+0000"),
    # lone surrogates (a broken decoder's output): no UTF-8 database stores them, GBK cannot hold them (R6)
    case("high-surrogate-in-item-name", "outbound", {"hospital_item_name": f"头孢{HIGH}"}, CHARSET,
         "hospital_item_name", "医院项目名称(yka095)含GBK无法表示的字符(U+D83D)"),
    case("low-surrogate-in-mapping-serial", "outbound", {"mapping_serial_no": f"M{LOW}"}, CHARSET,
         "mapping_serial_no", "医院对码流水号(ake005)含GBK无法表示的字符(U+DC8A)"),
    case("surrogate-in-supplier", "inbound", {"supplier_name": f"国药{HIGH}{LOW}"}, CHARSET, "supplier_name",
         "供应商名称(gysmc)含GBK无法表示的字符(U+D83D)"),
    case("surrogate-in-item-code", "init", {"insurance_item_code": f"XA{LOW}"}, CHARSET,
         "insurance_item_code", "医保项目编码(yka094)含GBK无法表示的字符(U+DC8A)"),
    case("surrogate-in-remark", "outbound", {"remark": LOW}, CHARSET, "remark",
         "备注(aae013)含GBK无法表示的字符(U+DC8A)"),
]  # fmt: skip


@pytest.mark.parametrize(("txn", "overrides", "category", "field", "detail"), ROW_CASES)
def test_unstorable_value_rejects_its_row_only(
    profile, simulator, store, client, ledger, txn, overrides, category, field, detail
):
    build = BUILDERS[txn]
    rows = [build("OK1", 1), build("BAD1", 1, **overrides), build("OK2", 2)]
    result = make_uploader(profile, client, ledger, txn).run([rows])

    state = {r["serial_no"]: r for r in ledger.iter_rows()}
    assert {s: r["state"] for s, r in state.items()} == {"OK1": ACCEPTED, "BAD1": REJECTED, "OK2": ACCEPTED}
    bad = state["BAD1"]
    assert (bad["category"], bad["field"], bad["detail"], bad["held_back"]) == (category, field, detail, 1)
    # the stored copies of the source values are the values, escaped
    wire = rows[1]
    assert bad["item_name"] == storable(wire["hospital_item_name"])
    assert bad["mapping_serial_no"] == storable(wire["mapping_serial_no"])
    assert result.rejects == [
        {
            "serial_no": "BAD1",
            "item": storable(wire["mapping_serial_no"]),
            "item_name": storable(wire["hospital_item_name"]),
            "category": category,
            "field": field,
            "detail": detail,
        }
    ]
    assert sorted(r["serial_no"] for r in store.accepted_rows()) == ["OK1", "OK2"]
    assert simulator.requests == 1


@pytest.mark.parametrize(
    ("serial", "shown", "reason"),
    [
        pytest.param(f"CK{NUL}2", "CK\\x002", f"{UNSTORABLE}U+0000，无法记录", id="nul"),
        pytest.param(NUL, "\\x00", f"{UNSTORABLE}U+0000，无法记录", id="only-nul"),
        pytest.param(f"CK{HIGH}2", "CK\\ud83d2", f"{UNSTORABLE}U+D83D，无法记录",
                     id="high-surrogate"),
        pytest.param(f"{LOW}", "\\udc8a", f"{UNSTORABLE}U+DC8A，无法记录",
                     id="low-surrogate"),
        pytest.param(NUL * 300, "\\x00" * 40 + "…", "流水号(yka105)长度300，无法记录", id="too-long-and-nul"),
    ],
)  # fmt: skip
def test_unstorable_serial_is_a_source_issue_naming_the_row(
    profile, simulator, store, client, ledger, serial, shown, reason
):
    rows = [outbound_row("CK1"), outbound_row(serial), outbound_row("CK3")]
    result = make_uploader(profile, client, ledger, "outbound").run([rows])
    assert {r["serial_no"]: r["state"] for r in ledger.iter_rows()} == {"CK1": ACCEPTED, "CK3": ACCEPTED}
    detail = f"源数据第2行: {reason}"
    assert result.rejects == [
        {
            "serial_no": shown,
            "row": 2,
            "item": "M0001",
            "item_name": "阿莫西林胶囊1号",
            "category": "字段校验失败",
            "field": "serial_no",
            "detail": detail,
        }
    ]
    (issue,) = ledger.iter_source_issues()
    assert (issue["serial_no"], issue["source_row"], issue["field"], issue["detail"]) == (
        shown,
        2,
        "serial_no",
        detail,
    )
    assert issue["row_key"].endswith("#2")
    assert sorted(r["serial_no"] for r in store.accepted_rows()) == ["CK1", "CK3"]


def test_cli_file_with_a_nul_row_records_the_others(
    profile, simulator, store, ledger_url, tmp_path, monkeypatch, capsys
):
    """The whole path a hospital uses: a CSV export with a NUL byte in one row, ledger on both dialects."""
    conn_env(monkeypatch, simulator.url, timeout=5)
    src = write_csv(
        tmp_path / "out.csv",
        [outbound_row("CK1"), outbound_row("CK2", hospital_item_name=f"坏{NUL}名"), outbound_row("CK3")],
    )
    code = cli_main(["upload", "--transaction", "outbound", "--file", str(src), "--ledger", ledger_url,
                     "--no-progress"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 1, out
    assert "  ACCEPTED             2" in out
    assert "【字段校验失败】医院项目名称(yka095)含控制字符U+0000" in out
    assert sorted(r["serial_no"] for r in store.accepted_rows()) == ["CK1", "CK3"]
    led = Ledger(ledger_url)
    try:
        rows = {r["serial_no"]: r for r in led.iter_rows()}
    finally:
        led.dispose()
    assert (rows["CK2"]["state"], rows["CK2"]["item_name"]) == (REJECTED, "坏\\x00名")

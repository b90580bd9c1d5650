"""Bad-input corpus, source rows: a row with a wrong type, length, code, date or mapping, a 流水号 reused or
repeated, a row without a usable 流水号. Each bad row ends in the ledger with its category, field and exact
detail (or as a source issue named by its row number) while the good rows of the same chunk are accepted;
a row held back locally is answered by the centre with the same text. The rules of the corpus are in
``conftest.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from cdyb_jxc.ledger import ACCEPTED, DUPLICATE_CONFLICT, REJECTED
from cdyb_jxc.wire.client import CentreClient
from cdyb_jxc.wire.profile import Profile
from cdyb_jxc.wire.rules import MappingEntry
from cdyb_jxc.wire.values import row_to_wire
from tests.conftest import make_uploader, outbound_row
from tests.integration.reliability.conftest import (
    BUILDERS,
    assert_no_row_lost,
    centre_client,
    ledger_rows,
    sqlite_ledger_url,
)

ledger_url = pytest.fixture(sqlite_ledger_url)
# A day ahead of the centre's clock (Asia/Shanghai): R7 rejects it on the server side.
FUTURE = (datetime.now(timezone(timedelta(hours=8))) + timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S")


@pytest.fixture
def client(profile: Profile, simulator: Any) -> Iterator[CentreClient]:
    c = centre_client(profile, simulator.url)
    yield c
    c.close()


# ---------------------------------------------------------------------------------------------------------
# row-level errors: every row ends in the ledger with category, field and detail
# ---------------------------------------------------------------------------------------------------------

UNMAPPED_LOCALLY = {"M0001": MappingEntry("XA000001")}


def row_case(
    case_id: str,
    txn: str,
    overrides: dict[str, str],
    category: str,
    field: str,
    detail: str,
    *,
    held_back: bool = True,
    registry: dict[str, MappingEntry] | None = None,
    on_the_wire: bool = True,
) -> Any:
    """One bad source row; ``held_back`` rows never leave the client, the others are rejected by the centre.

    A held-back row that can be put on the wire is also sent to the centre directly, which must answer
    the very same text (SPEC §7: hold back "with the same reason text").
    """
    centre_check = held_back and registry is None and on_the_wire
    return pytest.param(
        txn, overrides, category, field, detail, held_back, registry, centre_check, id=case_id
    )


ROW_CASES = [
    # wrong types
    row_case(
        "text-in-number",
        "outbound",
        {"quantity": "abc"},
        "字段校验失败",
        "quantity",
        "出库数量(akc226)不是合法的数值: 'abc'",
    ),
    row_case(
        "number-with-exponent",
        "outbound",
        {"quantity": "1e3"},
        "字段校验失败",
        "quantity",
        "出库数量(akc226)不是合法的数值: '1e3'",
    ),
    row_case(
        "too-many-decimals",
        "outbound",
        {"sale_price": "1.23456"},
        "字段校验失败",
        "sale_price",
        "出库单价(akc225)小数位数超过4位: '1.23456'",
    ),
    row_case(
        "datetime-month-13",
        "outbound",
        {"event_time": "2026-13-01 10:00:00"},
        "字段校验失败",
        "event_time",
        "出库时间(aae036)不是合法的yyyy-MM-dd HH:mm:ss: '2026-13-01 10:00:00'",
    ),
    row_case(
        "datetime-wrong-shape",
        "outbound",
        {"event_time": "2026/11/20 10:00"},
        "字段校验失败",
        "event_time",
        "出库时间(aae036)不是合法的yyyy-MM-dd HH:mm:ss: '2026/11/20 10:00'",
    ),
    row_case(
        "date-where-datetime-needed",
        "outbound",
        {"event_time": "2026-11-20"},
        "字段校验失败",
        "event_time",
        "出库时间(aae036)不是合法的yyyy-MM-dd HH:mm:ss: '2026-11-20'",
    ),
    row_case(
        "date-feb-30",
        "outbound",
        {"expiry_date": "2028-02-30"},
        "字段校验失败",
        "expiry_date",
        "有效期止(yxqz)不是合法的yyyy-MM-dd: '2028-02-30'",
    ),
    row_case(
        "stock-date-compact",
        "stock",
        {"stock_date": "20261120"},
        "字段校验失败",
        "stock_date",
        "盘存日期(pcrq)不是合法的yyyy-MM-dd: '20261120'",
    ),
    # negative or zero quantities, negative prices
    row_case(
        "zero-quantity",
        "outbound",
        {"quantity": "0"},
        "字段校验失败",
        "quantity",
        "出库数量(akc226)必须大于0: '0'",
    ),
    row_case(
        "negative-quantity",
        "outbound",
        {"quantity": "-2"},
        "字段校验失败",
        "quantity",
        "出库数量(akc226)必须大于0: '-2'",
    ),
    row_case(
        "negative-price",
        "outbound",
        {"sale_price": "-0.01"},
        "字段校验失败",
        "sale_price",
        "出库单价(akc225)不能小于0: '-0.01'",
    ),
    row_case(
        "init-zero-quantity",
        "init",
        {"quantity": "0"},
        "字段校验失败",
        "quantity",
        "采购数量(akc226)必须大于0: '0'",
    ),
    row_case(
        "init-negative-price",
        "init",
        {"purchase_price": "-1"},
        "字段校验失败",
        "purchase_price",
        "采购价格(yke553)不能小于0: '-1'",
    ),
    row_case(
        "negative-stock",
        "stock",
        {"stock_quantity": "-3"},
        "字段校验失败",
        "stock_quantity",
        "库存数量(kcsl)不能小于0: '-3'",
    ),
    # too long in GBK bytes (a Chinese character counts 2)
    row_case(
        "name-too-long-gbk",
        "outbound",
        {"hospital_item_name": "药" * 101},
        "字段校验失败",
        "hospital_item_name",
        "医院项目名称(yka095)长度超过200字节(实际202字节)",
    ),
    row_case(
        "unit-11-chars-22-bytes",
        "outbound",
        {"unit": "盒" * 11},
        "字段校验失败",
        "unit",
        "计量单位(dw)长度超过20字节(实际22字节)",
    ),
    row_case(
        "lot-no-too-long-gbk",
        "inbound",
        {"lot_no": "批" * 16},
        "字段校验失败",
        "lot_no",
        "生产批号(scph)长度超过30字节(实际32字节)",
    ),
    # characters GBK cannot hold; control characters
    row_case(
        "gbk-cannot-hold",
        "outbound",
        {"hospital_item_name": "艾司唑仑(䓬)"},
        "字符集错误",
        "hospital_item_name",
        "医院项目名称(yka095)含GBK无法表示的字符'䓬'(U+44EC)",
    ),
    row_case(
        "emoji-in-remark",
        "outbound",
        {"remark": "已发💊"},
        "字符集错误",
        "remark",
        "备注(aae013)含GBK无法表示的字符'💊'(U+1F48A)",
    ),
    row_case(
        "control-char-x01",
        "outbound",
        {"hospital_item_name": "坏\x01名"},
        "字段校验失败",
        "hospital_item_name",
        "医院项目名称(yka095)含控制字符U+0001",
        on_the_wire=False,
    ),
    row_case(
        "control-char-x1f",
        "outbound",
        {"remark": "备注\x1f"},
        "字段校验失败",
        "remark",
        "备注(aae013)含控制字符U+001F",
        on_the_wire=False,
    ),
    # unknown codes, missing required / conditional fields
    row_case(
        "outbound-type-28",
        "outbound",
        {"outbound_type": "28"},
        "字段校验失败",
        "outbound_type",
        "出库类型(cklx)取值'28'不在代码表内(21/22/23/24/25/26/27/29)",
    ),
    row_case(
        "split-flag-2",
        "outbound",
        {"split_flag": "2"},
        "字段校验失败",
        "split_flag",
        "是否拆零标志(sfclbz)取值'2'不在代码表内(0/1)",
    ),
    row_case(
        "inbound-type-16",
        "inbound",
        {"inbound_type": "16"},
        "字段校验失败",
        "inbound_type",
        "入库类型(rklx)取值'16'不在代码表内(11/12/13/14/15/19)",
    ),
    row_case(
        "split-without-pack-ratio",
        "outbound",
        {"split_flag": "1"},
        "字段校验失败",
        "pack_ratio",
        "包装换算系数(bzhsxs)在是否拆零标志(sfclbz)=1时不能为空",
    ),
    row_case(
        "dept-use-without-dept",
        "outbound",
        {"outbound_type": "23"},
        "字段校验失败",
        "dept_code",
        "领用科室编码(yka097)在出库类型(cklx)=23时不能为空",
    ),
    row_case(
        "purchase-without-supplier",
        "inbound",
        {"supplier_name": ""},
        "字段校验失败",
        "supplier_name",
        "供应商名称(gysmc)在入库类型(rklx)=11时不能为空",
    ),
    row_case(
        "missing-item-code",
        "outbound",
        {"insurance_item_code": ""},
        "字段校验失败",
        "insurance_item_code",
        "医保项目编码(yka094)不能为空",
    ),
    row_case(
        "return-without-original-serial",
        "inbound",
        {"inbound_type": "15"},
        "字段校验失败",
        "original_serial_no",
        "原出库流水号(yyka105)在入库类型(rklx)=15时不能为空",
    ),
    # rejected by the centre (not knowable locally)
    row_case(
        "future-time-r7",
        "outbound",
        {"event_time": FUTURE},
        "字段校验失败",
        "event_time",
        f"出库时间(aae036)晚于服务器当前时间: '{FUTURE}'",
        held_back=False,
    ),
    row_case(
        "unmapped-at-centre",
        "outbound",
        {"mapping_serial_no": "M9999"},
        "未对码",
        "mapping_serial_no",
        "医院对码流水号(ake005)'M9999'未对码",
        held_back=False,
    ),
    row_case(
        "mapping-mismatch-at-centre",
        "outbound",
        {"insurance_item_code": "XA999999"},
        "对码信息不一致",
        "insurance_item_code",
        "医保项目编码(yka094)'XA999999'与对码信息'XA000001'不一致",
        held_back=False,
    ),
    row_case(
        "return-of-unknown-outbound",
        "inbound",
        {"inbound_type": "15", "original_serial_no": "CK-NONE"},
        "原出库记录不存在",
        "original_serial_no",
        "原出库流水号(yyka105)'CK-NONE'不存在或不属于同一项目",
        held_back=False,
    ),
    # held back against a local copy of the 对码 registry
    row_case(
        "unmapped-in-local-registry",
        "outbound",
        {"mapping_serial_no": "M0002", "insurance_item_code": "XA000002"},
        "未对码",
        "mapping_serial_no",
        "医院对码流水号(ake005)'M0002'未对码",
        registry=UNMAPPED_LOCALLY,
    ),
    row_case(
        "mismatch-in-local-registry",
        "outbound",
        {"insurance_item_code": "XA000009"},
        "对码信息不一致",
        "insurance_item_code",
        "医保项目编码(yka094)'XA000009'与对码信息'XA000001'不一致",
        registry=UNMAPPED_LOCALLY,
    ),
]


@pytest.mark.parametrize(
    ("txn", "overrides", "category", "field", "detail", "held_back", "registry", "centre_check"), ROW_CASES
)
def test_bad_row_is_kept_with_its_reason(
    profile, simulator, store, client, ledger, txn, overrides, category, field, detail, held_back, registry,
    centre_check,
):  # fmt: skip
    build = BUILDERS[txn]
    good, bad = build("OK1", 1), build("BAD1", 1, **overrides)
    result = make_uploader(profile, client, ledger, txn, registry=registry).run([[good, bad]])

    rows = assert_no_row_lost(ledger, ["OK1", "BAD1"])
    assert rows["OK1"]["state"] == ACCEPTED
    row = rows["BAD1"]
    assert (row["state"], row["category"], row["field"], row["detail"]) == (REJECTED, category, field, detail)
    assert row["held_back"] == int(held_back)
    assert row["attempts"] == (0 if held_back else 1)
    assert result.rejects == [
        {
            "serial_no": "BAD1",
            "item": bad["mapping_serial_no"],
            "item_name": bad["hospital_item_name"],
            "category": category,
            "field": field,
            "detail": detail,
        }
    ]
    assert sorted(r["serial_no"] for r in store.accepted_rows()) == ["OK1"]
    assert simulator.requests == 1
    if centre_check:
        reply = client.send(txn, [row_to_wire(profile.transaction(txn), bad)]).reply
        assert [f.message for f in reply.failures] == [f"【{category}】{detail}"]


def test_serial_already_stored_by_someone_else_is_a_conflict(profile, simulator, client, ledger):
    """A 流水号 reused from another upload (e.g. another system or a renumbered bill)."""
    assert client.send("outbound", [outbound_row("CK-REUSED")]).reply.status == "success"
    uploader = make_uploader(profile, client, ledger)
    uploader.run([[outbound_row("CK-REUSED", quantity="9"), outbound_row("OK1")]])
    rows = assert_no_row_lost(ledger, ["CK-REUSED", "OK1"])
    row = rows["CK-REUSED"]
    assert (row["state"], row["category"], row["field"]) == (DUPLICATE_CONFLICT, "数据重复上传", "serial_no")
    assert row["detail"] == "流水号(yka105)'CK-REUSED'已上传（本客户端从未发送过该流水号）"


def test_serial_repeated_inside_one_source_is_uploaded_once_and_reported(profile, store, client, ledger):
    rows = [outbound_row("CK1"), outbound_row("CK2"), outbound_row("CK1", quantity="5")]
    result = make_uploader(profile, client, ledger).run([rows])
    state = assert_no_row_lost(ledger, ["CK1", "CK2"])
    assert {s: r["state"] for s, r in state.items()} == {"CK1": ACCEPTED, "CK2": ACCEPTED}
    assert result.duplicate_in_source == 1
    assert result.rejects == [
        {
            "serial_no": "CK1",
            "row": 3,
            "item": "M0001",
            "item_name": "阿莫西林胶囊1号",
            "category": "数据重复上传",
            "field": "serial_no",
            "detail": "流水号在数据源中重复(源数据第3行)，仅上传第一条",
        }
    ]
    # the first row wins: the centre holds quantity 2, not 5
    (stored,) = [r for r in store.accepted_rows() if r["serial_no"] == "CK1"]
    assert stored["quantity"] == "2"


@pytest.mark.parametrize(
    ("serial", "shown", "detail"),
    [
        pytest.param("", None, "流水号(yka105)不能为空", id="empty-serial"),
        pytest.param(
            "X" * 300, "X" * 40 + "…", "流水号(yka105)长度300，无法记录", id="serial-too-long-to-key"
        ),
    ],
)
def test_row_without_usable_serial_is_reported_by_row_number(
    profile, store, client, ledger, serial, shown, detail
):
    rows = [outbound_row("CK1"), outbound_row(serial), outbound_row("CK3")]
    uploader = make_uploader(profile, client, ledger)
    result = uploader.run([rows])  # one bad row does not stop the others (or the day's other uploads)
    assert result.source_issues == 1
    assert {s: r["state"] for s, r in ledger_rows(ledger).items()} == {"CK1": ACCEPTED, "CK3": ACCEPTED}
    reason = f"源数据第2行: {detail}"
    item = {"item": "M0001", "item_name": "阿莫西林胶囊1号"}
    assert result.rejects == [
        {
            "serial_no": shown,
            "row": 2,
            **item,
            "category": "字段校验失败",
            "field": "serial_no",
            "detail": reason,
        }
    ]
    # the row is kept in the ledger as a source issue, which the reject report and the monitor list
    (issue,) = ledger.iter_source_issues()
    assert (issue["serial_no"], issue["source_row"], issue["row_key"]) == (shown, 2, f"{shown or ''}#2")
    assert (issue["transaction_code"], issue["business_date"], issue["detail"]) == (
        "JXC003",
        "2026-11-20",
        reason,
    )

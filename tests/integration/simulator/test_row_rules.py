"""SPEC §6 R-rules over SOAP: row errors, partial success and persistence."""

from __future__ import annotations

from datetime import datetime, timedelta

from cdyb_jxc.simulator.centre import Centre
from cdyb_jxc.simulator.server import Simulator
from cdyb_jxc.wire.codec import FAILURE, PARTIAL, SUCCESS
from cdyb_jxc.wire.profile import Profile
from tests.conftest import inbound_row, init_row, outbound_row, stock_row


def _failures(reply) -> dict[str, str]:
    return {f.serial_no: f.message for f in reply.failures}


def _stored(store) -> set[str]:
    return {r["serial_no"] for r in store.accepted_rows()}


def test_three_rows_with_one_repeated_serial_is_partial(send, store):
    assert send("outbound", [outbound_row("CK0001")]).status == SUCCESS
    reply = send("outbound", [outbound_row("CK0002"), outbound_row("CK0001"), outbound_row("CK0003")])
    assert reply.status == PARTIAL
    assert reply.retcode == "2"
    assert (reply.succnum, reply.failnum) == (2, 1)
    assert _failures(reply) == {"CK0001": "【数据重复上传】流水号(yka105)'CK0001'已上传"}
    assert _stored(store) == {"CK0001", "CK0002", "CK0003"}


def test_r2_serial_repeated_within_one_call_even_if_first_failed(send, store):
    bad = outbound_row("CK1", quantity="0")
    reply = send("outbound", [bad, outbound_row("CK1"), outbound_row("CK2")])
    assert reply.status == PARTIAL
    msgs = [f.message for f in reply.failures]
    assert msgs[0].startswith("【字段校验失败】出库数量(akc226)必须大于0")
    assert msgs[1] == "【数据重复上传】流水号(yka105)'CK1'在本次上传中重复"
    assert _stored(store) == {"CK2"}


def test_r2_serial_is_unique_across_transactions(send, store):
    assert send("inbound", [inbound_row("X1")]).status == SUCCESS
    reply = send("outbound", [outbound_row("X1")])
    assert reply.status == FAILURE
    assert reply.failures[0].category == "数据重复上传"


def test_every_row_failing_gives_minus_one_with_dataset(send, store):
    reply = send("outbound", [outbound_row("A", quantity="-1"), outbound_row("B", sale_price="abc")])
    assert reply.status == FAILURE
    assert reply.retcode == "-1"
    assert not reply.whole_call_rejected
    assert (reply.succnum, reply.failnum) == (0, 2)
    assert store.count_rows() == 0


def test_r1_missing_required_field(send):
    row = outbound_row("A")
    del row["unit"]
    assert _failures(send("outbound", [row])) == {"A": "【字段校验失败】计量单位(dw)不能为空"}


def test_r1_too_long_in_gbk_bytes(send):
    reply = send("outbound", [outbound_row("A", lot_no="批" * 16), outbound_row("B", lot_no="批" * 15)])
    assert _failures(reply) == {"A": "【字段校验失败】生产批号(scph)长度超过30字节(实际32字节)"}


def test_r1_bad_number_and_too_many_decimals(send):
    reply = send("outbound", [outbound_row("A", sale_price="1e3"), outbound_row("B", sale_price="1.50000")])
    failures = _failures(reply)
    assert failures["A"] == "【字段校验失败】出库单价(akc225)不是合法的数值: '1e3'"
    assert failures["B"] == "【字段校验失败】出库单价(akc225)小数位数超过4位: '1.50000'"


def test_r1_code_outside_set_and_bad_date(send):
    reply = send(
        "outbound", [outbound_row("A", outbound_type="28"), outbound_row("B", expiry_date="2026-02-30")]
    )
    failures = _failures(reply)
    assert failures["A"].startswith("【字段校验失败】出库类型(cklx)取值'28'不在代码表内")
    assert failures["B"] == "【字段校验失败】有效期止(yxqz)不是合法的yyyy-MM-dd: '2026-02-30'"


def test_r1_conditional_fields(send):
    reply = send(
        "outbound",
        [
            outbound_row("A", outbound_type="23"),
            outbound_row("B", outbound_type="23", dept_code="NK01", dept_name="内科"),
            outbound_row("C", split_flag="1"),
            outbound_row("D", split_flag="1", pack_ratio="1"),
            outbound_row("E", split_flag="1", pack_ratio="24"),
        ],
    )
    assert _failures(reply) == {
        "A": "【字段校验失败】领用科室编码(yka097)在出库类型(cklx)=23时不能为空",
        "C": "【字段校验失败】包装换算系数(bzhsxs)在是否拆零标志(sfclbz)=1时不能为空",
        "D": "【字段校验失败】包装换算系数(bzhsxs)必须大于1: '1'",
    }


def test_r1_supplier_required_for_purchase_inbound(send):
    row = inbound_row("R1")
    del row["supplier_name"]
    other = inbound_row("R2", inbound_type="13")
    del other["supplier_name"]
    assert _failures(send("inbound", [row, other])) == {
        "R1": "【字段校验失败】供应商名称(gysmc)在入库类型(rklx)=11时不能为空"
    }


def test_r1_unknown_and_repeated_elements(send_raw, profile: Profile):
    decl = '<?xml version="1.0" encoding="GBK"?>'
    control = (
        "<control><jyfwbm>JXC004</jyfwbm><jyfwyh>his_user</jyfwyh><jyfwyzm>S3cret-验证码-value</jyfwyzm>"
        "<akb020>H51010400001</akb020><nums>2</nums></control>"
    )
    base = (
        "<yka094>XA000001</yka094><yka095>药</yka095><ake005>M0001</ake005><sfclbz>0</sfclbz><dw>盒</dw>"
        "<pcrq>2026-11-20</pcrq><kcsl>1</kcsl>"
    )
    rows = f"<row><yka105>S1</yka105>{base}<foo>1</foo></row><row><yka105>S2</yka105>{base}<dw>瓶</dw></row>"
    reply = send_raw(f"{decl}<input>{control}<data>{rows}</data></input>")
    assert _failures(reply) == {
        "S1": "【字段校验失败】未定义的字段foo",
        "S2": "【字段校验失败】字段计量单位(dw)重复",
    }


def test_r6_character_gbk_cannot_hold(send, store):
    reply = send("outbound", [outbound_row("A", hospital_item_name="艾司唑仑片(含䓬)"), outbound_row("B")])
    assert _failures(reply) == {"A": "【字符集错误】医院项目名称(yka095)含GBK无法表示的字符'䓬'(U+44EC)"}
    assert _stored(store) == {"B"}


def test_r6_is_reported_before_r1(send):
    reply = send("outbound", [outbound_row("A", hospital_item_name="䓬", quantity="0")])
    assert reply.failures[0].category == "字符集错误"


def test_r7_time_in_the_future(profile, store):
    now = datetime(2026, 11, 21, 12, 0, 0)
    sim = Simulator(profile, store, centre=Centre(profile, store, clock=lambda: now)).start()
    try:
        import zeep

        from cdyb_jxc.wire.codec import build_request, parse_reply
        from tests.conftest import SECRET, USER

        client = zeep.Client(f"{sim.url}?wsdl")
        rows = [
            outbound_row("A", event_time=(now + timedelta(minutes=5)).strftime("%Y-%m-%d %H:%M:%S")),
            outbound_row(
                "B", event_time=(now + timedelta(minutes=5, seconds=1)).strftime("%Y-%m-%d %H:%M:%S")
            ),
        ]
        xml = build_request(
            profile,
            profile.transaction("outbound"),
            rows,
            user=USER,
            verification_code=SECRET,
            institution_code="H51010400001",
        )
        reply = parse_reply(profile, client.service.callBusiness(inputXml=xml))
    finally:
        sim.stop()
    assert _failures(reply) == {
        "B": "【字段校验失败】出库时间(aae036)晚于服务器当前时间: '2026-11-21 12:05:01'"
    }


def test_r3_unmapped_and_mismatched_items(send):
    reply = send(
        "outbound",
        [outbound_row("A", mapping_serial_no="M9999"), outbound_row("B", insurance_item_code="XA000002")],
    )
    assert _failures(reply) == {
        "A": "【未对码】医院对码流水号(ake005)'M9999'未对码",
        "B": "【对码信息不一致】医保项目编码(yka094)'XA000002'与对码信息'XA000001'不一致",
    }


def test_r4_second_initialization_of_an_item(send, store):
    assert send("init", [init_row("I1", 1)]).status == SUCCESS
    reply = send("init", [init_row("I2", 1), init_row("I3", 2), init_row("I4", 2)])
    assert _failures(reply) == {
        "I2": "【重复初始化】医院对码流水号(ake005)'M0001'已完成初始化",
        "I4": "【重复初始化】医院对码流水号(ake005)'M0002'已完成初始化",
    }
    assert _stored(store) == {"I1", "I3"}


def test_r5_patient_return_needs_its_original_outbound_of_the_same_item(send, store):
    assert send("outbound", [outbound_row("CK1", 1)]).status == SUCCESS
    reply = send(
        "inbound",
        [
            inbound_row("TY1", 1, inbound_type="15", original_serial_no="CK1"),
            inbound_row("TY2", 2, inbound_type="15", original_serial_no="CK1"),
            inbound_row("TY3", 1, inbound_type="15", original_serial_no="CK404"),
            inbound_row("TY4", 1, inbound_type="15"),
        ],
    )
    assert _failures(reply) == {
        "TY2": "【原出库记录不存在】原出库流水号(yyka105)'CK1'不存在或不属于同一项目",
        "TY3": "【原出库记录不存在】原出库流水号(yyka105)'CK404'不存在或不属于同一项目",
        "TY4": "【字段校验失败】原出库流水号(yyka105)在入库类型(rklx)=15时不能为空",
    }


def test_failed_row_can_be_sent_again_once_fixed(send, store):
    assert send("stock", [stock_row("K1", stock_quantity="-1")]).status == FAILURE
    assert send("stock", [stock_row("K1")]).status == SUCCESS
    assert _stored(store) == {"K1"}


def test_accepted_rows_are_stored_whole(send, store):
    send("outbound", [outbound_row("CK9", 3, split_flag="1", pack_ratio="10", visit_no="MZ001")])
    (row,) = list(store.accepted_rows())
    assert row["transaction_code"] == "JXC003"
    assert row["hospital_item_name"] == "阿莫西林胶囊3号"
    assert row["pack_ratio"] == "10"
    assert row["visit_no"] == "MZ001"

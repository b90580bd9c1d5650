"""SPEC §6 W-rules, driven with zeep over loopback against the served WSDL."""

from __future__ import annotations

from cdyb_jxc.simulator.store import SimulatorStore
from cdyb_jxc.wire.codec import FAILURE
from tests.conftest import INSTITUTION, OTHER_INSTITUTION, PROD_SECRET, SECRET, USER, init_row, outbound_row


def _control(
    code: str = "JXC003", user: str = USER, secret: str = SECRET, inst: str = INSTITUTION, nums: str = "1"
):
    return (
        f"<control><jyfwbm>{code}</jyfwbm><jyfwyh>{user}</jyfwyh><jyfwyzm>{secret}</jyfwyzm>"
        f"<akb020>{inst}</akb020><nums>{nums}</nums></control>"
    )


ROW = (
    "<row><yka105>CK1</yka105><yka094>XA000001</yka094><yka095>药</yka095><ake005>M0001</ake005>"
    "<sfclbz>0</sfclbz><dw>盒</dw><cklx>21</cklx><akc225>1</akc225><akc226>1</akc226>"
    "<aae036>2026-11-20 10:00:00</aae036></row>"
)
DECL = '<?xml version="1.0" encoding="GBK"?>'


def _assert_rejected(reply, category: str, store: SimulatorStore) -> None:
    assert reply.status == FAILURE
    assert reply.whole_call_rejected
    assert reply.category == category
    assert reply.succnum is None
    assert reply.failnum is None
    assert store.count_rows() == 0


def test_w1_malformed_inner_xml_is_rejected(send_raw, store):
    _assert_rejected(send_raw(DECL + "<input><control>"), "报文格式错误", store)


def test_w1_missing_or_empty_input_xml_is_rejected(send_raw, store):
    _assert_rejected(send_raw(None), "报文格式错误", store)
    _assert_rejected(send_raw(""), "报文格式错误", store)


def test_w1_inner_xml_without_gbk_declaration_is_rejected(send_raw, store):
    _assert_rejected(send_raw(f"<input>{_control()}<data>{ROW}</data></input>"), "报文格式错误", store)


def test_w1_inner_xml_with_doctype_is_rejected(send_raw, store):
    doc = f'{DECL}<!DOCTYPE input [<!ENTITY x SYSTEM "file:///etc/passwd">]><input>{_control()}<data>{ROW}</data></input>'
    reply = send_raw(doc)
    _assert_rejected(reply, "报文格式错误", store)
    assert "root:" not in reply.retmsg


def test_w1_extra_control_element_is_rejected(send_raw, store):
    control = _control().replace("</control>", "<extra>1</extra></control>")
    _assert_rejected(send_raw(f"{DECL}<input>{control}<data>{ROW}</data></input>"), "报文格式错误", store)


def test_w2_unknown_transaction_code(send_raw, store):
    _assert_rejected(
        send_raw(f"{DECL}<input>{_control(code='JXC999')}<data>{ROW}</data></input>"),
        "交易服务编码不存在",
        store,
    )


def test_w4_unknown_institution_is_checked_before_credentials(send_raw, store):
    doc = f"{DECL}<input>{_control(inst='H00000000000', secret='wrong')}<data>{ROW}</data></input>"
    _assert_rejected(send_raw(doc), "定点机构编码不存在", store)


def test_w3_wrong_verification_code(send, store):
    _assert_rejected(send("outbound", [outbound_row("CK1")], secret="wrong"), "用户名或验证码错误", store)


def test_w3_wrong_user(send, store):
    _assert_rejected(send("outbound", [outbound_row("CK1")], user="someone"), "用户名或验证码错误", store)


def test_w3_prod_credentials_do_not_work_on_test(send, store):
    _assert_rejected(send("outbound", [outbound_row("CK1")], secret=PROD_SECRET), "用户名或验证码错误", store)


def test_w3_credentials_of_another_institution_are_refused(send, store):
    reply = send("outbound", [outbound_row("CK1")], institution=OTHER_INSTITUTION)
    _assert_rejected(reply, "用户名或验证码错误", store)


def test_w3_message_never_echoes_the_verification_code(send, store):
    reply = send("outbound", [outbound_row("CK1")], secret="leaky-secret-123")
    assert "leaky-secret-123" not in reply.retmsg


def test_w5_nums_differs_from_row_count(send_raw, store):
    _assert_rejected(
        send_raw(f"{DECL}<input>{_control(nums='2')}<data>{ROW}</data></input>"), "明细条数不符", store
    )


def test_w5_no_rows(send_raw, store):
    _assert_rejected(
        send_raw(f"{DECL}<input>{_control(nums='0')}<data></data></input>"), "明细条数不符", store
    )


def test_w6_more_than_100_rows_stores_nothing(send_raw, store):
    rows = "".join(ROW.replace("CK1", f"CK{i}") for i in range(101))
    reply = send_raw(f"{DECL}<input>{_control(nums='101')}<data>{rows}</data></input>")
    _assert_rejected(reply, "单次上传明细条数超过最大限制100条", store)


def test_exactly_100_rows_are_accepted(send, store):
    reply = send("outbound", [outbound_row(f"CK{i:03d}") for i in range(100)])
    assert reply.status == "success"
    assert reply.succnum == 100
    assert store.count_rows() == 100


def test_w7_init_without_any_mapping_entry(send, store):
    store.add_institution("H51010400009", "test", "u9", "p9")
    reply = send("init", [init_row("CSH1")], institution="H51010400009", user="u9", secret="p9")
    _assert_rejected(reply, "未完成对码", store)


def test_whole_call_rules_run_in_spec_order(send_raw, store):
    # unknown transaction (W2) wins over wrong credentials (W3) and a bad count (W5)
    doc = f"{DECL}<input>{_control(code='X', secret='bad', nums='9')}<data>{ROW}</data></input>"
    _assert_rejected(send_raw(doc), "交易服务编码不存在", store)
    # wrong credentials (W3) win over a bad count (W5)
    doc = f"{DECL}<input>{_control(secret='bad', nums='9')}<data>{ROW}</data></input>"
    _assert_rejected(send_raw(doc), "用户名或验证码错误", store)

"""Row rules shared by client hold-back and simulator: R6 charset, R1 fields, R7 future time, R3 对码."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cdyb_jxc.wire.profile import Profile
from cdyb_jxc.wire.rules import (
    MappingEntry,
    RowError,
    charset_error,
    field_error,
    future_error,
    mapping_error,
    precheck_row,
)
from tests.conftest import FIXED_NOW, inbound_row, init_row, outbound_row, stock_row

REGISTRY = {
    "M0001": MappingEntry("XA000001"),
    "M0002": MappingEntry("XA000002", off_hospital_delivery=True),
}
ROW_BUILDERS = {"init": init_row, "inbound": inbound_row, "outbound": outbound_row, "stock": stock_row}


def check(profile: Profile, txn_key: str, row: dict[str, str | None]) -> RowError | None:
    return precheck_row(profile, profile.transaction(txn_key), row)


def message(profile: Profile, txn_key: str, row: dict[str, str | None]) -> str | None:
    error = check(profile, txn_key, row)
    return None if error is None else error.message(profile)


def without(row: dict[str, str], *names: str) -> dict[str, str]:
    return {k: v for k, v in row.items() if k not in names}


# --- baseline ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("txn_key", list(ROW_BUILDERS))
def test_well_formed_rows_pass(profile: Profile, txn_key: str) -> None:
    row = ROW_BUILDERS[txn_key]("S1", 1)
    assert precheck_row(profile, profile.transaction(txn_key), row, REGISTRY) is None


def test_split_row_with_pack_ratio_passes(profile: Profile) -> None:
    row = outbound_row("S1", split_flag="1", pack_ratio="10", unit="片")
    assert check(profile, "outbound", row) is None


# --- R6 character set -------------------------------------------------------------------------------------


def test_character_outside_gbk_is_a_charset_error_naming_the_field(profile: Profile) -> None:
    error = check(profile, "outbound", outbound_row("S1", hospital_item_name="地西泮䓬片"))
    assert error is not None
    assert error.category_key == "charset"
    assert error.field == "hospital_item_name"
    assert error.message(profile) == "【字符集错误】医院项目名称(yka095)含GBK无法表示的字符'䓬'(U+44EC)"


def test_charset_error_reports_the_first_field_in_profile_order(profile: Profile) -> None:
    row = outbound_row("S1", hospital_item_name="䓬", remark="€䓬")
    error = charset_error(profile.transaction("outbound"), row, "GBK")
    assert error is not None
    assert error.field == "hospital_item_name"


def test_charset_error_uses_the_given_encoding(profile: Profile) -> None:
    row = outbound_row("S1", hospital_item_name="地西泮䓬片")
    assert charset_error(profile.transaction("outbound"), row, "GB18030") is None


def test_charset_error_ignores_absent_values(profile: Profile) -> None:
    row: dict[str, str | None] = {**outbound_row("S1"), "remark": None, "lot_no": ""}
    assert charset_error(profile.transaction("outbound"), row, "GBK") is None


def test_charset_error_is_reported_before_field_errors(profile: Profile) -> None:
    row = without(outbound_row("S1", hospital_item_name="䓬", sale_price="1e3"), "quantity")
    error = check(profile, "outbound", row)
    assert error is not None
    assert error.category_key == "charset"


# --- R1 required fields -----------------------------------------------------------------------------------


@pytest.mark.parametrize("absent", [None, ""])
def test_missing_required_field(profile: Profile, absent: str | None) -> None:
    row: dict[str, str | None] = {**outbound_row("S1"), "quantity": absent}
    error = check(profile, "outbound", row)
    assert error is not None
    assert error.field == "quantity"
    assert error.message(profile) == "【字段校验失败】出库数量(akc226)不能为空"


def test_missing_column_is_a_missing_required_field(profile: Profile) -> None:
    assert message(profile, "stock", without(stock_row("S1"), "stock_date")) == (
        "【字段校验失败】盘存日期(pcrq)不能为空"
    )


def test_first_bad_field_in_profile_order_is_reported(profile: Profile) -> None:
    row = without(outbound_row("S1", sale_price="abc"), "serial_no", "quantity")
    assert message(profile, "outbound", row) == "【字段校验失败】流水号(yka105)不能为空"


def test_optional_fields_may_be_absent(profile: Profile) -> None:
    row = outbound_row("S1")
    assert "lot_no" not in row
    assert "operator_name" not in row
    assert check(profile, "outbound", row) is None


# --- R1 lengths in GBK bytes ------------------------------------------------------------------------------


def test_chinese_characters_count_two_bytes(profile: Profile) -> None:
    assert check(profile, "inbound", inbound_row("S1", lot_no="批" * 15)) is None
    assert message(profile, "inbound", inbound_row("S1", lot_no="批" * 16)) == (
        "【字段校验失败】生产批号(scph)长度超过30字节(实际32字节)"
    )


def test_ascii_length_limit(profile: Profile) -> None:
    assert check(profile, "inbound", inbound_row("S1", lot_no="A" * 30)) is None
    assert message(profile, "inbound", inbound_row("S1", lot_no="A" * 31)) == (
        "【字段校验失败】生产批号(scph)长度超过30字节(实际31字节)"
    )


def test_over_long_serial_number(profile: Profile) -> None:
    assert message(profile, "outbound", outbound_row("S" * 31)) == (
        "【字段校验失败】流水号(yka105)长度超过30字节(实际31字节)"
    )


def test_length_of_a_non_gbk_value_is_reported_without_raising(profile: Profile) -> None:
    txn = profile.transaction("inbound")
    error = field_error(txn, inbound_row("S1", lot_no="䓬" * 16), "GBK")
    assert error is not None
    assert error.message(profile) == "【字段校验失败】生产批号(scph)长度超过30字节(实际64字节)"


# --- R1 numbers -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        ("1e3", "出库单价(akc225)不是合法的数值: '1e3'"),
        ("+1", "出库单价(akc225)不是合法的数值: '+1'"),
        (".5", "出库单价(akc225)不是合法的数值: '.5'"),
        ("1.", "出库单价(akc225)不是合法的数值: '1.'"),
        (" 1", "出库单价(akc225)不是合法的数值: ' 1'"),
        ("1,000", "出库单价(akc225)不是合法的数值: '1,000'"),
        ("NaN", "出库单价(akc225)不是合法的数值: 'NaN'"),
        ("1.23456", "出库单价(akc225)小数位数超过4位: '1.23456'"),
        ("1.50000", "出库单价(akc225)小数位数超过4位: '1.50000'"),
        ("1234567890123", "出库单价(akc225)整数位数超过12位: '1234567890123'"),
        ("-1", "出库单价(akc225)不能小于0: '-1'"),
        ("-0.0001", "出库单价(akc225)不能小于0: '-0.0001'"),
    ],
)
def test_bad_price(profile: Profile, value: str, detail: str) -> None:
    error = check(profile, "outbound", outbound_row("S1", sale_price=value))
    assert error is not None
    assert error.field == "sale_price"
    assert error.message(profile) == f"【字段校验失败】{detail}"


@pytest.mark.parametrize("value", ["0", "0.0", "1.2345", "123456789012", "123456789012.1234", "-0"])
def test_good_price(profile: Profile, value: str) -> None:
    assert check(profile, "outbound", outbound_row("S1", sale_price=value)) is None


@pytest.mark.parametrize("value", ["0", "0.0000", "-2"])
def test_quantity_must_be_positive(profile: Profile, value: str) -> None:
    assert message(profile, "outbound", outbound_row("S1", quantity=value)) == (
        f"【字段校验失败】出库数量(akc226)必须大于0: '{value}'"
    )


def test_smallest_positive_quantity_passes(profile: Profile) -> None:
    assert check(profile, "outbound", outbound_row("S1", quantity="0.0001")) is None


def test_stock_quantity_may_be_zero_but_not_negative(profile: Profile) -> None:
    assert check(profile, "stock", stock_row("S1", stock_quantity="0")) is None
    assert message(profile, "stock", stock_row("S1", stock_quantity="-1")) == (
        "【字段校验失败】库存数量(kcsl)不能小于0: '-1'"
    )


def test_init_price_label(profile: Profile) -> None:
    assert message(profile, "init", init_row("S1", purchase_price="-5")) == (
        "【字段校验失败】采购价格(yke553)不能小于0: '-5'"
    )


# --- R1 dates ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["2026-02-30", "2026-13-01", "2026/02/28", "20260228", "2026-2-28", "2026-02-28 "]
)
def test_bad_date(profile: Profile, value: str) -> None:
    assert message(profile, "inbound", inbound_row("S1", expiry_date=value)) == (
        f"【字段校验失败】有效期止(yxqz)不是合法的yyyy-MM-dd: '{value}'"
    )


def test_leap_day_is_a_good_date(profile: Profile) -> None:
    assert check(profile, "inbound", inbound_row("S1", expiry_date="2028-02-29")) is None


@pytest.mark.parametrize(
    "value",
    ["2026-11-20T10:00:00", "2026-11-20 25:00:00", "2026-11-20 10:00", "2026-11-20", "2026-02-30 10:00:00"],
)
def test_bad_datetime(profile: Profile, value: str) -> None:
    assert message(profile, "outbound", outbound_row("S1", event_time=value)) == (
        f"【字段校验失败】出库时间(aae036)不是合法的yyyy-MM-dd HH:mm:ss: '{value}'"
    )


# --- R1 code sets -----------------------------------------------------------------------------------------


def test_outbound_type_outside_code_set(profile: Profile) -> None:
    assert message(profile, "outbound", outbound_row("S1", outbound_type="20")) == (
        "【字段校验失败】出库类型(cklx)取值'20'不在代码表内(21/22/23/24/25/26/27/29)"
    )


def test_inbound_type_outside_code_set(profile: Profile) -> None:
    assert message(profile, "inbound", inbound_row("S1", inbound_type="16")) == (
        "【字段校验失败】入库类型(rklx)取值'16'不在代码表内(11/12/13/14/15/19)"
    )


def test_split_flag_outside_code_set(profile: Profile) -> None:
    assert message(profile, "stock", stock_row("S1", split_flag="2")) == (
        "【字段校验失败】是否拆零标志(sfclbz)取值'2'不在代码表内(0/1)"
    )


def test_long_bad_value_is_shortened_in_the_message(profile: Profile) -> None:
    assert message(profile, "outbound", outbound_row("S1", outbound_type="x" * 50)) == (
        "【字段校验失败】出库类型(cklx)取值'" + "x" * 40 + "…'不在代码表内(21/22/23/24/25/26/27/29)"
    )


# --- R1 conditional fields --------------------------------------------------------------------------------


def test_pack_ratio_required_when_split(profile: Profile) -> None:
    assert message(profile, "outbound", outbound_row("S1", split_flag="1")) == (
        "【字段校验失败】包装换算系数(bzhsxs)在是否拆零标志(sfclbz)=1时不能为空"
    )


@pytest.mark.parametrize("value", ["1", "0.5", "1.00"])
def test_pack_ratio_must_exceed_one_when_split(profile: Profile, value: str) -> None:
    assert message(profile, "stock", stock_row("S1", split_flag="1", pack_ratio=value)) == (
        f"【字段校验失败】包装换算系数(bzhsxs)必须大于1: '{value}'"
    )


def test_pack_ratio_rules_do_not_apply_to_whole_packages(profile: Profile) -> None:
    assert check(profile, "stock", stock_row("S1", split_flag="0")) is None
    assert check(profile, "stock", stock_row("S1", split_flag="0", pack_ratio="1")) is None


def test_pack_ratio_format_is_checked_even_for_whole_packages(profile: Profile) -> None:
    assert message(profile, "stock", stock_row("S1", split_flag="0", pack_ratio="-1")) == (
        "【字段校验失败】包装换算系数(bzhsxs)不能小于0: '-1'"
    )
    assert message(profile, "stock", stock_row("S1", split_flag="0", pack_ratio="1.234")) == (
        "【字段校验失败】包装换算系数(bzhsxs)小数位数超过2位: '1.234'"
    )


def test_supplier_required_for_purchase_inbound(profile: Profile) -> None:
    row = without(inbound_row("S1", inbound_type="11"), "supplier_name")
    assert (
        message(profile, "inbound", row) == "【字段校验失败】供应商名称(gysmc)在入库类型(rklx)=11时不能为空"
    )


def test_supplier_optional_for_other_inbound(profile: Profile) -> None:
    assert check(profile, "inbound", without(inbound_row("S1", inbound_type="12"), "supplier_name")) is None


def test_original_serial_required_for_patient_return(profile: Profile) -> None:
    row = inbound_row("S1", inbound_type="15")
    assert (
        message(profile, "inbound", row)
        == "【字段校验失败】原出库流水号(yyka105)在入库类型(rklx)=15时不能为空"
    )
    assert check(profile, "inbound", {**row, "original_serial_no": "CK1"}) is None


def test_dept_code_and_name_required_for_department_use(profile: Profile) -> None:
    row = outbound_row("S1", outbound_type="23")
    assert (
        message(profile, "outbound", row)
        == "【字段校验失败】领用科室编码(yka097)在出库类型(cklx)=23时不能为空"
    )
    row["dept_code"] = "D01"
    assert (
        message(profile, "outbound", row)
        == "【字段校验失败】领用科室名称(yka098)在出库类型(cklx)=23时不能为空"
    )
    row["dept_name"] = "内科"
    assert check(profile, "outbound", row) is None


def test_dept_not_required_for_other_outbound(profile: Profile) -> None:
    assert check(profile, "outbound", outbound_row("S1", outbound_type="21")) is None


# --- R1 control characters --------------------------------------------------------------------------------


def test_control_character_in_name_is_a_field_error(profile: Profile) -> None:
    error = check(profile, "outbound", outbound_row("S1", hospital_item_name="阿莫西林\x01胶囊"))
    assert error is not None
    assert error.field == "hospital_item_name"
    assert error.message(profile) == "【字段校验失败】医院项目名称(yka095)含控制字符U+0001"


@pytest.mark.parametrize(
    ("field_name", "value", "detail"),
    [
        ("hospital_item_name", "\x00", "医院项目名称(yka095)含控制字符U+0000"),
        ("remark", "a\x1fb", "备注(aae013)含控制字符U+001F"),
        ("unit", "盒\x0b", "计量单位(dw)含控制字符U+000B"),
        ("quantity", "1\x02", "出库数量(akc226)含控制字符U+0002"),
        ("event_time", "2026-11-20\x0c10:00:00", "出库时间(aae036)含控制字符U+000C"),
        ("outbound_type", "2\x081", "出库类型(cklx)含控制字符U+0008"),
    ],
)
def test_control_characters_never_raise(profile: Profile, field_name: str, value: str, detail: str) -> None:
    assert (
        message(profile, "outbound", outbound_row("S1", **{field_name: value})) == f"【字段校验失败】{detail}"
    )


@pytest.mark.parametrize("value", ["\ufffe", "\ud800"])
def test_xml_illegal_characters_outside_gbk_are_charset_errors_and_never_raise(
    profile: Profile, value: str
) -> None:
    error = check(profile, "outbound", outbound_row("S1", remark=f"备注{value}"))
    assert error is not None
    assert (error.category_key, error.field) == ("charset", "remark")
    assert f"(U+{ord(value):04X})" in error.message(profile)


def test_tab_and_newline_are_allowed_in_text(profile: Profile) -> None:
    assert check(profile, "outbound", outbound_row("S1", remark="第一行\n第二行\t备注")) is None


# --- R7 future time ---------------------------------------------------------------------------------------


def _stamp(delta_seconds: int) -> str:
    return (FIXED_NOW + timedelta(seconds=delta_seconds)).strftime("%Y-%m-%d %H:%M:%S")


@pytest.mark.parametrize("delta", [-86400, 0, 299, 300])
def test_time_within_tolerance_passes(profile: Profile, delta: int) -> None:
    row = outbound_row("S1", event_time=_stamp(delta))
    assert future_error(profile.transaction("outbound"), row, FIXED_NOW, 300) is None


def test_time_beyond_tolerance_is_a_field_error(profile: Profile) -> None:
    row = outbound_row("S1", event_time=_stamp(301))
    error = future_error(profile.transaction("outbound"), row, FIXED_NOW, 300)
    assert error is not None
    assert error.field == "event_time"
    assert (
        error.message(profile) == "【字段校验失败】出库时间(aae036)晚于服务器当前时间: '2026-11-21 12:05:01'"
    )


def test_future_init_time_uses_the_init_label(profile: Profile) -> None:
    row = init_row("S1", event_time="2026-11-22 00:00:00")
    error = future_error(profile.transaction("init"), row, FIXED_NOW, 300)
    assert error is not None
    assert (
        error.message(profile)
        == "【字段校验失败】初始化时间(aae036)晚于服务器当前时间: '2026-11-22 00:00:00'"
    )


def test_dates_are_not_checked_against_the_clock(profile: Profile) -> None:
    row = stock_row("S1", stock_date="2099-01-01", expiry_date="2099-12-31")
    assert future_error(profile.transaction("stock"), row, FIXED_NOW, 300) is None


# --- R3 对码 ----------------------------------------------------------------------------------------------


def test_unmapped_item(profile: Profile) -> None:
    error = mapping_error(profile.transaction("outbound"), outbound_row("S1", 3), REGISTRY)
    assert error is not None
    assert error.field == "mapping_serial_no"
    assert error.message(profile) == "【未对码】医院对码流水号(ake005)'M0003'未对码"


def test_mapping_mismatch(profile: Profile) -> None:
    row = outbound_row("S1", 1, insurance_item_code="XA999999")
    error = mapping_error(profile.transaction("outbound"), row, REGISTRY)
    assert error is not None
    assert error.field == "insurance_item_code"
    assert (
        error.message(profile) == "【对码信息不一致】医保项目编码(yka094)'XA999999'与对码信息'XA000001'不一致"
    )


def test_mapped_item_passes(profile: Profile) -> None:
    assert mapping_error(profile.transaction("outbound"), outbound_row("S1", 2), REGISTRY) is None


def test_precheck_applies_the_registry_only_when_given(profile: Profile) -> None:
    txn = profile.transaction("outbound")
    row = outbound_row("S1", 3)
    assert precheck_row(profile, txn, row) is None
    error = precheck_row(profile, txn, row, REGISTRY)
    assert error is not None
    assert error.category_key == "unmapped"


def test_empty_registry_reports_every_row_unmapped(profile: Profile) -> None:
    error = precheck_row(profile, profile.transaction("stock"), stock_row("S1", 1), {})
    assert error is not None
    assert error.message(profile) == "【未对码】医院对码流水号(ake005)'M0001'未对码"


def test_field_errors_come_before_mapping_errors(profile: Profile) -> None:
    row = outbound_row("S1", 3, quantity="0")
    error = precheck_row(profile, profile.transaction("outbound"), row, REGISTRY)
    assert error is not None
    assert error.category_key == "field_invalid"


def test_charset_errors_come_before_mapping_errors(profile: Profile) -> None:
    row = outbound_row("S1", 3, hospital_item_name="䓬")
    error = precheck_row(profile, profile.transaction("outbound"), row, REGISTRY)
    assert error is not None
    assert error.category_key == "charset"

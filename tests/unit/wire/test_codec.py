"""Request and reply documents: building, parsing, batching, redaction and hardened parsing."""

from __future__ import annotations

import re
from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from cdyb_jxc.exceptions import CodecError, UnsafeXmlError
from cdyb_jxc.wire.codec import (
    FAILURE,
    PARTIAL,
    SUCCESS,
    BatchReply,
    ParsedRequest,
    RowFailure,
    build_reply,
    build_request,
    build_requests,
    iter_batches,
    parse_reply,
    parse_request,
    redact_request,
    reply_contradiction,
)
from cdyb_jxc.wire.profile import Profile, TransactionSpec
from tests.conftest import INSTITUTION, SECRET, USER, inbound_row, outbound_row

GBK_DECLARATION = '<?xml version="1.0" encoding="GBK"?>'
CREDENTIALS = {"user": USER, "verification_code": SECRET, "institution_code": INSTITUTION}


def exactly(message: str) -> str:
    return f"^{re.escape(message)}$"


def rows_by_name(txn: TransactionSpec, parsed: ParsedRequest) -> list[dict[str, str | None]]:
    return [{txn.by_tag[tag].name: text for tag, text in row} for row in parsed.rows]


def serials(parsed: ParsedRequest) -> list[str | None]:
    return [dict(row)["yka105"] for row in parsed.rows]


def reply(body: str, declaration: str = GBK_DECLARATION) -> str:
    return f"{declaration}\n<output>{body}</output>"


# --- requests ---------------------------------------------------------------------------------------------


def test_request_round_trip_preserves_control_and_rows(profile: Profile) -> None:
    txn = profile.transaction("outbound")
    rows = [
        outbound_row("CK2026112000001", 1, hospital_item_name="阿莫西林胶囊(0.25g*24粒)"),
        outbound_row("CK2026112000002", 2, split_flag="1", pack_ratio="24", unit="粒", quantity="3.5"),
        outbound_row("CK2026112000003", 3, outbound_type="23", dept_code="D01", dept_name="心内科病房"),
    ]

    text = build_request(profile, txn, rows, **CREDENTIALS)
    parsed = parse_request(profile, text)

    assert parsed.control == {
        "jyfwbm": "JXC003",
        "jyfwyh": USER,
        "jyfwyzm": SECRET,
        "akb020": INSTITUTION,
        "nums": "3",
    }
    assert parsed.control_extra == []
    assert rows_by_name(txn, parsed) == rows


def test_request_rows_keep_profile_field_order(profile: Profile) -> None:
    txn = profile.transaction("inbound")
    row = inbound_row("RK1", original_serial_no="CK1", remark="备注", pack_ratio="10", split_flag="1")
    parsed = parse_request(profile, build_request(profile, txn, [row], **CREDENTIALS))
    assert [tag for tag, _ in parsed.rows[0]] == [f.tag for f in txn.fields if f.name in row]


def test_absent_values_are_left_out_of_the_request(profile: Profile) -> None:
    txn = profile.transaction("outbound")
    row: dict[str, str | None] = {**outbound_row("CK1"), "remark": "", "lot_no": None}
    text = build_request(profile, txn, [row], **CREDENTIALS)
    tags = [tag for tag, _ in parse_request(profile, text).rows[0]]
    assert "aae013" not in tags
    assert "scph" not in tags
    assert "<aae013" not in text


def test_request_starts_with_the_gbk_declaration_and_encodes_as_gbk(profile: Profile) -> None:
    text = build_request(profile, profile.transaction("outbound"), [outbound_row("CK1")], **CREDENTIALS)
    assert text.startswith(GBK_DECLARATION)
    text.encode("gbk")  # the whole document must be representable in its declared encoding


def test_character_outside_gbk_is_carried_as_a_character_reference(profile: Profile) -> None:
    txn = profile.transaction("outbound")
    text = build_request(profile, txn, [outbound_row("CK1", hospital_item_name="地西泮䓬片")], **CREDENTIALS)

    assert "&#17644;" in text
    assert "䓬" not in text
    text.encode("gbk")
    assert rows_by_name(txn, parse_request(profile, text))[0]["hospital_item_name"] == "地西泮䓬片"


@pytest.mark.parametrize("encoding", ["GBK", "GB18030"])
def test_inner_encodings_decode_every_character_they_encode_unchanged(encoding: str) -> None:
    # why build_request keeps a body its encoding can hold as it is (no encode-decode round trip)
    changed = []
    for code in [*range(0xD800), *range(0xE000, 0x10000), *range(0x10000, 0x110000, 97)]:
        char = chr(code)
        try:
            if char.encode(encoding).decode(encoding) != char:
                changed.append(hex(code))
        except UnicodeEncodeError:
            continue
    assert changed == []


def test_xml_special_characters_survive_the_round_trip(profile: Profile) -> None:
    txn = profile.transaction("outbound")
    row = outbound_row("CK1", hospital_item_name="A<B>&\"C'", remark="]]> &amp;")
    parsed = parse_request(profile, build_request(profile, txn, [row], **CREDENTIALS))
    assert rows_by_name(txn, parsed) == [row]


def test_control_character_cannot_be_written(profile: Profile) -> None:
    txn = profile.transaction("outbound")
    with pytest.raises(
        CodecError, match=re.escape("row 'CK1': 医院项目名称(yka095) cannot be written as XML")
    ):
        build_request(profile, txn, [outbound_row("CK1", hospital_item_name="a\x01b")], **CREDENTIALS)


def test_build_request_accepts_exactly_the_limit(profile: Profile) -> None:
    txn = profile.transaction("outbound")
    rows = [outbound_row(f"CK{i}") for i in range(100)]
    assert parse_request(profile, build_request(profile, txn, rows, **CREDENTIALS)).control["nums"] == "100"


def test_build_request_refuses_more_rows_than_the_limit(profile: Profile) -> None:
    txn = profile.transaction("outbound")
    rows = [outbound_row(f"CK{i}") for i in range(101)]
    with pytest.raises(CodecError, match=exactly("batch of 101 rows exceeds the profile limit of 100")):
        build_request(profile, txn, rows, **CREDENTIALS)


# --- batching ---------------------------------------------------------------------------------------------


def test_build_requests_splits_at_the_profile_limit(profile: Profile) -> None:
    txn = profile.transaction("outbound")
    rows = [outbound_row(f"CK{i:04d}") for i in range(250)]

    parsed = [parse_request(profile, t) for t in build_requests(profile, txn, rows, **CREDENTIALS)]

    assert [len(p.rows) for p in parsed] == [100, 100, 50]
    assert [p.control["nums"] for p in parsed] == ["100", "100", "50"]
    assert [s for p in parsed for s in serials(p)] == [f"CK{i:04d}" for i in range(250)]


def test_build_requests_honours_a_smaller_batch_limit(profile: Profile) -> None:
    txn = profile.transaction("outbound")
    rows = [outbound_row(f"CK{i:04d}") for i in range(250)]
    texts = list(build_requests(profile, txn, rows, **CREDENTIALS, batch_limit=30))
    assert [len(parse_request(profile, t).rows) for t in texts] == [30] * 8 + [10]


def test_build_requests_never_exceeds_the_profile_limit(profile: Profile) -> None:
    txn = profile.transaction("outbound")
    rows = [outbound_row(f"CK{i:04d}") for i in range(250)]
    texts = list(build_requests(profile, txn, rows, **CREDENTIALS, batch_limit=500))
    assert [len(parse_request(profile, t).rows) for t in texts] == [100, 100, 50]


def test_build_requests_sends_nothing_for_no_rows(profile: Profile) -> None:
    assert list(build_requests(profile, profile.transaction("stock"), [], **CREDENTIALS)) == []


def test_build_requests_accepts_a_dataframe(profile: Profile) -> None:
    txn = profile.transaction("outbound")
    frame = pd.DataFrame(
        {
            "serial_no": ["CK1", "CK2", "CK3"],
            "insurance_item_code": ["XA000001", "XA000002", "XA000003"],
            "hospital_item_name": ["阿莫西林胶囊", "头孢克肟片", "布洛芬缓释胶囊"],
            "mapping_serial_no": ["M0001", "M0002", "M0003"],
            "split_flag": [0, 1, 0],
            "unit": ["盒", "片", "盒"],
            "pack_ratio": [np.nan, 10.0, np.nan],
            "outbound_type": [21, 22, 21],
            "sale_price": [12.35, 0.5, 30.0],
            "quantity": [2.0, 3.5, 1.0],
            "event_time": pd.to_datetime(["2026-11-20 10:00:00", "2026-11-20 11:30:00", None]),
            "remark": [None, "拆零", None],
            "source_only_column": ["x", "y", "z"],
        }
    )

    texts = list(build_requests(profile, txn, frame, **CREDENTIALS, batch_limit=2))

    assert len(texts) == 2
    rows = [r for t in texts for r in rows_by_name(txn, parse_request(profile, t))]
    assert rows[0] == {
        "serial_no": "CK1",
        "insurance_item_code": "XA000001",
        "hospital_item_name": "阿莫西林胶囊",
        "mapping_serial_no": "M0001",
        "split_flag": "0",
        "unit": "盒",
        "outbound_type": "21",
        "sale_price": "12.35",
        "quantity": "2",
        "event_time": "2026-11-20 10:00:00",
    }
    assert rows[1]["pack_ratio"] == "10"
    assert rows[1]["split_flag"] == "1"
    assert rows[1]["quantity"] == "3.5"
    assert rows[1]["remark"] == "拆零"
    assert rows[1]["event_time"] == "2026-11-20 11:30:00"
    assert rows[2]["sale_price"] == "30"
    assert "event_time" not in rows[2]


def test_build_requests_converts_typed_values_in_dicts(profile: Profile) -> None:
    txn = profile.transaction("outbound")
    row = {**outbound_row("CK1"), "quantity": 2, "event_time": datetime(2026, 11, 20, 10, 0, 0)}
    (text,) = build_requests(profile, txn, [row], **CREDENTIALS)
    converted = rows_by_name(txn, parse_request(profile, text))[0]
    assert (converted["quantity"], converted["event_time"]) == ("2", "2026-11-20 10:00:00")


def test_iter_batches() -> None:
    assert list(iter_batches(range(5), 2)) == [[0, 1], [2, 3], [4]]
    assert list(iter_batches([], 3)) == []
    with pytest.raises(ValueError, match="batch size must be positive"):
        list(iter_batches([1], 0))


# --- redaction --------------------------------------------------------------------------------------------


def test_redact_request_removes_the_verification_code(profile: Profile) -> None:
    txn = profile.transaction("outbound")
    text = build_request(profile, txn, [outbound_row("CK1")], **CREDENTIALS)

    redacted = redact_request(profile, text)

    assert SECRET not in redacted
    assert "<jyfwyzm>******</jyfwyzm>" in redacted
    parsed, original = parse_request(profile, redacted), parse_request(profile, text)
    assert parsed.control == {**original.control, "jyfwyzm": "******"}
    assert parsed.rows == original.rows


def test_redact_request_handles_xml_special_characters_in_the_code(profile: Profile) -> None:
    txn = profile.transaction("outbound")
    secret = "p<w>&d\"'"
    text = build_request(
        profile, txn, [outbound_row("CK1")], user=USER, verification_code=secret, institution_code=INSTITUTION
    )
    assert "p&lt;w&gt;&amp;d" in text
    redacted = redact_request(profile, text)
    assert parse_request(profile, redacted).control["jyfwyzm"] == "******"
    assert "p&lt;w&gt;&amp;d" not in redacted


def test_redact_request_handles_an_empty_code(profile: Profile) -> None:
    assert redact_request(profile, "<input><control><jyfwyzm/></control></input>") == (
        "<input><control><jyfwyzm>******</jyfwyzm></control></input>"
    )


# --- parse_reply ------------------------------------------------------------------------------------------


def test_parse_success_reply(profile: Profile) -> None:
    parsed = parse_reply(
        profile, reply("<retcode>1</retcode><retmsg>成功</retmsg><succnum>2</succnum><failnum>0</failnum>")
    )
    assert parsed.status == SUCCESS
    assert (parsed.retcode, parsed.retmsg, parsed.succnum, parsed.failnum) == ("1", "成功", 2, 0)
    assert parsed.failures == ()
    assert parsed.whole_call_rejected is False


def test_parse_partial_reply_with_dataset(profile: Profile) -> None:
    text = reply(
        "<retcode>2</retcode><retmsg>本次上传3条，成功1条，失败2条</retmsg><succnum>1</succnum><failnum>2</failnum>"
        "<dataset>"
        "<row><yka105>CK2026112000001</yka105><errmsg>【数据重复上传】</errmsg></row>"
        "<row><yka105>CK2026112000002</yka105><errmsg>【字段校验失败】出库数量(akc226)不能为空</errmsg></row>"
        "</dataset>"
    )

    parsed = parse_reply(profile, text)

    assert parsed.status == PARTIAL
    assert (parsed.succnum, parsed.failnum) == (1, 2)
    assert parsed.whole_call_rejected is False
    first, second = parsed.failures
    assert (first.serial_no, first.message, first.category, first.detail) == (
        "CK2026112000001",
        "【数据重复上传】",
        "数据重复上传",
        "",
    )
    assert (second.serial_no, second.category, second.detail) == (
        "CK2026112000002",
        "字段校验失败",
        "出库数量(akc226)不能为空",
    )


def test_failure_message_without_category() -> None:
    failure = RowFailure("CK1", "数据有误")
    assert failure.category is None
    assert failure.detail == "数据有误"


def test_parse_whole_call_rejection(profile: Profile) -> None:
    parsed = parse_reply(profile, reply("<retcode>-1</retcode><retmsg>【用户名或验证码错误】</retmsg>"))
    assert parsed.status == FAILURE
    assert parsed.whole_call_rejected is True
    assert parsed.category == "用户名或验证码错误"
    assert (parsed.succnum, parsed.failnum, parsed.failures) == (None, None, ())


def test_parse_failure_where_every_row_failed_is_not_a_whole_call_rejection(profile: Profile) -> None:
    parsed = parse_reply(
        profile,
        reply(
            "<retcode>-1</retcode><retmsg>全部失败</retmsg>"
            "<dataset><row><yka105>CK1</yka105><errmsg>【未对码】</errmsg></row></dataset>"
        ),
    )
    assert parsed.status == FAILURE
    assert parsed.whole_call_rejected is False
    assert [f.serial_no for f in parsed.failures] == ["CK1"]


def test_missing_dataset_and_counts_are_tolerated(profile: Profile) -> None:
    parsed = parse_reply(profile, reply("<retcode>1</retcode><retmsg>ok</retmsg>"))
    assert parsed.status == SUCCESS
    assert (parsed.succnum, parsed.failnum, parsed.failures) == (None, None, ())


def test_empty_dataset_and_unreadable_counts_are_tolerated(profile: Profile) -> None:
    parsed = parse_reply(
        profile, reply("<retcode>1</retcode><retmsg/><succnum> 3 </succnum><failnum>n/a</failnum><dataset/>")
    )
    assert (parsed.retmsg, parsed.succnum, parsed.failnum, parsed.failures) == ("", 3, None, ())


@pytest.mark.parametrize(
    "declaration",
    [
        '<?xml version="1.0" encoding="GB18030"?>',
        '<?xml version="1.0" encoding="UTF-8"?>',
        "<?xml version='1.0' encoding='gbk'?>",
        "",
    ],
)
def test_reply_declarations(profile: Profile, declaration: str) -> None:
    parsed = parse_reply(profile, reply("<retcode>1</retcode><retmsg>成功上传</retmsg>", declaration))
    assert (parsed.status, parsed.retmsg) == (SUCCESS, "成功上传")


def test_surrounding_whitespace_is_tolerated(profile: Profile) -> None:
    text = "\n  \r\n" + reply("\n  <retcode> 2 </retcode>\n  <retmsg> 部分成功 </retmsg>\n") + "\n\n  "
    parsed = parse_reply(profile, text)
    assert (parsed.status, parsed.retcode, parsed.retmsg) == (PARTIAL, "2", "部分成功")


def test_namespaced_reply_is_read_by_local_names(profile: Profile) -> None:
    text = '<ns:output xmlns:ns="urn:x"><ns:retcode>1</ns:retcode><ns:retmsg>ok</ns:retmsg></ns:output>'
    assert parse_reply(profile, text).status == SUCCESS


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("<retcode>0</retcode><retmsg>?</retmsg>", "reply has an unknown retcode '0'"),
        ("<retcode>success</retcode>", "reply has an unknown retcode 'success'"),
        ("<retmsg>no code</retmsg>", "reply has an unknown retcode ''"),
    ],
)
def test_unknown_retcode_is_a_codec_error(profile: Profile, body: str, message: str) -> None:
    with pytest.raises(CodecError, match=exactly(message)):
        parse_reply(profile, reply(body))


def test_reply_without_output_root_is_a_codec_error(profile: Profile) -> None:
    with pytest.raises(CodecError, match=exactly("reply has no <output> node (root is <result>)")):
        parse_reply(profile, "<result><retcode>1</retcode></result>")


@pytest.mark.parametrize("text", [None, "", "   \n"])
def test_empty_reply_is_a_codec_error(profile: Profile, text: str | None) -> None:
    with pytest.raises(CodecError, match=exactly("reply is empty")):
        parse_reply(profile, text)


def test_malformed_reply_is_a_codec_error(profile: Profile) -> None:
    with pytest.raises(CodecError, match=r"^reply is not well-formed XML") as info:
        parse_reply(profile, reply("<retcode>1</retcode><retmsg>unterminated"))
    assert not isinstance(info.value, UnsafeXmlError)


XXE_REPLY = (
    '<?xml version="1.0" encoding="GBK"?>\n'
    '<!DOCTYPE output [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
    "<output><retcode>-1</retcode><retmsg>&xxe;</retmsg></output>"
)
BILLION_LAUGHS_REPLY = (
    '<?xml version="1.0"?>\n'
    "<!DOCTYPE lolz [\n"
    ' <!ENTITY lol "lol">\n'
    ' <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">\n'
    ' <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">\n'
    ' <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">\n'
    ' <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">\n'
    ' <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">\n'
    ' <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">\n'
    ' <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">\n'
    ' <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">\n'
    ' <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">\n'
    "]>\n"
    "<output><retcode>1</retcode><retmsg>&lol9;</retmsg></output>"
)


@pytest.mark.parametrize(
    "text",
    [XXE_REPLY, BILLION_LAUGHS_REPLY, XXE_REPLY.replace("DOCTYPE", "doctype")],
    ids=["xxe", "billion-laughs", "lowercase-doctype"],
)
def test_unsafe_reply_is_refused_without_expanding_entities(profile: Profile, text: str) -> None:
    with pytest.raises(UnsafeXmlError) as info:
        parse_reply(profile, text)
    assert str(info.value) == "reply contains a DOCTYPE or entity declaration; refused"
    assert "root:" not in str(info.value)
    assert "lollol" not in str(info.value)


def test_unsafe_reply_is_a_codec_error_for_callers(profile: Profile) -> None:
    with pytest.raises(CodecError):
        parse_reply(profile, XXE_REPLY)


# --- build_reply ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "retmsg", "succnum", "failnum", "failures"),
    [
        (SUCCESS, "本次上传2条，成功2条，失败0条", 2, 0, ()),
        (
            PARTIAL,
            "本次上传3条，成功1条，失败2条",
            1,
            2,
            (
                RowFailure("CK1", "【数据重复上传】"),
                RowFailure("CK2", "【字段校验失败】医院项目名称(yka095)含控制字符U+0001 <&>"),
            ),
        ),
        (FAILURE, "【单次上传明细条数超过最大限制100条】", None, None, ()),
    ],
)
def test_build_reply_round_trip(
    profile: Profile,
    status: str,
    retmsg: str,
    succnum: int | None,
    failnum: int | None,
    failures: tuple[RowFailure, ...],
) -> None:
    text = build_reply(profile, status, retmsg, succnum=succnum, failnum=failnum, failures=failures)

    assert text.startswith(GBK_DECLARATION)
    text.encode("gbk")
    parsed = parse_reply(profile, text)
    assert (parsed.status, parsed.retmsg, parsed.succnum, parsed.failnum, parsed.failures) == (
        status,
        retmsg,
        succnum,
        failnum,
        failures,
    )


def test_whole_call_rejection_reply_carries_no_counts_or_dataset(profile: Profile) -> None:
    text = build_reply(profile, FAILURE, profile.message("bad_credentials"))
    assert "<retcode>-1</retcode>" in text
    assert "<retmsg>【用户名或验证码错误】</retmsg>" in text
    for tag in ("succnum", "failnum", "dataset"):
        assert f"<{tag}" not in text


# --- parse_request errors ---------------------------------------------------------------------------------


def _valid_request(profile: Profile) -> str:
    return build_request(profile, profile.transaction("outbound"), [outbound_row("CK1")], **CREDENTIALS)


@pytest.mark.parametrize("text", [None, "", "  \n "])
def test_parse_request_refuses_empty_input(profile: Profile, text: str | None) -> None:
    with pytest.raises(CodecError, match=exactly("inputXml为空")):
        parse_request(profile, text)


@pytest.mark.parametrize(
    "declaration",
    ["", '<?xml version="1.0"?>\n', '<?xml version="1.0" encoding="UTF-8"?>\n'],
    ids=["none", "without-encoding", "utf-8"],
)
def test_parse_request_requires_the_gbk_declaration(profile: Profile, declaration: str) -> None:
    body = _valid_request(profile).removeprefix(GBK_DECLARATION).lstrip()
    with pytest.raises(CodecError, match=exactly('缺少XML声明encoding="GBK"')):
        parse_request(profile, declaration + body)


def test_parse_request_accepts_the_gb18030_declaration(profile: Profile) -> None:
    text = _valid_request(profile).replace('encoding="GBK"', 'encoding="GB18030"', 1)
    assert serials(parse_request(profile, text)) == ["CK1"]


def test_parse_request_refuses_a_doctype(profile: Profile) -> None:
    text = (
        f"{GBK_DECLARATION}\n"
        '<!DOCTYPE input [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
        "<input><control><jyfwbm>&xxe;</jyfwbm></control><data/></input>"
    )
    with pytest.raises(
        CodecError, match=exactly("XML格式错误: inputXml contains a DOCTYPE or entity declaration; refused")
    ):
        parse_request(profile, text)


def test_parse_request_refuses_malformed_xml(profile: Profile) -> None:
    text = f"{GBK_DECLARATION}\n<input><control><jyfwbm>JXC003</control></input>"
    with pytest.raises(CodecError, match=r"^XML格式错误: inputXml is not well-formed XML"):
        parse_request(profile, text)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("<output><control/></output>", "根节点应为<input>"),
        ("<input><data/></input>", "缺少<control>节点"),
        ("<input><control/><data><item/></data></input>", "<data>下出现未知节点<item>"),
    ],
)
def test_parse_request_refuses_the_wrong_structure(profile: Profile, body: str, message: str) -> None:
    with pytest.raises(CodecError, match=exactly(message)):
        parse_request(profile, f"{GBK_DECLARATION}\n{body}")


def test_parse_request_reports_unknown_and_repeated_control_elements(profile: Profile) -> None:
    text = (
        f"{GBK_DECLARATION}\n<input><control><jyfwbm>JXC003</jyfwbm><jyfwbm>JXC001</jyfwbm><extra>1</extra>"
        "<nums>0</nums></control></input>"
    )
    parsed = parse_request(profile, text)
    assert parsed.control == {"jyfwbm": "JXC003", "nums": "0"}
    assert parsed.control_extra == ["jyfwbm", "extra"]
    assert parsed.rows == []


def test_parse_request_keeps_empty_elements_as_absent(profile: Profile) -> None:
    text = (
        f"{GBK_DECLARATION}\n<input><control><jyfwbm>JXC003</jyfwbm><jyfwyh/></control>"
        "<data><row><yka105>CK1</yka105><aae013></aae013></row></data></input>"
    )
    parsed = parse_request(profile, text)
    assert parsed.control["jyfwyh"] is None
    assert parsed.rows == [[("yka105", "CK1"), ("aae013", None)]]


@pytest.mark.parametrize(
    ("status", "retcode", "succnum", "failnum", "listed", "expected"),
    [
        ("success", "1", 3, 0, [], None),
        ("success", "1", None, None, [], None),
        ("partial", "2", 2, 1, ["B"], None),
        ("partial", "2", None, None, ["B"], None),
        ("failure", "-1", 0, 3, ["A", "B", "C"], None),
        ("partial", "2", 2, 1, [], "返回码2(部分成功)却未列出失败记录"),
        ("success", "1", 3, 0, ["A"], "返回码1(全部成功)却列出1条失败记录"),
        ("failure", "-1", 0, 3, ["A"], "返回码-1(全部失败)只列出1/3条失败记录"),
        ("partial", "2", 1, 1, ["B"], "成功条数1与本批3条、失败记录1条不符"),
        ("partial", "2", 2, 2, ["B"], "失败条数2与列出的失败记录1条不符"),
        ("partial", "2", 2, 1, ["Z"], "应答列出本批没有的流水号 'Z'"),
        ("partial", "2", 2, 1, [" B "], None),  # the reply trimmed what the source padded
    ],
)
def test_reply_contradiction_names_why_unlisted_rows_cannot_be_called_saved(
    status, retcode, succnum, failnum, listed, expected
):
    reply = BatchReply(
        status=status,
        retcode=retcode,
        retmsg="",
        succnum=succnum,
        failnum=failnum,
        failures=tuple(RowFailure(s, "【未对码】x") for s in listed),
    )
    assert reply_contradiction(reply, ["A", "B", "C"]) == expected


@pytest.mark.parametrize(
    ("failnum", "retmsg", "listed", "whole_call"),
    [
        (None, "x", [], True),
        (0, "x", [], True),
        (100, "本次上传100条，成功0条，失败100条", [], False),
        (3, "【用户名或验证码错误】", [], True),
        (None, "x", ["A"], False),
        (1, "x", ["A"], False),
    ],
)
def test_only_a_failure_without_failed_rows_is_a_whole_call_rejection(failnum, retmsg, listed, whole_call):
    reply = BatchReply(
        status=FAILURE,
        retcode="-1",
        retmsg=retmsg,
        failnum=failnum,
        failures=tuple(RowFailure(s, "【数据重复上传】x") for s in listed),
    )
    assert reply.whole_call_rejected is whole_call


def test_reply_contradiction_carries_the_centres_message():
    reply = BatchReply(status=FAILURE, retcode="-1", retmsg="本次上传3条，成功0条，失败3条", failnum=3)
    assert reply_contradiction(reply, ["A", "B", "C"]) == (
        "返回码-1(全部失败)只列出0/3条失败记录; 返回信息: 本次上传3条，成功0条，失败3条"
    )

"""The redactor: every form a secret can be echoed in is cut, in text and in raw bodies of every encoding."""

from __future__ import annotations

import json
import logging
import re
import urllib.parse
from xml.sax.saxutils import escape

import pytest

from cdyb_jxc.safety.redaction import (
    MIN_SECRET_CHARS,
    REDACTED,
    RedactingFilter,
    Redactor,
    install_log_redaction,
    register_secret,
)
from cdyb_jxc.wire.request_rows import escape as codec_escape
from tests.conftest import SECRET

SPECIAL = "S3<cr&t>\"'-验证码 x\r"
SECRETS = [SECRET, SPECIAL, "Ab1😀z", "验证Ab12"]  # the last starts with a character of several bytes


def _percent_lower(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), text)


def _utf16_units(text: str) -> list[int]:
    data = text.encode("utf-16-be")
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


def text_forms(secret: str) -> dict[str, str]:
    """Every textual form a centre, proxy or error page may echo ``secret`` in."""
    charrefs = "".join(f"&#{ord(c)};" if i % 2 else f"&#x{ord(c):X};" for i, c in enumerate(secret))
    forms = {
        "plain": secret,
        "xml-escaped": escape(secret, {'"': "&quot;", "'": "&apos;"}),
        "xml-escaped-text": escape(secret),
        "inner-xml-escaped-in-envelope": escape(codec_escape(secret)),
        "escaped-twice": escape(escape(secret)),
        "escaped-three-times": escape(escape(escape(secret))),
        "char-refs-dec": "".join(f"&#{ord(c)};" for c in secret),
        "char-refs-mixed": charrefs,
        "char-refs-lower-hex-zero-padded": "".join(f"&#x{ord(c):06x};" for c in secret),
        "char-refs-escaped": escape(charrefs),
        "percent-utf8": urllib.parse.quote(secret, safe=""),
        "percent-utf8-lower": _percent_lower(urllib.parse.quote(secret, safe="")),
        "percent-utf8-plus": urllib.parse.quote_plus(secret, safe=""),
        "percent-gbk-plus-lower": _percent_lower(
            urllib.parse.quote_plus(secret, safe="", encoding="gb18030")
        ),
        "json": json.dumps(secret)[1:-1],
        "json-every-char": "".join(f"\\u{u:04x}" for u in _utf16_units(secret)),
        "json-ascii": json.dumps(secret, ensure_ascii=True)[1:-1],
        "unicode-escape": secret.encode("unicode_escape").decode("ascii"),
        "bytes-repr-utf8": repr(secret.encode("utf-8"))[2:-1],
        "bytes-repr-gb18030": repr(secret.encode("gb18030"))[2:-1],
        "mojibake-utf8": secret.encode("utf-8").decode("latin-1"),
        "mojibake-gb18030": secret.encode("gb18030").decode("latin-1"),
    }
    # an XML parser reads a raw CR as a line feed: each form as it looks after that
    forms.update({f"{k}-cr-read-as-lf": v.replace("\r", "\n") for k, v in forms.items() if "\r" in v})
    return forms


@pytest.fixture
def redactor() -> Redactor:
    r = Redactor()
    for s in SECRETS:
        assert r.add(s)
    return r


@pytest.mark.parametrize("secret", SECRETS)
def test_every_text_form_is_cut(redactor, secret):
    for name, form in text_forms(secret).items():
        out = redactor.text(f"前文 {form} 后文")
        assert out == f"前文 {REDACTED} 后文", name


@pytest.mark.parametrize("secret", SECRETS)
@pytest.mark.parametrize("encoding", ["utf-8", "gbk", "gb18030"])
def test_every_form_is_cut_from_raw_bodies(redactor, secret, encoding):
    for name, form in text_forms(secret).items():
        if name.startswith("mojibake"):  # mojibake is a text-side form (Latin-1 headers), not a body's
            continue
        try:
            body = f"<pre>前文 {form} 后文</pre>".encode(encoding)
        except UnicodeEncodeError:  # the emoji has no GBK form: the body would carry it as a char ref
            body = f"<pre>前文 {form} 后文</pre>".encode(encoding, "xmlcharrefreplace")
        out = redactor.bytes(body)
        assert out == f"<pre>前文 {REDACTED} 后文</pre>".encode(encoding), (name, encoding)


def test_secret_in_an_envelope_echo_is_cut_whole_and_the_rest_kept(redactor):
    inner = f"<retmsg>【用户名或验证码错误】{codec_escape(SPECIAL)}</retmsg>"
    envelope = f"<return>{escape(inner)}</return>".encode("gbk")
    assert redactor.bytes(
        envelope
    ) == f"<return>{escape('<retmsg>【用户名或验证码错误】')}******{escape('</retmsg>')}</return>".encode(
        "gbk"
    )


def test_ordinary_text_is_untouched(redactor):
    text = "本次上传2条，成功1条 S3cret 验证码 value S3cret-验证 %E9%AA &#83;&#51;"
    assert redactor.text(text) == text
    assert redactor.bytes(text.encode("gbk")) == text.encode("gbk")


def test_case_variants_of_the_secret_itself_are_not_its_forms(redactor):
    # only hex digits are case-free; the secret's own letters must match exactly
    assert redactor.text(SECRET.upper()) == SECRET.upper()


def test_short_secrets_are_not_redacted_and_say_so(caplog):
    r = Redactor()
    assert not r.add("a" * (MIN_SECRET_CHARS - 1))
    assert not r.active
    assert r.text("aaa") == "aaa"
    with caplog.at_level(logging.WARNING):
        register_secret("xyz")
    assert any("shorter than 4 characters" in rec.getMessage() for rec in caplog.records)


def test_longer_secret_containing_a_shorter_one_is_cut_whole():
    r = Redactor()
    r.add("abcd")
    r.add("abcdefgh")
    assert r.text("x abcdefgh y abcd") == f"x {REDACTED} y {REDACTED}"


def test_value_redacts_str_and_bytes_only(redactor):
    assert redactor.value(SECRET) == REDACTED
    assert redactor.value(SECRET.encode()) == REDACTED.encode()
    assert redactor.value(42) == 42


def test_every_log_record_of_the_process_is_redacted_at_creation(caplog):
    """A filter on the ``cdyb_jxc`` logger would miss records of its child loggers (and of Airflow's task
    loggers): the record factory catches them all, message, args and the formatted exception."""
    register_secret(SECRET)
    caplog.set_level(logging.DEBUG)
    logging.getLogger("cdyb_jxc.some.child").warning("sent %s", SECRET)
    logging.getLogger("airflow.task.hooks.x").info("echo: %s", urllib.parse.quote(SECRET))
    try:
        raise ValueError(f"boom {SECRET}")
    except ValueError:
        logging.getLogger("elsewhere").exception("failed with %r", SECRET.encode("gbk"))
    messages = [r.getMessage() for r in caplog.records]
    assert messages[:2] == [f"sent {REDACTED}", f"echo: {REDACTED}"]
    assert messages[2] == f"failed with b'{REDACTED}'"
    assert SECRET not in caplog.text
    assert "boom ******" in caplog.text


def test_install_is_idempotent_and_survives_a_replaced_factory():
    register_secret(SECRET)
    before = logging.getLogRecordFactory()
    install_log_redaction()
    assert logging.getLogRecordFactory() is before
    logging.setLogRecordFactory(logging.LogRecord)
    try:
        install_log_redaction()
        record = logging.getLogRecordFactory()("x", logging.INFO, __file__, 1, "%s", (SECRET,), None)
        assert record.getMessage() == REDACTED
    finally:
        logging.setLogRecordFactory(before)


def test_filter_for_handlers():
    r = Redactor()
    r.add(SECRET)
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "code=%s", (SECRET,), None)
    assert RedactingFilter(r).filter(record)
    assert record.getMessage() == f"code={REDACTED}"


# ---------------------------------------------------------------------------------------------------------
# forms found by the second attack: CDATA splits, double percent, refs without ';', base64, wide encodings
# ---------------------------------------------------------------------------------------------------------


def _cdata_split(secret: str, at: int) -> str:
    return f"{escape(secret[:at])}<![CDATA[{secret[at:]}]]>"


@pytest.mark.parametrize("secret", SECRETS, ids=["conftest", "special", "astral", "wide-first"])
def test_cdata_split_anywhere_is_cut_and_the_xml_stays_well_formed(secret):
    from lxml import etree

    redactor = Redactor()
    redactor.add(secret)
    for at in range(1, len(secret)):
        markup = f"<a>x {_cdata_split(secret, at)} y</a>"
        clean = redactor.text(markup)
        assert REDACTED in clean, at
        assert etree.fromstring(clean.encode()).text is not None  # parses
        assert secret not in "".join(etree.fromstring(clean.encode()).itertext())
        assert redactor.bytes(markup.encode()).decode() == clean
        escaped = escape(markup)  # the inner reply inside the envelope
        assert secret not in html_unescape_all(redactor.text(escaped))


def html_unescape_all(text: str) -> str:
    import html

    for _ in range(4):
        text = html.unescape(text)
    return text.replace("<![CDATA[", "").replace("]]>", "")


@pytest.mark.parametrize("secret", SECRETS, ids=["conftest", "special", "astral", "wide-first"])
def test_forms_of_the_second_attack_are_cut(secret):
    import base64

    redactor = Redactor()
    redactor.add(secret)
    quoted = urllib.parse.quote(secret, safe="")
    forms = {
        "percent-twice": urllib.parse.quote(quoted, safe=""),
        "percent-three-times": urllib.parse.quote(urllib.parse.quote(quoted, safe=""), safe=""),
        "charrefs-without-semicolon": "".join(f"&#{ord(c)}" for c in secret),
        "hex-charrefs-without-semicolon": "".join(f"&#x{ord(c):x}" for c in secret),
        "base64": base64.b64encode(secret.encode()).decode(),
        "base64-urlsafe-unpadded": base64.urlsafe_b64encode(secret.encode()).decode().rstrip("="),
        "base64-of-request": base64.b64encode(
            f"<req><jyfwyzm>{escape(secret)}</jyfwyzm></req>".encode()
        ).decode(),
        "base64-of-base64": base64.b64encode(base64.b64encode(f"code={secret}".encode())).decode(),
        "base64-of-utf16": base64.b64encode(("\ufeff" + secret).encode("utf-16-le")).decode(),
        "quoted-printable": "".join(f"={b:02X}" for b in secret.encode()),
    }
    for name, form in forms.items():
        assert redactor.text(f"msg: {form} end") == f"msg: {REDACTED} end", name
        assert redactor.bytes(f"msg: {form} end".encode()) == f"msg: {REDACTED} end".encode(), name


def test_base64_without_the_secret_and_numbers_after_refs_are_left_alone():
    import base64

    redactor = Redactor()
    redactor.add(SECRET)
    other = base64.b64encode(b"an ordinary payload of some length").decode()
    assert redactor.text(f"x {other} y") == f"x {other} y"
    # '&#83' followed by a digit is another character: not the secret
    near = "".join(f"&#{ord(c)}" for c in SECRET) + "0"
    assert redactor.text(near) == near


@pytest.mark.parametrize("secret", SECRETS, ids=["conftest", "special", "astral", "wide-first"])
def test_base64_of_the_secret_is_cut_beside_chinese_text_and_in_gbk_bytes(secret):
    import base64

    redactor = Redactor()
    redactor.add(secret)
    encoded = base64.b64encode(secret.encode()).decode()
    text = "药品名称" * 50 + encoded + "出库" + "A1b2C3d4" * 3

    assert redactor.text(text) == "药品名称" * 50 + REDACTED + "出库" + "A1b2C3d4" * 3
    assert redactor.bytes(text.encode("gbk")) == redactor.text(text).encode("gbk")
    assert redactor.text(encoded[:-4]) == encoded[:-4]  # too short a run to hold the secret


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"])
@pytest.mark.parametrize("secret", SECRETS, ids=["conftest", "special", "astral", "wide-first"])
def test_wide_bodies_are_cut_in_their_own_encoding(secret, codec):
    redactor = Redactor()
    redactor.add(secret)
    declared = f'<?xml version="1.0" encoding="{codec.upper()}"?><a>x {escape(secret)} y</a>'
    body = redactor.bytes(declared.encode(codec))
    assert body.decode(codec) == declared.replace(escape(secret), REDACTED)
    plain = redactor.bytes(f"x {secret} y".encode(codec))  # no declaration and (for -le/-be) no BOM
    assert plain.decode(codec) == f"x {REDACTED} y"


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"])
def test_decode_body_sniffs_bom_and_declaration(codec):
    from cdyb_jxc.wire.transport import decode_body

    text = f'<?xml version="1.0" encoding="{codec.upper()}"?><a>验证码</a>'
    assert decode_body(text.encode(codec), None).lstrip("\ufeff") == text
    assert decode_body(text.encode(codec), "no-such-codec").lstrip("\ufeff") == text
    gbk = '<?xml version="1.0" encoding="GBK"?><a>验证码</a>'
    assert decode_body(gbk.encode("gbk"), None) == gbk
    assert decode_body("<a>验证码</a>".encode(), None) == "<a>验证码</a>"

"""Bad-input corpus, server replies: an unreachable endpoint, a whole call rejected, and a server answering
garbage, XXE, billion laughs or huge replies. Nothing is counted accepted: rows stay PENDING (not sent) or
IN_DOUBT (sent, reply unreadable) with the exact reason, and nothing of /etc/passwd shows anywhere. The
rules of the corpus are in ``conftest.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cdyb_jxc.exceptions import CallRejectedError, CodecError, InDoubtError, TransportError, UnsafeXmlError
from cdyb_jxc.ledger import IN_DOUBT, PENDING
from cdyb_jxc.simulator.server import response_envelope
from cdyb_jxc.upload.engine import Uploader
from cdyb_jxc.wire.client import CentreClient
from cdyb_jxc.wire.codec import parse_reply
from cdyb_jxc.wire.profile import Profile
from cdyb_jxc.wire.xmlsafe import MAX_DOCUMENT_CHARS
from tests.conftest import INSTITUTION, PROD_SECRET, SECRET, USER, make_uploader, outbound_row
from tests.integration.reliability.conftest import (
    UNREACHABLE,
    assert_no_row_lost,
    centre_client,
    sqlite_ledger_url,
)

ledger_url = pytest.fixture(sqlite_ledger_url)


def _passwd_marker() -> str:
    """A line of /etc/passwd: if it ever shows up in a message or the ledger, an entity was resolved."""
    try:
        first = Path("/etc/passwd").read_text(encoding="utf-8").splitlines()[0]
    except (OSError, IndexError):
        return "root:x:0:0:"
    return first or "root:x:0:0:"


PASSWD = _passwd_marker()


def _envelope(profile: Profile, inner: str) -> bytes:
    """A proper SOAP reply envelope carrying ``inner`` as the ``return`` string."""
    return response_envelope(profile, inner)


XXE_INNER = (
    '<?xml version="1.0" encoding="GBK"?>'
    '<!DOCTYPE output [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    "<output><retcode>-1</retcode><retmsg>&xxe;</retmsg></output>"
)
BILLION_LAUGHS = (
    '<?xml version="1.0" encoding="GBK"?><!DOCTYPE output [<!ENTITY lol0 "lol">'
    + "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
    + "]><output><retcode>1</retcode><retmsg>&lol9;</retmsg></output>"
)
XXE_ENVELOPE = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<!DOCTYPE Envelope [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
    b'<ns2:callBusinessResponse xmlns:ns2="http://webservice.sjcj.cdyb/"><return>&xxe;</return>'
    b"</ns2:callBusinessResponse></soap:Body></soap:Envelope>"
)
HUGE_INNER = (
    '<?xml version="1.0" encoding="GBK"?><output><retcode>1</retcode><retmsg>'
    + "x" * (MAX_DOCUMENT_CHARS + 1)
    + "</retmsg></output>"
)


# ---------------------------------------------------------------------------------------------------------
# unreachable endpoint, wrong credentials: nothing stored, rows stay PENDING with the reason
# ---------------------------------------------------------------------------------------------------------


def test_unreachable_endpoint_leaves_rows_pending_with_reason(profile, ledger):
    dead = centre_client(profile, UNREACHABLE)
    with pytest.raises(TransportError) as info:
        make_uploader(profile, dead, ledger).run([[outbound_row("T1"), outbound_row("T2")]])
    assert str(info.value) == f"could not reach {UNREACHABLE}: ConnectionError"
    rows = assert_no_row_lost(ledger, ["T1", "T2"])
    for row in rows.values():
        assert (row["state"], row["detail"]) == (
            PENDING,
            f"未发送: could not reach {UNREACHABLE}: ConnectionError",
        )
    assert [b["outcome"] for b in ledger.batches()] == ["not_sent"]


@pytest.mark.parametrize(
    ("secret", "institution", "message"),
    [
        pytest.param("wrong-code", INSTITUTION, "【用户名或验证码错误】", id="wrong-verification-code"),
        pytest.param(PROD_SECRET, INSTITUTION, "【用户名或验证码错误】", id="prod-code-on-test"),
        pytest.param(SECRET, "H51019999999", "【定点机构编码不存在】H51019999999", id="unknown-institution"),
    ],
)
def test_whole_call_rejected_keeps_rows_pending_with_reason(
    profile, simulator, store, ledger, secret, institution, message
):
    wrong = CentreClient(
        profile,
        endpoint=simulator.url,
        user=USER,
        verification_code=secret,
        institution_code=institution,
        timeout=3,
    )
    uploader = Uploader(
        profile=profile,
        txn_key="outbound",
        institution_code=institution,
        sender=wrong,
        ledger=ledger,
        sleep=lambda s: None,
        resend_attempts=3,
    )
    with pytest.raises(CallRejectedError) as info:
        uploader.run([[outbound_row("W1"), outbound_row("W2")]])
    assert str(info.value) == message
    rows = assert_no_row_lost(ledger, ["W1", "W2"])
    assert {(r["state"], r["detail"]) for r in rows.values()} == {(PENDING, f"整批被拒: {message}")}
    assert simulator.requests == 1  # not retried
    assert store.count_rows() == 0
    assert secret not in json.dumps(ledger.batches(), default=str)


# ---------------------------------------------------------------------------------------------------------
# a server answering garbage, XXE, billion laughs, huge replies: refused, rows IN_DOUBT with the reason
# ---------------------------------------------------------------------------------------------------------

_HTML = b"<html><head><title>Welcome</title></head><body><h1>Welcome to nginx!</h1></body></html>"

GARBAGE_CASES = [
    # (status, content type, body factory, message after the URL, exact?)
    pytest.param(
        200, "text/html", lambda p: _HTML, "unreadable reply from {url}: XMLSyntaxError", True, id="html-200"
    ),
    pytest.param(
        200,
        "text/plain",
        lambda p: b"Service temporarily unavailable",
        "unreadable reply from {url}: not an XML document",
        True,
        id="plain-text-200",
    ),
    pytest.param(
        200,
        "application/json",
        lambda p: b'{"code": 500, "msg": "error"}',
        "unreadable reply from {url}: not an XML document",
        True,
        id="json-200",
    ),
    pytest.param(
        200, "text/xml", lambda p: b"", "HTTP 200 from {url} without a SOAP reply", True, id="empty-200"
    ),
    pytest.param(
        200,
        "text/xml; charset=UTF-8",
        lambda p: _envelope(p, "系统繁忙，请稍后再试"),
        "unreadable reply from {url}: reply is not well-formed XML: ",
        False,
        id="return-is-not-xml",
    ),
    pytest.param(
        200,
        "text/xml; charset=UTF-8",
        lambda p: _envelope(p, ""),
        "unreadable reply from {url}: reply is empty",
        True,
        id="return-is-empty",
    ),
    pytest.param(
        200,
        "text/xml; charset=UTF-8",
        lambda p: _envelope(p, "<result><retcode>1</retcode></result>"),
        "unreadable reply from {url}: reply has no <output> node (root is <result>)",
        True,
        id="return-wrong-root",
    ),
    pytest.param(
        200,
        "text/xml; charset=UTF-8",
        lambda p: _envelope(p, "<output><retcode>0</retcode><retmsg>OK</retmsg></output>"),
        "unreadable reply from {url}: reply has an unknown retcode '0'",
        True,
        id="return-unknown-retcode",
    ),
    pytest.param(
        200,
        "text/xml; charset=UTF-8",
        lambda p: _envelope(p, XXE_INNER),
        "unreadable reply from {url}: reply contains a DOCTYPE or entity declaration; refused",
        True,
        id="xxe-in-return",
    ),
    pytest.param(
        200,
        "text/xml; charset=UTF-8",
        lambda p: _envelope(p, BILLION_LAUGHS),
        "unreadable reply from {url}: reply contains a DOCTYPE or entity declaration; refused",
        True,
        id="billion-laughs-in-return",
    ),
    pytest.param(
        200,
        "text/xml; charset=UTF-8",
        lambda p: XXE_ENVELOPE,
        "unreadable reply from {url}: SOAP envelope contains a DOCTYPE or entity declaration; refused",
        True,
        id="xxe-in-envelope",
    ),
    pytest.param(
        200,
        "text/xml; charset=UTF-8",
        lambda p: _envelope(p, HUGE_INNER),
        "unreadable reply from {url}: ",
        False,
        id="huge-return",
    ),
]


@pytest.mark.parametrize(("status", "content_type", "body", "message", "exact"), GARBAGE_CASES)
def test_unreadable_reply_leaves_rows_in_doubt_with_reason(
    profile, rogue, ledger, status, content_type, body, message, exact
):
    rogue.status, rogue.content_type, rogue.body = status, content_type, body(profile)
    client = centre_client(profile, rogue.url)
    with pytest.raises(InDoubtError) as info:
        make_uploader(profile, client, ledger).run([[outbound_row("G1"), outbound_row("G2")]])
    expected = message.format(url=rogue.url)
    text = str(info.value)
    if exact:
        assert text == expected
    else:
        assert text.startswith(expected)
    rows = assert_no_row_lost(ledger, ["G1", "G2"])
    for row in rows.values():
        assert (row["state"], row["detail"]) == (IN_DOUBT, f"应答丢失: {text}")
    (batch,) = ledger.batches()
    assert (batch["outcome"], batch["error"]) == ("in_doubt", text)
    assert rogue.requests == 1
    # nothing from /etc/passwd anywhere: exception, ledger rows, audit batch
    seen = text + json.dumps(list(rows.values()), default=str) + json.dumps(batch, default=str)
    assert PASSWD not in seen


def test_wrong_endpoint_path_is_named_as_such(profile, rogue):
    rogue.status, rogue.content_type, rogue.body = 404, "text/html", b"<html><body>Not Found</body></html>"
    with pytest.raises(CallRejectedError) as info:
        centre_client(profile, rogue.url).send("outbound", [outbound_row("E1")])
    assert str(info.value) == f"HTTP 404 from {rogue.url}; check the endpoint URL"


PARSE_REPLY_CASES = [
    pytest.param(
        XXE_INNER, UnsafeXmlError, "reply contains a DOCTYPE or entity declaration; refused", id="xxe"
    ),
    pytest.param(
        BILLION_LAUGHS,
        UnsafeXmlError,
        "reply contains a DOCTYPE or entity declaration; refused",
        id="billion-laughs",
    ),
    pytest.param(
        XXE_INNER.replace("<!DOCTYPE", "<!doctype"),
        UnsafeXmlError,
        "reply contains a DOCTYPE or entity declaration; refused",
        id="xxe-lower-case-doctype",
    ),
    pytest.param(
        HUGE_INNER,
        CodecError,
        f"reply is too large: {len(HUGE_INNER)} characters (limit {MAX_DOCUMENT_CHARS})",
        id="huge",
    ),
    pytest.param("   ", CodecError, "reply is empty", id="blank"),
]


@pytest.mark.parametrize(("text", "error", "message"), PARSE_REPLY_CASES)
def test_hostile_reply_is_refused_by_the_codec(profile, text, error, message):
    with pytest.raises(error) as info:
        parse_reply(profile, text)
    assert str(info.value) == message
    assert PASSWD not in str(info.value)

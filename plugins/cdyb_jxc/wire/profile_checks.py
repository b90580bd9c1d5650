"""Checks of one profile value each, for :mod:`cdyb_jxc.wire.profile` (no Airflow).

Every check raises :class:`ProfileError` naming the key, so a bad deployment profile is refused at load, never
by a traceback on the first row: tags end up in XML unescaped, the inner encoding must hold every GBK
character, numbers feed limits and clocks.
"""

from __future__ import annotations

import codecs
import re
from decimal import Decimal
from functools import lru_cache
from typing import Any

from cdyb_jxc.exceptions import ProfileError

MAX_BATCH_LIMIT = 10000  # rows per request; the SPEC's centre takes 100
NAME_MAX = 64  # XML names: tags, operation, WSDL names
LABEL_MAX = 100  # labels, transaction and code names, the profile's name
TEXT_MAX = 200  # categories, namespace, path, SOAPAction
CODE_MAX = 16  # transaction codes (the ledger stores 16), code values, return codes
SERVICE_KEYS = (
    "operation",
    "namespace",
    "input_part",
    "output_part",
    "service_name",
    "port_name",
    "path",
    "soap_action",
    "inner_encoding",
    "accepted_inner_encodings",
    "batch_limit",
    "future_tolerance_seconds",
    "timezone_offset_hours",
)
# XML Name of ASCII letters, digits, "_", "-", "." (no colon: the request and reply use no namespaces).
# Tags go into the inner XML as they are and through the GBK encoding, so nothing wider is needed or safe.
_XML_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_ENC_NAME = re.compile(r"[A-Za-z][A-Za-z0-9._-]*")  # XML EncName: it goes into the XML declaration
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s\"'<>&\\]+")
_PATH = re.compile(r"/[A-Za-z0-9._~!$'()*+,;=:@%/-]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# How TOML users know the types: ``batch_limit = "100"`` is text, ``batch_limit = 100`` an integer.
_TYPE_WORDS: dict[type, str] = {
    str: "text",
    int: "an integer",
    float: "a decimal number",
    bool: "a boolean",
    dict: "a table",
    list: "a list",
}


def shown(value: Any) -> str:
    """``repr(value)``, cut to 60 characters for messages."""
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


def require(table: dict[str, Any], key: str, where: str, kind: type | tuple[type, ...] = str) -> Any:
    """``table[key]``, which must exist and be of ``kind`` (a boolean is no integer here).

    :param table: a profile table
    :param key: the key in it
    :param where: the table's dotted path, for messages
    :param kind: the accepted type(s)
    """
    if key not in table:
        raise ProfileError(f"profile key {where}.{key} is missing")
    value = table[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        wanted = " or ".join(_TYPE_WORDS.get(k, k.__name__) for k in kinds)
        got = _TYPE_WORDS.get(type(value), type(value).__name__)
        raise ProfileError(f"profile key {where}.{key} must be {wanted}, not {shown(value)} ({got})")
    return value


def text(value: str, where: str, max_len: int, *, empty: bool = False) -> str:
    """Check one text setting: not empty (unless allowed), at most ``max_len`` characters, no control
    characters.

    :param value: the text
    :param where: its dotted key
    :param max_len: the longest sane value
    :param empty: whether an empty text is allowed
    """
    if not value and not empty:
        raise ProfileError(f"profile key {where} must not be empty")
    if len(value) > max_len:
        raise ProfileError(f"profile key {where} must be at most {max_len} characters, not {len(value)}")
    if _CONTROL.search(value):
        raise ProfileError(f"profile key {where} must not contain control characters: {shown(value)}")
    return value


def label(value: str, where: str) -> str:
    """A label, transaction or code name: at most :data:`LABEL_MAX` characters."""
    return text(value, where, LABEL_MAX)


def trimmed(value: str, where: str) -> str:
    """Refuse surrounding whitespace: the centre's codes and texts are compared exactly, so ``" 1"`` would
    never match the ``1`` it means."""
    if value != value.strip():
        raise ProfileError(f"profile key {where} must not start or end with whitespace: {shown(value)}")
    return value


def code_text(value: str, where: str) -> str:
    """A code value or return code: at most :data:`CODE_MAX` characters, no surrounding whitespace."""
    return trimmed(text(value, where, CODE_MAX), where)


def category_text(value: str, where: str) -> str:
    """A category text: at most :data:`TEXT_MAX` characters, no surrounding whitespace."""
    return trimmed(text(value, where, TEXT_MAX), where)


def known_keys(table: dict[str, Any], where: str, allowed: tuple[str, ...] | set[str]) -> None:
    """Refuse keys that are no setting of ``table``: a misspelt key (``batch_limt``) would otherwise be
    ignored silently and the default used.

    :param table: a profile table
    :param where: its dotted path (``""`` for the top level)
    :param allowed: the keys it may hold
    """
    unknown = sorted(set(table) - set(allowed))
    if unknown:
        path = f"{where}.{unknown[0]}" if where else unknown[0]
        raise ProfileError(f"profile key {path} is not a known setting")


def xml_name(value: str, where: str) -> str:
    """Check a tag or WSDL name: an XML name of ASCII letters, digits, ``_``, ``-``, ``.``; no colon.

    :param value: the name
    :param where: its dotted key
    """
    if len(value) > NAME_MAX or not _XML_NAME.fullmatch(value):
        raise ProfileError(
            f"profile key {where} must be an XML name (ASCII letters, digits, '_', '-', '.', "
            f"not starting with a digit, '-' or '.'; at most {NAME_MAX}), not {shown(value)}"
        )
    return value


def uri(value: str, where: str) -> str:
    """Check the SOAP namespace: an absolute URI without spaces or quotes."""
    if len(value) > TEXT_MAX or not _URI.fullmatch(value):
        raise ProfileError(f"profile key {where} must be an absolute URI, not {shown(value)}")
    return value


def url_path(value: str, where: str) -> str:
    """Check the service path: ``/`` followed by URL path characters only."""
    if len(value) > TEXT_MAX or not _PATH.fullmatch(value):
        raise ProfileError(f"profile key {where} must be a URL path starting with '/', not {shown(value)}")
    return value


def int_range(value: int, where: str, low: int, high: int) -> int:
    """Check an integer setting lies in ``[low, high]``."""
    if not low <= value <= high:
        raise ProfileError(f"profile key {where} must be between {low} and {high}, not {value}")
    return value


def finite(value: Decimal | None, where: str) -> Decimal | None:
    """Check a bound is a finite number a field can hold (at most 38 digits)."""
    if value is not None and (not value.is_finite() or abs(value) >= Decimal(10) ** 38):
        raise ProfileError(f"profile key {where} must be a finite number below 10^38, not {value}")
    return value


def first_repeat(items: list[str]) -> str | None:
    """The first item seen twice, if any."""
    seen: set[str] = set()
    for item in items:
        if item in seen:
            return item
        seen.add(item)
    return None


def decimal(value: Any, where: str) -> Decimal | None:
    """A number setting as a finite :class:`Decimal` (``None`` when absent)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ProfileError(f"profile key {where} must be a number")
    try:
        return finite(Decimal(str(value)), where)
    except ArithmeticError as err:
        raise ProfileError(f"profile key {where} must be a number") from err


def tag_table(table: dict[str, Any], where: str, names: tuple[str, ...]) -> dict[str, str]:
    """Tags of one table: XML names, no two the same (the reader could not tell them apart)."""
    tags = {n: xml_name(require(table, n, where), f"{where}.{n}") for n in names}
    if twice := first_repeat(list(tags.values())):
        both = " and ".join(n for n, tag in tags.items() if tag == twice)
        raise ProfileError(f"profile key {where} uses the tag {twice!r} for {both}")
    return tags


def service_table(raw: dict[str, Any]) -> dict[str, Any]:
    """The ``[service]`` table, every setting checked (names, encodings, limits, clocks)."""
    service = dict(require(raw, "service", "profile", dict))
    known_keys(service, "service", SERVICE_KEYS)
    for key in ("operation", "input_part", "output_part", "service_name", "port_name"):
        xml_name(require(service, key, "service"), f"service.{key}")
    uri(require(service, "namespace", "service"), "service.namespace")
    url_path(require(service, "path", "service"), "service.path")
    inner = encoding(require(service, "inner_encoding", "service"), "service.inner_encoding", inner=True)
    limit = require(service, "batch_limit", "service", int)
    if limit <= 0:
        raise ProfileError("profile key service.batch_limit must be positive")
    int_range(limit, "service.batch_limit", 1, MAX_BATCH_LIMIT)
    tolerance = require(service, "future_tolerance_seconds", "service", int)
    int_range(tolerance, "service.future_tolerance_seconds", 0, 86400)
    int_range(
        require(service, "timezone_offset_hours", "service", int), "service.timezone_offset_hours", -12, 14
    )
    service.setdefault("soap_action", "")
    text(require(service, "soap_action", "service"), "service.soap_action", TEXT_MAX, empty=True)
    service.setdefault("accepted_inner_encodings", [inner])
    accepted = require(service, "accepted_inner_encodings", "service", list)
    if not accepted:
        raise ProfileError("profile key service.accepted_inner_encodings must not be empty")
    for i, name in enumerate(accepted):
        where = f"service.accepted_inner_encodings[{i}]"
        if not isinstance(name, str):
            raise ProfileError(f"profile key {where} must be text, not {shown(name)}")
        encoding(name, where, inner=False)
    return service


@lru_cache(maxsize=1)
def _gbk_repertoire() -> str:
    """Every character of GBK's two-byte range (private-use code points left out: they are not text)."""
    chars = []
    for lead in range(0x81, 0xFF):
        for trail in range(0x40, 0xFF):
            try:
                char = bytes((lead, trail)).decode("gbk")
            except UnicodeDecodeError:
                continue
            if not "\ue000" <= char <= "\uf8ff":
                chars.append(char)
    return "".join(chars)


_ASCII_SAMPLE = '<?xml version="1.0" encoding="GBK"?><row>0123456789 -:._ AZaz</row>'


def encoding(value: str, where: str, *, inner: bool) -> str:
    """Check an encoding name: known to Python and written as an XML EncName. The inner encoding must also
    write ASCII unchanged and every GBK character in two bytes, as the SPEC counts ``C(n)`` lengths: GBK,
    CP936 and GB18030 pass; GB2312 (misses most GBK characters), UTF-8 (three bytes a character),
    UTF-16, Big5, Latin-1 and ASCII are refused.

    :param value: the encoding name
    :param where: its dotted key
    :param inner: whether it is the encoding requests are written in
    """
    try:
        if not _ENC_NAME.fullmatch(value) or len(value) > NAME_MAX:
            raise LookupError(value)
        name = codecs.lookup(value).name
    except LookupError:
        raise ProfileError(f"profile key {where} names an unknown encoding {shown(value)}") from None
    if not inner:
        return value
    repertoire = _gbk_repertoire()
    try:
        fits = _ASCII_SAMPLE.encode(name) == _ASCII_SAMPLE.encode("ascii") and len(
            repertoire.encode(name)
        ) == 2 * len(repertoire)
    except (UnicodeError, LookupError):  # LookupError: a codec that is not a text encoding (rot13)
        fits = False
    if not fits:
        raise ProfileError(
            f"profile key {where} must hold every GBK character in two bytes (GBK or GB18030), "
            f"not {shown(value)}"
        )
    return value

"""The inner XML documents: requests (``inputXml``) and replies (``return``), both directions.

Imports nothing from Airflow. Tag names, codes and limits come from the
:class:`~cdyb_jxc.wire.profile.Profile`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from lxml import etree

from cdyb_jxc.exceptions import CodecError
from cdyb_jxc.safety.redaction import REDACTED
from cdyb_jxc.wire.profile import Profile, TransactionSpec
from cdyb_jxc.wire.request_rows import escape, row_elements
from cdyb_jxc.wire.values import row_to_wire
from cdyb_jxc.wire.xmlsafe import child_text, parse_text, split_declaration

CATEGORY_RE = re.compile(r"^\s*【([^】]*)】(.*)$", re.DOTALL)

SUCCESS, PARTIAL, FAILURE = "success", "partial", "failure"


@dataclass(frozen=True)
class RowFailure:
    """A row the centre did not save."""

    serial_no: str
    message: str

    @property
    def category(self) -> str | None:
        match = CATEGORY_RE.match(self.message)
        return match.group(1) if match else None

    @property
    def detail(self) -> str:
        match = CATEGORY_RE.match(self.message)
        return match.group(2) if match else self.message


@dataclass(frozen=True)
class BatchReply:
    """A parsed ``return`` document."""

    status: str
    retcode: str
    retmsg: str
    succnum: int | None = None
    failnum: int | None = None
    failures: tuple[RowFailure, ...] = ()

    @property
    def whole_call_rejected(self) -> bool:
        """The call itself was refused (SPEC §6 W rules): -1 with no rows listed, and either no failed-row
        count or a bracketed category in ``retmsg`` (【用户名或验证码错误】…).

        A -1 reply that counts failed rows but lists none and names no category is a row-level answer that
        does not say which rows failed: see :func:`reply_contradiction`."""
        return (
            self.status == FAILURE and not self.failures and (not self.failnum or self.category is not None)
        )

    @property
    def category(self) -> str | None:
        match = CATEGORY_RE.match(self.retmsg)
        return match.group(1) if match else None


@dataclass
class ParsedRequest:
    """A request as the server sees it: control values and rows as (tag, text) pairs in document order."""

    control: dict[str, str | None]
    control_extra: list[str] = field(default_factory=list)
    rows: list[list[tuple[str, str | None]]] = field(default_factory=list)


def _element(tag: str, text: str | None) -> str:
    return f"<{tag}>{escape(text)}</{tag}>" if text else f"<{tag}/>"


def _declared(root: etree._Element, encoding: str) -> str:
    body = etree.tostring(root, encoding=encoding, xml_declaration=False).decode(encoding)
    return f'<?xml version="1.0" encoding="{encoding}"?>\n{body}'


def build_request(
    profile: Profile,
    txn: TransactionSpec,
    rows: Sequence[Mapping[str, str | None]],
    *,
    user: str,
    verification_code: str,
    institution_code: str,
) -> str:
    """Build one ``inputXml`` string from rows already in wire text
    (see :func:`~cdyb_jxc.wire.values.row_to_wire`).

    Characters the inner encoding cannot hold are written as character references; callers hold such rows
    back beforehand (R6).
    """
    if len(rows) > profile.batch_limit:
        raise CodecError(f"batch of {len(rows)} rows exceeds the profile limit of {profile.batch_limit}")
    req, tags = profile.request, profile.control_tags
    # Flat text-only elements: written directly (escaped), several times faster than building an lxml tree.
    parts = [f"<{req['root']}><{req['control']}>"]
    for key, value in (
        ("transaction_code", txn.code),
        ("user", user),
        ("verification_code", verification_code),
        ("institution_code", institution_code),
        ("row_count", str(len(rows))),
    ):
        parts.append(_element(tags[key], value))
    parts.append(f"</{req['control']}><{req['data']}>")
    row_open, row_close = f"<{req['row']}>", f"</{req['row']}>"
    parts += row_elements(txn, rows, row_open, row_close)
    parts.append(f"</{req['data']}></{req['root']}>")
    encoding, body = profile.inner_encoding, "".join(parts)
    try:  # GBK or GB18030 (profile_checks): text they encode decodes back unchanged, so it stays as it is
        body.encode(encoding)
    except UnicodeEncodeError:  # characters it cannot hold become character references (the server: R6)
        body = body.encode(encoding, "xmlcharrefreplace").decode(encoding)
    return f'<?xml version="1.0" encoding="{encoding}"?>\n{body}'


def iter_batches(rows: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Split ``rows`` into lists of at most ``size``."""
    if size <= 0:
        raise ValueError("batch size must be positive")
    it = iter(rows)
    while batch := list(islice(it, size)):
        yield batch


def build_requests(
    profile: Profile,
    txn: TransactionSpec,
    rows: Iterable[Mapping[str, Any]],
    *,
    user: str,
    verification_code: str,
    institution_code: str,
    batch_limit: int | None = None,
) -> Iterator[str]:
    """Convert source rows (dicts or a DataFrame with logical column names) and build requests of at most
    ``batch_limit`` (default: the profile's limit) rows each."""
    limit = min(batch_limit or profile.batch_limit, profile.batch_limit)
    if hasattr(rows, "to_dict") and hasattr(rows, "columns"):
        rows = rows.to_dict("records")  # a pandas DataFrame
    offset = int(profile.service["timezone_offset_hours"])
    wire = (row_to_wire(txn, row, offset) for row in rows)
    for batch in iter_batches(wire, limit):
        yield build_request(
            profile,
            txn,
            batch,
            user=user,
            verification_code=verification_code,
            institution_code=institution_code,
        )


def redact_request(profile: Profile, text: str) -> str:
    """The request with the 交易访问验证码 replaced, for audit storage and logs."""
    tag = re.escape(profile.control_tags["verification_code"])
    return re.sub(rf"<{tag}>[^<]*</{tag}>|<{tag}/>", f"<{tag}>{REDACTED}</{tag}>", text)


MAX_COUNT = 10**9  # a row count beyond any batch; larger ones would not even fit a ledger's INTEGER column
_INT_RE = re.compile(r"[+-]?[0-9]+")


def _int_or_none(text: str | None, what: str) -> int | None:
    """A count as the centre wrote it; ``None`` when it is not a number (tolerated, SPEC §3).

    :raises CodecError: a number outside 0..:data:`MAX_COUNT`: such a reply cannot be trusted
    """
    if text is None or not _INT_RE.fullmatch(text.strip()):
        return None
    digits = text.strip().lstrip("+-").lstrip("0")
    value = int(text.strip()) if len(digits) <= 12 else None  # no huge int() conversion for a hostile count
    if value is None or not 0 <= value <= MAX_COUNT:
        shown = text.strip() if len(text.strip()) <= 20 else text.strip()[:20] + "…"
        raise CodecError(f"reply has a {what} {shown!r} outside 0..{MAX_COUNT}")
    return value


def _check_row_count(profile: Profile, text: str) -> None:
    """Refuse, before any tree is built, a reply listing more rows than a batch can hold (twice the batch
    limit, to tolerate a row listed twice): one ``<row/>`` per 6 bytes would otherwise cost ~200 bytes of
    tree and objects each."""
    limit = 2 * profile.batch_limit
    opening = re.compile(rf"<(?:[A-Za-z_][\w.-]*:)?{re.escape(profile.reply['row'])}(?=[\s/>])")
    for count, _ in enumerate(opening.finditer(text), start=1):
        if count > limit:
            raise CodecError(
                f"reply lists more than {limit} rows (a batch has at most {profile.batch_limit})"
            )


def parse_reply(profile: Profile, text: str | None) -> BatchReply:
    """Parse a ``return`` string tolerantly: missing counts or ``dataset``, GBK/GB18030/UTF-8 declarations,
    surrounding whitespace. Refuses DOCTYPE/entities. Raises :class:`CodecError` when unreadable."""
    if text is None or not text.strip():
        raise CodecError("reply is empty")
    rep = profile.reply
    _check_row_count(profile, text)
    root = parse_text(text.strip(), "reply")
    if etree.QName(root).localname != rep["root"]:
        raise CodecError(f"reply has no <{rep['root']}> node (root is <{etree.QName(root).localname}>)")
    retcode = (child_text(root, rep["retcode"]) or "").strip()
    codes = profile.return_codes
    status = {codes["success"]: SUCCESS, codes["partial"]: PARTIAL, codes["failure"]: FAILURE}.get(retcode)
    if status is None:
        raise CodecError(f"reply has an unknown {rep['retcode']} {retcode!r}")
    failures = []
    for node in root:
        if not isinstance(node.tag, str) or etree.QName(node).localname != rep["dataset"]:
            continue
        for row in node:
            if not isinstance(row.tag, str) or etree.QName(row).localname != rep["row"]:
                continue
            serial = (child_text(row, rep["serial_no"]) or "").strip()
            failures.append(RowFailure(serial, (child_text(row, rep["errmsg"]) or "").strip()))
    return BatchReply(
        status=status,
        retcode=retcode,
        retmsg=(child_text(root, rep["retmsg"]) or "").strip(),
        succnum=_int_or_none(child_text(root, rep["succnum"]), rep["succnum"]),
        failnum=_int_or_none(child_text(root, rep["failnum"]), rep["failnum"]),
        failures=tuple(failures),
    )


def match_failures(reply: BatchReply, serials: Sequence[str]) -> tuple[dict[str, RowFailure], list[str]]:
    """Pair the reply's failed rows with the batch's 流水号: exactly, else ignoring surrounding whitespace (a
    reply may trim what the source padded, e.g. ``CHAR(n)`` columns).

    :return: (batch 流水号 → its failure, listed 流水号 that match no row of the batch)
    """
    exact = set(serials)
    by_stripped: dict[str, list[str]] = {}
    for serial in exact:
        by_stripped.setdefault(serial.strip(), []).append(serial)
    matched: dict[str, RowFailure] = {}
    unknown: list[str] = []
    for failure in reply.failures:
        if failure.serial_no in exact:
            matched.setdefault(failure.serial_no, failure)
            continue
        candidates = by_stripped.get(failure.serial_no.strip(), [])
        if len(candidates) == 1:
            matched.setdefault(candidates[0], failure)
        else:
            unknown.append(failure.serial_no)
    return matched, unknown


def reply_contradiction(
    reply: BatchReply,
    serials: Sequence[str],
    match: tuple[dict[str, RowFailure], list[str]] | None = None,
) -> str | None:
    """Why ``reply`` does not tell the fate of every row of the batch ``serials``; ``None`` when it does.

    SPEC §3: with retcode 1 every row was saved; with 2 the rows listed in ``dataset`` were not and the others
    were; with -1 (rows listed) none was. ``dataset``, ``succnum`` and ``failnum`` may be missing, but what is
    there must agree: otherwise no row's fate can be trusted.

    :param match: :func:`match_failures` of the same reply and batch, when the caller has it already
    """
    reason = _contradiction(reply, serials, match or match_failures(reply, serials))
    if reason and reply.retmsg:
        reason += f"; 返回信息: {reply.retmsg}"
    return reason


def _contradiction(
    reply: BatchReply, serials: Sequence[str], match: tuple[dict[str, RowFailure], list[str]]
) -> str | None:
    matched, unknown = match
    if unknown:
        shown = ", ".join(repr(s) for s in sorted(unknown)[:3]) + ("…" if len(unknown) > 3 else "")
        return f"应答列出本批没有的流水号 {shown}"
    k, n = len(matched), len(set(serials))
    if reply.status == SUCCESS and k:
        return f"返回码{reply.retcode}(全部成功)却列出{k}条失败记录"
    if reply.status == PARTIAL and not k:
        return f"返回码{reply.retcode}(部分成功)却未列出失败记录"
    if reply.status == FAILURE and k != n:
        return f"返回码{reply.retcode}(全部失败)只列出{k}/{n}条失败记录"
    if reply.succnum is not None and reply.succnum != n - k:
        return f"成功条数{reply.succnum}与本批{n}条、失败记录{k}条不符"
    if reply.failnum is not None and reply.failnum != k:
        return f"失败条数{reply.failnum}与列出的失败记录{k}条不符"
    return None


def build_reply(
    profile: Profile,
    status: str,
    retmsg: str,
    *,
    succnum: int | None = None,
    failnum: int | None = None,
    failures: Sequence[RowFailure] = (),
) -> str:
    """Build a ``return`` string as the centre sends it (counts and dataset only when given)."""
    rep = profile.reply
    code_key = {SUCCESS: "success", PARTIAL: "partial", FAILURE: "failure"}[status]
    root = etree.Element(rep["root"])
    etree.SubElement(root, rep["retcode"]).text = profile.return_codes[code_key]
    etree.SubElement(root, rep["retmsg"]).text = retmsg
    if succnum is not None:
        etree.SubElement(root, rep["succnum"]).text = str(succnum)
    if failnum is not None:
        etree.SubElement(root, rep["failnum"]).text = str(failnum)
    if failures:
        dataset = etree.SubElement(root, rep["dataset"])
        for failure in failures:
            row = etree.SubElement(dataset, rep["row"])
            etree.SubElement(row, rep["serial_no"]).text = failure.serial_no
            etree.SubElement(row, rep["errmsg"]).text = failure.message
    return _declared(root, profile.inner_encoding)


def _request_root(profile: Profile, text: str | None) -> etree._Element:
    """The root element of an ``inputXml`` that is there, declares an accepted encoding, parses and is the
    profile's request root; :class:`CodecError` (the centre's words) otherwise."""
    if text is None or not text.strip():
        raise CodecError("inputXml为空")
    encoding, _ = split_declaration(text)
    accepted = {e.upper() for e in profile.service["accepted_inner_encodings"]}
    if encoding is None or encoding.upper() not in accepted:
        raise CodecError(f'缺少XML声明encoding="{profile.inner_encoding}"')
    try:
        root = parse_text(text, "inputXml")
    except CodecError as err:
        raise CodecError(f"XML格式错误: {err}") from err
    if root.tag != profile.request["root"]:
        raise CodecError(f"根节点应为<{profile.request['root']}>")
    return root


def parse_request(profile: Profile, text: str | None) -> ParsedRequest:
    """Server side: parse an ``inputXml`` string. Raises :class:`CodecError` for anything W1 covers:
    missing/empty, no GBK declaration, a DOCTYPE, malformed XML or the wrong structure."""
    req = profile.request
    root = _request_root(profile, text)
    control = root.find(req["control"])
    data = root.find(req["data"])
    if control is None:
        raise CodecError(f"缺少<{req['control']}>节点")
    parsed = ParsedRequest(control={})
    known = set(profile.control_tags.values())
    for child in control:
        if not isinstance(child.tag, str):
            continue
        if child.tag in known and child.tag not in parsed.control:
            parsed.control[child.tag] = child.text or None
        else:
            parsed.control_extra.append(child.tag)
    if data is not None:
        for row in data:
            if not isinstance(row.tag, str):
                continue
            if row.tag != req["row"]:
                raise CodecError(f"<{req['data']}>下出现未知节点<{row.tag}>")
            parsed.rows.append([(el.tag, el.text or None) for el in row if isinstance(el.tag, str)])
    return parsed

"""The one place the 交易访问验证码 is cut out of text, whatever its origin and whatever form it took.

Every byte that comes back from the centre passes :meth:`Redactor.bytes` in the transport before anything
parses it, so a SOAP Fault, ``retmsg``, a row's ``errmsg``, an HTML error page and the reply kept for audit
are clean before they exist as text. :meth:`Redactor.text` covers what the client builds itself (exception
messages, the ``Location`` of a refused redirect, the request kept for audit), and
:func:`install_log_redaction` puts the same redactor on every log record of the process.

A secret is matched in the forms a server, proxy or error page may echo it in, mixed freely per character:
plain (UTF-8, GBK or GB18030 bytes), XML-escaped at any depth (``&lt;`` and ``&amp;lt;``), numeric character
references (decimal or hex, any case, leading zeros, also escaped again), percent-encoded (UTF-8 or GBK
bytes, either hex case, ``+`` for a space, ``%uXXXX``, percent-encoded again any number of times as
``%25HH``), quoted-printable ``=HH`` bytes, JSON and Python backslash escapes (``\\uXXXX``, ``\\xHH``,
``\\r``, ``\\"``), Latin-1 mojibake of its UTF-8 or GBK bytes, UTF-16/UTF-32 (either byte order) bytes,
split by CDATA section markers (``<![CDATA[``, ``]]>``, raw or XML-escaped) between any two characters, and
base64 (standard or URL-safe) of any text holding it in one of these forms (the whole run is cut).
A body with a UTF-16/UTF-32 BOM or XML declaration is decoded, redacted as text and encoded back.
Not covered: a secret split by whitespace or other markup, case-folded or full-width copies, base64 broken
across lines.

Secrets shorter than :data:`MIN_SECRET_CHARS` are not redacted: matching them would mangle ordinary text
(the centre's codes are longer).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import contextlib
import logging
import re
import threading
import traceback
from collections.abc import Iterable
from typing import Any

REDACTED = "******"  # what every secret becomes, wherever it appears


MIN_SECRET_CHARS = 4
ENCODINGS = ("utf-8", "gbk", "gb18030")
WIDE_ENCODINGS = ("utf-32-le", "utf-32-be", "utf-16-le", "utf-16-be")  # 32 first: whole code units
_NAMED = {"&": "amp", "<": "lt", ">": "gt", '"': "quot", "'": "apos"}
# backslash escapes of JSON, Python reprs and C-like logs
_SHORT = {'"': '"', "'": "'", "\\": "\\", "/": "/", "\r": "r", "\n": "n", "\t": "t", "\b": "b", "\f": "f"}
_AMP = r"&(?:amp;)*"  # an ampersand escaped any number of times: inner XML inside the envelope, and so on
# a CDATA section opened or closed between two characters: the parsed text joins both halves again
_CDATA_MARK = rf"(?:(?:<|{_AMP}lt;)!\[CDATA\[|\]\](?:>|{_AMP}gt;))"
_CDATA_SEP = f"{_CDATA_MARK}*"
_CDATA_MARK_RE = re.compile(_CDATA_MARK)
_CDATA_MARK_BYTES_RE = re.compile(_CDATA_MARK.encode("ascii"))
# base64 runs (standard and URL-safe alphabets) at least as long as the shortest secret's base64
_BASE64_RUN = r"[A-Za-z0-9+/_-]{%d,}={0,2}"
# every byte of that alphabet → "a", every other byte → " ": a run long enough is then one `in` away
_RUN_MASK = bytes(
    0x61 if i in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-" else 0x20
    for i in range(256)
)
_BASE64_DEPTH = 2
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_WIDE_DECLARATIONS = (
    ("<?xml".encode("utf-32-le"), "utf-32-le"),
    ("<?xml".encode("utf-32-be"), "utf-32-be"),
    ("<?xml".encode("utf-16-le"), "utf-16-le"),
    ("<?xml".encode("utf-16-be"), "utf-16-be"),
)
_DECLARED_RE = re.compile(rb"""^\s*<\?xml\s[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]{1,40})["']""")


def _hex(number: int, width: int = 0) -> str:
    """Regex for ``number`` in hex, either case per digit."""
    digits = f"{number:0{width}x}"
    return "".join(f"[{d}{d.upper()}]" if d.isalpha() else d for d in digits)


def _one_byte_forms(b: int) -> list[str]:
    """Regex alternatives for one byte: raw (as a Latin-1 character), ``%HH`` (percent-encoded again any
    number of times), quoted-printable ``=HH`` or ``\\xHH``; each starts with a literal character."""
    return [re.escape(chr(b)), f"%(?:25)*{_hex(b, 2)}", f"={_hex(b, 2)}", f"\\\\x{_hex(b, 2)}"]


def _byte_forms(data: bytes) -> str:
    """Regex for a byte sequence, each byte in one of the forms of :func:`_one_byte_forms`."""
    return "".join("(?:" + "|".join(_one_byte_forms(b)) + ")" for b in data)


def _leading_byte_forms(data: bytes) -> list[str]:
    """:func:`_byte_forms` of ``data`` as alternatives that each start with a literal character."""
    rest = _byte_forms(data[1:])
    return [form + rest for form in _one_byte_forms(data[0])]


def _unicode_escapes(cp: int) -> list[str]:
    if cp <= 0xFFFF:
        return [rf"\\u{_hex(cp, 4)}", f"%[uU]{_hex(cp, 4)}"]
    high, low = 0xD800 + ((cp - 0x10000) >> 10), 0xDC00 + ((cp - 0x10000) & 0x3FF)
    return [rf"\\u{_hex(high, 4)}\\u{_hex(low, 4)}", rf"\\U{_hex(cp, 8)}"]


def _char_forms(ch: str, *, leading: bool = False) -> list[str]:
    """Regex alternatives (ASCII or Latin-1 only, so the same source serves str and bytes) for ``ch``.

    :param leading: each alternative starts with a literal character (see :func:`secret_pattern`)
    """
    cp = ord(ch)
    # HTML reads a numeric reference without its ';' when no further digit follows
    forms = [
        f"{_AMP}#0*{cp}(?:;|(?![0-9]))",
        f"{_AMP}#[xX]0*{_hex(cp)}(?:;|(?![0-9a-fA-F]))",
        *_unicode_escapes(cp),
    ]
    if ch in _NAMED:
        forms.append(f"{_AMP}{_NAMED[ch]};")
    if ch in _SHORT:
        forms.append(r"\\" + re.escape(_SHORT[ch]))
    if ch == " ":
        forms.append(r"\+")
    if ch == "\r":  # an XML parser reads a raw CR as a line feed
        forms.append("\n")
    for encoding in ENCODINGS:
        try:
            encoded = ch.encode(encoding)
        except UnicodeEncodeError:
            continue
        for form in _leading_byte_forms(encoded) if leading else [_byte_forms(encoded)]:
            if form not in forms:
                forms.append(form)
    # a UTF-16/UTF-32 body nothing told us the encoding of: its bytes as they are, tried first so that a
    # match covers whole code units
    wide = [re.escape(ch.encode(encoding).decode("latin-1")) for encoding in WIDE_ENCODINGS]
    return [*wide, *forms]


def secret_pattern(secret: str) -> tuple[str, str]:
    """The (str, bytes) regex sources matching ``secret`` in every form named in the module doc.

    Every alternative for the first character starts with a literal character: the regex engine then
    knows the characters a match can start with and skips the rest of a long text in C (~5× faster on a
    request than trying every alternative at every position).
    """
    text_parts, byte_parts = [], []
    for n, ch in enumerate(secret):
        forms = _char_forms(ch, leading=n == 0)
        byte_parts.append("(?:" + "|".join(forms) + ")")
        text_parts.append("(?:" + "|".join([re.escape(ch), *forms]) + ")")
    return _CDATA_SEP.join(text_parts), _CDATA_SEP.join(byte_parts)


def sniff_encoding(data: bytes) -> str | None:
    """The encoding a body names itself, as an XML parser reads it: a BOM, a UTF-16/UTF-32 XML declaration,
    or the ``encoding`` of an ASCII-compatible XML declaration; ``None`` when it names none."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return encoding
    for start, encoding in _WIDE_DECLARATIONS:
        if data.startswith(start):
            return encoding
    declared = _DECLARED_RE.match(data[:200])
    return declared.group(1).decode("ascii") if declared else None


def _wide(data: bytes) -> str | None:
    """The UTF-16/UTF-32 codec ``data`` names itself in, if any."""
    encoding = sniff_encoding(data)
    if encoding is None:
        return None
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        return None
    return encoding if name.startswith(("utf-16", "utf-32")) else None


_Bytes = bytes  # inside Redactor, ``bytes`` names its method


class Redactor:
    """Replaces every known secret, in every form, with :data:`REDACTED`.

    :param mark: the replacement (ASCII, so it is valid in any ASCII-compatible body encoding)
    """

    def __init__(self, mark: str = REDACTED) -> None:
        self.mark = mark
        self._lock = threading.Lock()
        self._secrets: frozenset[str] = frozenset()
        self._text_re: re.Pattern[str] | None = None
        self._bytes_re: re.Pattern[bytes] | None = None
        # one pattern per secret, longest first, for replacing: a pattern of one secret keeps the engine's
        # fast scan for its first character (see secret_pattern), an alternation of several loses it
        self._text_subs: tuple[re.Pattern[str], ...] = ()
        self._bytes_subs: tuple[re.Pattern[bytes], ...] = ()
        self._base64_re: re.Pattern[str] = re.compile(_BASE64_RUN % 8)
        self._base64_bytes_re: re.Pattern[bytes] = re.compile((_BASE64_RUN % 8).encode("ascii"))
        self._base64_min = 8  # the shortest run those two match

    @property
    def active(self) -> bool:
        return self._text_re is not None

    def add(self, secret: str) -> bool:
        """Know ``secret`` from now on; ``False`` when it is too short to be redacted safely."""
        if len(secret) < MIN_SECRET_CHARS:
            return False
        with self._lock:
            if secret in self._secrets:
                return True
            secrets = self._secrets | {secret}
            # longer secrets first, so one that contains another is cut whole
            sources = [secret_pattern(s) for s in sorted(secrets, key=len, reverse=True)]
            text_subs = tuple(re.compile(t) for t, _ in sources)
            bytes_subs = tuple(re.compile(b.encode("latin-1")) for _, b in sources)
            text_re = re.compile("|".join(t for t, _ in sources)) if len(sources) > 1 else text_subs[0]
            bytes_re = (
                re.compile("|".join(b for _, b in sources).encode("latin-1"))
                if len(sources) > 1
                else bytes_subs[0]
            )
            # shorter runs cannot hold the shortest secret (its UTF-8 bytes, 4 characters per 3 bytes)
            shortest = max(8, min(len(s.encode()) for s in secrets) * 4 // 3)
            run = _BASE64_RUN % shortest
            # the length first (it only ever shrinks): a reader that sees the new patterns sees it too
            self._base64_min = shortest
            self._base64_re, self._base64_bytes_re = re.compile(run), re.compile(run.encode("ascii"))
            self._text_subs, self._bytes_subs = text_subs, bytes_subs
            self._text_re, self._bytes_re, self._secrets = text_re, bytes_re, secrets
        return True

    def text(self, value: str) -> str:
        """``value`` with every secret replaced."""
        patterns = self._text_subs
        if not patterns or not value:
            return value
        for pattern in patterns:
            value = pattern.sub(self._keep_cdata_marks, value)
        base64_re = self._base64_re
        if not self._has_run(value.encode("utf-8", "surrogatepass")):
            return value  # (a non-ASCII character is never part of a run: its UTF-8 bytes are not either)
        return base64_re.sub(lambda m: self._base64_run(m.group(), self.mark), value)

    def bytes(self, value: bytes) -> bytes:
        """A body (UTF-8, GBK, GB18030, any ASCII-compatible encoding, or UTF-16/UTF-32 naming itself by a
        BOM or its XML declaration) with every secret replaced."""
        patterns = self._bytes_subs
        if not patterns or not value:
            return value
        wide = _wide(value)
        if wide is not None:
            try:
                # the replacement is written in the body's own encoding, so it stays readable
                return self.text(value.decode(wide)).encode(wide)
            except UnicodeError:
                pass  # not valid in its own encoding: the byte forms below still apply
        for pattern in patterns:
            value = pattern.sub(self._keep_cdata_marks_bytes, value)
        base64_re, mark = self._base64_bytes_re, self.mark.encode("ascii")
        if not self._has_run(value):
            return value
        return base64_re.sub(lambda m: self._base64_run(m.group(), mark), value)

    def _has_run(self, data: _Bytes) -> bool:
        """Whether ``data`` holds a base64 run long enough for the run patterns (read before this) to match:
        most texts hold none, and one C-level pass finds that ~8× faster than the patterns' scan."""
        return b"a" * self._base64_min in data.translate(_RUN_MASK)

    def _keep_cdata_marks(self, match: re.Match[str]) -> str:
        # CDATA markers inside the match are kept after the mark: the XML around it stays well-formed
        return self.mark + "".join(_CDATA_MARK_RE.findall(match.group()))

    def _keep_cdata_marks_bytes(self, match: re.Match[_Bytes]) -> _Bytes:
        raw = match.group()
        if (
            b"\x00" in raw
        ):  # UTF-16/UTF-32 without a BOM: the mark in the same encoding keeps the body aligned
            for encoding in WIDE_ENCODINGS:
                with contextlib.suppress(UnicodeError):
                    if self._text_re is not None and self._text_re.fullmatch(raw.decode(encoding)):
                        return self.mark.encode(encoding)
        return self.mark.encode("ascii") + b"".join(_CDATA_MARK_BYTES_RE.findall(raw))

    def _base64_run(self, run: Any, mark: Any, depth: int = 0) -> Any:
        """``mark`` when ``run`` (str or bytes) is base64 of something holding a secret, else ``run``."""
        return mark if self._holds_secret_base64(run, depth) else run

    def _holds_secret_base64(self, run: str | _Bytes, depth: int) -> bool:
        pattern = self._bytes_re
        if pattern is None or depth >= _BASE64_DEPTH:
            return False
        data = run.encode("ascii") if isinstance(run, str) else run
        data = data.rstrip(b"=")
        for offset in range(4):  # the run may start inside a word: try every alignment
            decoded = _b64decode(data[offset:])
            if decoded is None:
                continue
            if pattern.search(decoded) is not None or (
                (wide := _wide(decoded)) and self._wide_holds(decoded, wide)
            ):
                return True
            if any(
                self._holds_secret_base64(m.group(), depth + 1)
                for m in self._base64_bytes_re.finditer(decoded)
            ):
                return True
        return False

    def _wide_holds(self, data: _Bytes, encoding: str) -> bool:
        pattern = self._text_re
        try:
            return pattern is not None and pattern.search(data.decode(encoding)) is not None
        except UnicodeError:
            return False

    def value(self, value: Any) -> Any:
        """``str`` and ``bytes`` redacted, anything else returned unchanged."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, bytes | bytearray):
            return self.bytes(bytes(value))
        return value


def _b64decode(data: bytes) -> bytes | None:
    """``data`` decoded as standard or URL-safe base64 (padding optional), ``None`` when it is not."""
    usable = len(data) - len(data) % 4 if len(data) % 4 == 1 else len(data)
    padded = data[:usable] + b"=" * (-usable % 4)
    altchars = b"-_" if b"-" in padded or b"_" in padded else None
    try:
        return base64.b64decode(padded, altchars=altchars, validate=True)
    except (binascii.Error, ValueError):
        return None


REDACTOR = Redactor()


def register_secret(secret: str) -> None:
    """Have the process-wide redactor know ``secret`` and make sure log records pass it."""
    if not REDACTOR.add(secret):
        logging.getLogger(__name__).warning(
            "a 交易访问验证码 shorter than %d characters cannot be redacted from echoed text",
            MIN_SECRET_CHARS,
        )
    install_log_redaction()


def redact_record(record: logging.LogRecord, redactor: Redactor = REDACTOR) -> None:
    """Redact a log record's message (and its formatted exception) in place."""
    if not redactor.active:
        return
    try:
        message = record.getMessage()
    except Exception:  # a broken format string is the handler's business, not ours
        return
    clean = redactor.text(message)
    if clean != message:
        record.msg, record.args = clean, None
    if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
        formatted = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        redacted = redactor.text(formatted)
        if redacted != formatted:
            record.exc_text = redacted


class RedactingFilter(logging.Filter):
    """A logging filter running :func:`redact_record`; attach it to handlers of your own if you like."""

    def __init__(self, redactor: Redactor = REDACTOR) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record, self.redactor)
        return True


_FILTER = RedactingFilter()
_FILTERED_LOGGERS: Iterable[str] = ("cdyb_jxc", "zeep", "zeep.transports")


def _redacting_factory(previous: Any) -> Any:
    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record: logging.LogRecord = previous(*args, **kwargs)
        redact_record(record)
        return record

    factory.cdyb_jxc_redacting = True  # type: ignore[attr-defined]
    return factory


def install_log_redaction() -> None:
    """Redact every log record of the process when it is created (a logger's filter would miss the records
    of its child loggers), plus a filter on our and zeep's loggers. Idempotent; re-installs itself if
    someone replaced the record factory since."""
    current = logging.getLogRecordFactory()
    if not getattr(current, "cdyb_jxc_redacting", False):
        logging.setLogRecordFactory(_redacting_factory(current))
    for name in _FILTERED_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)

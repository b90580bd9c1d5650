"""The one place the 交易访问验证码 is cut out of text, whatever its origin and whatever form it took.

Every byte that comes back from the centre passes :meth:`Redactor.bytes` in the transport before anything
parses it, so a SOAP Fault, ``retmsg``, a row's ``errmsg``, an HTML error page and the reply kept for audit
are clean before they exist as text. :meth:`Redactor.text` covers what the client builds itself (exception
messages, the ``Location`` of a refused redirect, the request kept for audit), and
:func:`install_log_redaction` puts the same redactor on every log record of the process.

A secret is matched in the forms a server, proxy or error page may echo it in, mixed freely per character:
plain (UTF-8, GBK or GB18030 bytes), XML-escaped at any depth (``&lt;`` and ``&amp;lt;``), numeric character
references (decimal or hex, any case, leading zeros, also escaped again), percent-encoded (UTF-8 or GBK
bytes, either hex case, ``+`` for a space, ``%uXXXX``), JSON and Python backslash escapes (``\\uXXXX``,
``\\xHH``, ``\\r``, ``\\"``) and Latin-1
mojibake of its UTF-8 or GBK bytes. Not covered: a secret split by whitespace or markup, UTF-16 bodies.

Secrets shorter than :data:`MIN_SECRET_CHARS` are not redacted: matching them would mangle ordinary text
(the centre's codes are longer).
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from collections.abc import Iterable
from typing import Any

from cdyb_jxc.codec import REDACTED

MIN_SECRET_CHARS = 4
ENCODINGS = ("utf-8", "gbk", "gb18030")
_NAMED = {"&": "amp", "<": "lt", ">": "gt", '"': "quot", "'": "apos"}
# backslash escapes of JSON, Python reprs and C-like logs
_SHORT = {'"': '"', "'": "'", "\\": "\\", "/": "/", "\r": "r", "\n": "n", "\t": "t", "\b": "b", "\f": "f"}
_AMP = r"&(?:amp;)*"  # an ampersand escaped any number of times: inner XML inside the envelope, and so on


def _hex(number: int, width: int = 0) -> str:
    """Regex for ``number`` in hex, either case per digit."""
    digits = f"{number:0{width}x}"
    return "".join(f"[{d}{d.upper()}]" if d.isalpha() else d for d in digits)


def _byte_forms(data: bytes) -> str:
    """Regex for a byte sequence, each byte raw (as a Latin-1 character), ``%HH`` or ``\\xHH``."""
    return "".join(f"(?:{re.escape(chr(b))}|%{_hex(b, 2)}|\\\\x{_hex(b, 2)})" for b in data)


def _unicode_escapes(cp: int) -> list[str]:
    if cp <= 0xFFFF:
        return [rf"\\u{_hex(cp, 4)}", f"%[uU]{_hex(cp, 4)}"]
    high, low = 0xD800 + ((cp - 0x10000) >> 10), 0xDC00 + ((cp - 0x10000) & 0x3FF)
    return [rf"\\u{_hex(high, 4)}\\u{_hex(low, 4)}", rf"\\U{_hex(cp, 8)}"]


def _char_forms(ch: str) -> list[str]:
    """Regex alternatives (ASCII or Latin-1 only, so the same source serves str and bytes) for ``ch``."""
    cp = ord(ch)
    forms = [f"{_AMP}#0*{cp};", f"{_AMP}#[xX]0*{_hex(cp)};", *_unicode_escapes(cp)]
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
        form = _byte_forms(encoded)
        if form not in forms:
            forms.append(form)
    return forms


def secret_pattern(secret: str) -> tuple[str, str]:
    """The (str, bytes) regex sources matching ``secret`` in every form named in the module doc."""
    text_parts, byte_parts = [], []
    for ch in secret:
        forms = _char_forms(ch)
        byte_parts.append("(?:" + "|".join(forms) + ")")
        text_parts.append("(?:" + "|".join([re.escape(ch), *forms]) + ")")
    return "".join(text_parts), "".join(byte_parts)


class Redactor:
    """Replaces every known secret, in every form, with :data:`~cdyb_jxc.codec.REDACTED`.

    :param mark: the replacement (ASCII, so it is valid in any ASCII-compatible body encoding)
    """

    def __init__(self, mark: str = REDACTED) -> None:
        self.mark = mark
        self._lock = threading.Lock()
        self._secrets: frozenset[str] = frozenset()
        self._text_re: re.Pattern[str] | None = None
        self._bytes_re: re.Pattern[bytes] | None = None

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
            text_re = re.compile("|".join(t for t, _ in sources))
            bytes_re = re.compile("|".join(b for _, b in sources).encode("latin-1"))
            self._text_re, self._bytes_re, self._secrets = text_re, bytes_re, secrets
        return True

    def text(self, value: str) -> str:
        """``value`` with every secret replaced."""
        pattern = self._text_re
        return pattern.sub(self.mark, value) if pattern is not None and value else value

    def bytes(self, value: bytes) -> bytes:
        """A body (UTF-8, GBK, GB18030 or any ASCII-compatible encoding) with every secret replaced."""
        pattern = self._bytes_re
        return pattern.sub(self.mark.encode("ascii"), value) if pattern is not None and value else value

    def value(self, value: Any) -> Any:
        """``str`` and ``bytes`` redacted, anything else returned unchanged."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, bytes | bytearray):
            return self.bytes(bytes(value))
        return value


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
        record = previous(*args, **kwargs)
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

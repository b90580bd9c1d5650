"""The HTTP side of a SOAP call, bounded and redacted: what zeep's transport does, minus its trust.

One call is one POST with:

* a total deadline (connect + send + whole reply): a watchdog thread (one for all calls) shuts the
  connection down when it passes, so a server that trickles a byte every few seconds, or never reads the
  request, cannot hold an upload (and its lock) for longer than the connection's ``timeout``;
* the reply read streamed in chunks and refused at :data:`MAX_REPLY_BYTES`, so a huge reply never takes the
  worker's memory (the first :data:`KEEP_BYTES` are kept, marked as cut, for the audit);
* no redirects: the body carries the 交易访问验证码, a 3xx is an error naming the (redacted) ``Location``;
* every byte of the reply through :data:`~cdyb_jxc.safety.redaction.REDACTOR` before zeep parses it.

Nothing here imports Airflow.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import threading
import time
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from cdyb_jxc.exceptions import InDoubtError, TransportError
from cdyb_jxc.safety.redaction import REDACTOR, Redactor, sniff_encoding
from cdyb_jxc.wire.lean_imports import without_httpx_cli

with without_httpx_cli():
    from zeep.transports import Transport

log = logging.getLogger(__name__)

MAX_REPLY_BYTES = 16 * 1024 * 1024  # a real reply to 100 rows is a few tens of KB
KEEP_BYTES = 64 * 1024
CHUNK_BYTES = 64 * 1024
_CHARSET_RE = re.compile(r"""charset\s*=\s*["']?([^"';\s]+)""", re.IGNORECASE)
_UNPRINTABLE_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_LOCAL = threading.local()


class _Watchdog:
    """Shuts down every socket of one call once ``deadline`` (monotonic) has passed (by :data:`_KEEPER`'s
    thread, which keeps every call's deadline: no thread per call).

    :param deadline: ``time.monotonic()`` value after which the call is cut
    """

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.fired = False
        self.connected = False  # a socket existed when it fired: the request may have gone out
        self._socks: list[socket.socket] = []

    def attach(self, sock: socket.socket | None) -> None:
        if sock is not None and all(s is not sock for s in self._socks):
            self._socks.append(sock)

    def __enter__(self) -> _Watchdog:
        _LOCAL.watch = self
        _KEEPER.add(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _LOCAL.watch = None
        _KEEPER.remove(self)  # once it returns, none of this call's sockets is cut (the pool reuses them)

    def cut(self) -> None:
        """Shut down the call's sockets (the keeper's thread, the call still running)."""
        self.fired = True
        for sock in list(self._socks):
            self.connected = True
            # wakes a blocked send or recv in the calling thread; closing stays that thread's business
            # (a closed socket object has no descriptor left, so this cannot hit a reused one)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    @property
    def expired(self) -> bool:
        return self.fired or time.monotonic() >= self.deadline


class _DeadlineKeeper:
    """One daemon thread that cuts the calls whose deadline has passed, again every
    :data:`RECUT_SECONDS` until they give up (a connection may still be opening when the deadline passes).
    A call's watch is cut only while registered, under the lock that removing it takes."""

    RECUT_SECONDS = 0.1

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._watches: set[_Watchdog] = set()
        self._thread: threading.Thread | None = None

    def add(self, watch: _Watchdog) -> None:
        with self._cond:
            self._watches.add(watch)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="cdyb-jxc-deadline", daemon=True)
                self._thread.start()
            self._cond.notify()

    def remove(self, watch: _Watchdog) -> None:
        with self._cond:
            self._watches.discard(watch)

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                due = [w for w in self._watches if w.deadline <= now]
                for watch in due:
                    watch.cut()
                later = [w.deadline - now for w in self._watches if w.deadline > now]
                wait = self.RECUT_SECONDS if due else min(later, default=None)
                self._cond.wait(wait)


_KEEPER = _DeadlineKeeper()


def _reset_keeper() -> None:
    # a forked child (Celery, the LocalExecutor) has no keeper thread, and its lock may have been held
    global _KEEPER
    _KEEPER = _DeadlineKeeper()


os.register_at_fork(after_in_child=_reset_keeper)


def _watch(sock: socket.socket | None) -> None:
    watch = getattr(_LOCAL, "watch", None)
    if watch is not None:
        watch.attach(sock)


class _WatchedConnection:
    """Connection mixin: the socket of every connection opened during a call goes to its watchdog (the
    response keeps reading from it even after ``Connection: close`` detached it from the connection)."""

    sock: socket.socket | None

    def _new_conn(self) -> socket.socket:
        # watched as soon as it exists: urllib3 reads a proxy's CONNECT reply and does the TLS handshake
        # inside connect(), before it returns. (Name resolution comes before any socket and is bounded by
        # the resolver's own timeouts, not by the deadline.)
        sock: socket.socket = super()._new_conn()  # type: ignore[misc]
        _watch(sock)
        return sock

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        _watch(self.sock)  # the TLS-wrapped socket as well


class _WatchedHTTPConnection(_WatchedConnection, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_WatchedConnection, HTTPSConnection):
    pass


class _WatchedPool:
    """Pool mixin: a kept-alive connection a call reuses goes to its watchdog too."""

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)  # type: ignore[misc]
        _watch(getattr(conn, "sock", None))
        return conn


class _WatchedHTTPPool(_WatchedPool, HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(_WatchedPool, HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class WatchedAdapter(HTTPAdapter):
    """requests adapter whose connections (direct or through an HTTP proxy) are watched."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOLS)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if not proxy.lower().startswith("socks"):  # SOCKS pools are their own classes: reply still bounded
            manager.pool_classes_by_scheme = dict(_POOLS)
        return manager


def header_charset(content_type: str | None) -> str | None:
    """The ``charset`` a Content-Type names, ``None`` when it names none (requests would say ISO-8859-1)."""
    match = _CHARSET_RE.search(content_type or "")
    return match.group(1) if match else None


def decode_body(data: bytes, encoding: str | None) -> str:
    """``data`` as text, as an XML parser reads it: a BOM first, then the HTTP charset ``encoding``, then the
    body's XML declaration (UTF-16/UTF-32 ones included), then UTF-8; a name no codec knows is skipped."""
    sniffed = sniff_encoding(data)
    bom = sniffed if sniffed in ("utf-8-sig", "utf-16", "utf-32") else None
    for candidate in (bom, encoding, sniffed, "utf-8"):
        if not candidate:
            continue
        try:
            return data.decode(candidate, "replace")
        except LookupError:  # a hostile or broken charset name
            continue
    return data.decode("utf-8", "replace")


def printable(text: str, limit: int = 300) -> str:
    """``text`` for a message: control and bidi characters escaped, cut at ``limit`` characters."""
    shown = _UNPRINTABLE_RE.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    return shown if len(shown) <= limit else shown[:limit] + "…"


class BoundedTransport(Transport):
    """zeep transport for one endpoint: total deadline, bounded streamed reply, no redirects, redaction.

    :param session: the requests session (gets a :class:`WatchedAdapter`)
    :param timeout: seconds for the whole call, and for each connect and read
    :param max_reply_bytes: a reply larger than this is refused while reading
    :param redactor: cuts the 验证码 out of every reply byte
    """

    def __init__(
        self,
        *,
        session: requests.Session,
        timeout: float,
        max_reply_bytes: int = MAX_REPLY_BYTES,
        redactor: Redactor = REDACTOR,
    ) -> None:
        super().__init__(session=session, timeout=timeout, operation_timeout=timeout)
        adapter = WatchedAdapter()
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        self.deadline_seconds = timeout
        self.max_reply_bytes = max_reply_bytes
        self.redactor = redactor
        self.last_status: int | None = None
        self.last_body: bytes | None = None  # redacted, at most max_reply_bytes
        self.last_encoding: str | None = None

    def load(self, url: str) -> bytes:
        """zeep asks for this only for documents the packaged WSDL does not hold: never fetched."""
        raise TransportError(f"refusing to load {printable(url)}: the WSDL comes from the package only")

    def post(self, address: str, message: Any, headers: Any) -> requests.Response:
        """POST ``message`` within the deadline and return the whole, redacted reply."""
        self.last_status, self.last_body, self.last_encoding = None, None, None
        if self.logger.isEnabledFor(logging.DEBUG):  # the record factory redacts the 验证码
            text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
            self.logger.debug("HTTP Post to %s:\n%s", address, text)
        headers = {**headers, "Accept-Encoding": "identity"}
        with _Watchdog(time.monotonic() + self.deadline_seconds) as watch:
            try:
                response = self._post(address, message, headers, watch)
            except requests.RequestException as err:
                if watch.fired:
                    raise self._deadline_error(address, sent=watch.connected) from err
                raise
        if self.logger.isEnabledFor(logging.DEBUG):
            body = decode_body(response.content, self.last_encoding)
            self.logger.debug("HTTP Response from %s (status: %d):\n%s", address, response.status_code, body)
        return response

    def _post(self, address: str, message: Any, headers: Any, watch: _Watchdog) -> requests.Response:
        remaining = max(0.001, watch.deadline - time.monotonic())
        response = self.session.post(
            address,
            data=message,
            headers=headers,
            # the per-read timeout outlasts the deadline: the watchdog decides, with one message
            timeout=(min(self.deadline_seconds, remaining), self.deadline_seconds + 1),
            stream=True,
            allow_redirects=False,
        )
        try:
            self.last_status = response.status_code
            self.last_encoding = header_charset(response.headers.get("Content-Type"))
            if 300 <= response.status_code < 400:
                raise self._redirect_error(address, response)
            body = self._read(address, response, watch)
        except BaseException:
            response.close()
            raise
        response._content = body
        response._content_consumed = True  # type: ignore[union-attr]
        response.close()  # the whole body was read: the connection goes back to the pool
        return response

    def _read(self, address: str, response: requests.Response, watch: _Watchdog) -> bytes:
        """The whole body, or an error as soon as it passes the size limit or the deadline."""
        limit = self.max_reply_bytes
        header = response.headers.get("Content-Length", "").strip()
        declared = int(header) if header.isdigit() else 0
        too_big = declared > limit
        buf = bytearray()
        try:
            for chunk in response.iter_content(CHUNK_BYTES):
                if len(buf) <= limit:
                    buf += chunk
                if watch.expired:
                    raise self._deadline_error(address, sent=True, head=buf)
                if len(buf) > limit or (too_big and len(buf) >= KEEP_BYTES):
                    raise self._too_big_error(address, buf, max(len(buf), declared))
        except requests.RequestException as err:
            if watch.fired:
                raise self._deadline_error(address, sent=True, head=buf) from err
            raise
        if watch.fired:  # the watchdog's shutdown can end a body without Content-Length "cleanly"
            raise self._deadline_error(address, sent=True, head=buf)
        self.last_body = self.redactor.bytes(bytes(buf))
        return self.last_body

    def kept_text(self, head: bytearray | bytes, marker: str | None = None) -> str:
        """The first :data:`KEEP_BYTES` of a reply as text for the audit, redacted, the ``marker`` (why and
        where it was cut) first when given, so it survives any later cap."""
        # redacted before the cut, so a secret straddling the cut leaves no prefix behind
        clean = self.redactor.bytes(bytes(head[: KEEP_BYTES + 4096]))[:KEEP_BYTES]
        text = decode_body(clean, self.last_encoding)
        return self.redactor.text(f"[cut by cdyb-jxc: {marker}]\n{text}" if marker else text)

    def _deadline_error(
        self, address: str, *, sent: bool, head: bytearray | bytes = b""
    ) -> TransportError | InDoubtError:
        seconds = f"{self.deadline_seconds:g}s"
        if not sent:
            return TransportError(f"could not reach {address} within the {seconds} deadline")
        return InDoubtError(
            f"no complete reply from {address} within the {seconds} deadline"
            " (connection cut; the rows may have been stored)",
            reply_text=self.kept_text(head, f"deadline passed after {len(head)} bytes"),
        )

    def _too_big_error(self, address: str, head: bytearray, declared: int) -> InDoubtError:
        limit, read = self.max_reply_bytes, len(head)
        said = f"; it announced {declared} bytes" if declared > read else ""
        kept = min(read, KEEP_BYTES)
        marker = f"reply refused over the {limit}-byte limit; {read} bytes read, first {kept} kept"
        return InDoubtError(
            f"unreadable reply from {address}: reply larger than the {limit}-byte limit{said};"
            f" refused after reading {read} bytes",
            reply_text=self.kept_text(head, marker),
        )

    def _redirect_error(self, address: str, response: requests.Response) -> InDoubtError:
        location = response.headers.get("Location", "")
        shown = printable(self.redactor.text(location)) if location else "(no Location header)"
        return InDoubtError(
            f"HTTP {response.status_code} redirect from {address} to {shown} refused: the request carries"
            " the 交易访问验证码 and is never sent anywhere else; check the endpoint URL"
        )

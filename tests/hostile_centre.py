"""A hostile centre: a real HTTP SOAP server on 127.0.0.1 that misbehaves on purpose, for tests and benches.

Usage::

    with HostileCentre() as centre:                     # or centre = HostileCentre().start(); centre.stop()
        centre.set_mode("echo", where="retmsg", form="percent")
        ... point a connection's host at centre.url ...
        centre.requests                                  # POSTs received

Modes (:meth:`HostileCentre.set_mode`):

``accept``         every row saved (retcode 1): a sanity baseline.
``echo``           the request is echoed back, its 交易访问验证码 in the given ``form``, ``where``:
                   ``fault`` (HTTP 500 SOAP Fault), ``retmsg`` (whole call rejected, retcode -1),
                   ``errmsg`` (every row listed as failed with the echo as its error text), ``html``
                   (HTTP 500 HTML page). ``form``: ``plain``, ``xml`` (the echo XML-escaped once more),
                   ``percent`` (UTF-8), ``percent_gbk`` (GBK bytes, lower-case hex, ``+`` for space),
                   ``charref`` (decimal/hex mix, kept as text), ``charref_markup`` (as markup: the parser
                   decodes it), ``json`` (``\\uXXXX``). ``encoding``: ``UTF-8`` (default), ``GBK``,
                   ``GB18030`` for the whole reply (and the HTTP charset).
``redirect``       HTTP ``status`` (302) to :attr:`HostileCentre.elsewhere` (another local port that records
                   whatever reaches it), the 验证码 percent-encoded in the Location's query string; or to
                   ``location`` (``""``: no Location header).
``trickle``        a valid reply, one byte every ``interval`` seconds (``Content-Length`` announced, or
                   ``chunked``).
``huge``           a ``size``-byte reply (default 200 MB), generated while it streams, never held in memory.
``slow_read``      reads the request ``chunk`` bytes every ``interval`` seconds and never answers (start the
                   centre with a small ``rcvbuf`` so the client's send really waits on it).
``contradiction``  retcode 2 without ``dataset`` and a ``retmsg_bytes`` (2 MB) ``retmsg``: says some rows
                   failed without saying which.
"""

from __future__ import annotations

import base64
import contextlib
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from xml.sax.saxutils import escape

from cdyb_jxc.simulator.server import SOAP_ENV, read_input_xml
from cdyb_jxc.wire.codec import parse_request
from cdyb_jxc.wire.profile import Profile, load_profile
from cdyb_jxc.wire.request_rows import escape as codec_escape

PATH = "/services/SjcjService"
FORMS = (
    "plain",
    "xml",
    "percent",
    "percent_gbk",
    "charref",
    "charref_markup",
    "json",
    "cdata_split",
    "percent_twice",
    "charref_no_semicolon",
    "base64",
)
# forms written as markup, not as text: the parser turns them back into the secret
MARKUP_FORMS = ("charref_markup", "cdata_split")
PLACES = ("fault", "retmsg", "errmsg", "html")
MB = 1024 * 1024


def encode_secret(secret: str, form: str) -> str:
    """``secret`` written in ``form`` (see the module doc), as it would appear in echoed text."""
    if form in ("plain", "xml"):
        return secret
    if form == "percent":
        return urllib.parse.quote(secret, safe="")
    if form == "percent_gbk":
        quoted = urllib.parse.quote_plus(secret, safe="", encoding="gbk")
        return re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), quoted)
    if form in ("charref", "charref_markup"):
        return "".join(f"&#{ord(c)};" if i % 2 else f"&#x{ord(c):X};" for i, c in enumerate(secret))
    if form == "json":
        return "".join(f"\\u{ord(c):04x}" for c in secret)
    if form == "cdata_split":  # parsing joins both halves: only the parsed text holds the secret whole
        half = len(secret) // 2
        return f"{escape(secret[:half])}<![CDATA[{secret[half:]}]]>"
    if form == "percent_twice":  # a proxy re-encoding a query string
        return urllib.parse.quote(urllib.parse.quote(secret, safe=""), safe="")
    if form == "charref_no_semicolon":  # what HTML accepts
        return "".join(f"&#{ord(c)}" for c in secret)
    if form == "base64":  # an ESB echoing what it received
        return base64.b64encode(f"<jyyzm>{secret}</jyyzm>".encode()).decode("ascii")
    raise ValueError(f"unknown form {form!r}; known: {', '.join(FORMS)}")


class _Elsewhere:
    """A bare TCP listener on another local port recording whatever reaches it (it never answers)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.connections = 0
        self.received = b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}{PATH}"

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.settimeout(0.5)
            try:
                while data := conn.recv(65536):
                    self.received += data
            except OSError:
                pass
            finally:
                conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    centre: HostileCentre
    rcvbuf: int | None = None

    def server_bind(self) -> None:
        if self.rcvbuf:  # inherited by accepted sockets: the client's send waits on our reading
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        super().server_bind()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        centre = self.server.centre
        if centre.mode == "slow_read":
            centre.requests += 1
            with contextlib.suppress(OSError):
                centre.read_slowly(self, **centre.options)
            self.close_connection = True
            return
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with centre.lock:
            centre.requests += 1
            centre.last_request = body
        with contextlib.suppress(OSError):  # the client cut the connection: what a deadline or limit is for
            centre.respond(self, body)
        self.close_connection = True

    def send_head(self, status: int, content_type: str, length: int | None, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if length is None:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(length))
        for key, value in headers.items():
            self.send_header(key.replace("_", "-"), value)
        self.send_header("Connection", "close")
        self.end_headers()

    def send_whole(self, status: int, content_type: str, body: bytes, **headers: str) -> None:
        self.send_head(status, content_type, len(body), **headers)
        self.wfile.write(body)

    def send_chunks(self, chunks: Iterator[bytes]) -> None:
        for chunk in chunks:
            if chunk:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")


class HostileCentre:
    """The hostile server; see the module doc for modes.

    :param profile: tags and namespace of the replies (the default profile when omitted)
    :param mode: the starting mode
    :param rcvbuf: receive buffer of the listening socket (small: a client's send waits on ``slow_read``)
    :param options: options of that mode
    """

    def __init__(
        self,
        profile: Profile | None = None,
        mode: str = "accept",
        *,
        rcvbuf: int | None = None,
        **options: Any,
    ) -> None:
        self.profile = profile or load_profile()
        self.rcvbuf = rcvbuf
        self.bytes_read = 0
        self.lock = threading.Lock()
        self.requests = 0
        self.last_request: bytes | None = None
        self.bytes_sent = 0
        self.mode, self.options = mode, options
        self.stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.elsewhere = _Elsewhere()

    # -- lifecycle ------------------------------------------------------------------------------------------
    def start(self) -> HostileCentre:
        server_cls = type("_HostileServer", (_Server,), {"rcvbuf": self.rcvbuf})  # read before bind
        self._server = server_cls(("127.0.0.1", 0), _Handler)
        self._server.centre = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.elsewhere.close()

    def __enter__(self) -> HostileCentre:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("HostileCentre is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}{PATH}"

    def set_mode(self, mode: str, **options: Any) -> None:
        """Switch behaviour for the following requests."""
        if not hasattr(self, f"_mode_{mode}"):
            raise ValueError(f"unknown mode {mode!r}")
        self.mode, self.options = mode, options

    # -- replies --------------------------------------------------------------------------------------------
    def respond(self, handler: _Handler, body: bytes) -> None:
        getattr(self, f"_mode_{self.mode}")(handler, body, **self.options)

    def _request(
        self, body: bytes, content_type: str = "text/xml; charset=utf-8"
    ) -> tuple[str, str, list[str]]:
        """(inner XML, 验证码, 流水号 of the rows) of a request."""
        inner = read_input_xml(self.profile, body, content_type) or ""
        parsed = parse_request(self.profile, inner)
        secret = parsed.control.get(self.profile.control_tags["verification_code"]) or ""
        serial_tag = self.profile.reply["serial_no"]
        serials = [text or "" for row in parsed.rows for tag, text in row if tag == serial_tag]
        return inner, secret, serials

    def _inner(
        self, retcode: str, retmsg: str, rows: list[tuple[str, str]] | None = None, **extra: str
    ) -> str:
        """A ``return`` document; ``retmsg`` and errmsg are inserted as markup (escape them yourself)."""
        r = self.profile.reply

        def el(tag: str, markup: str) -> str:
            return f"<{tag}>{markup}</{tag}>"

        parts = [f'<?xml version="1.0" encoding="GBK"?><{r["root"]}>', el(r["retcode"], retcode)]
        parts.append(el(r["retmsg"], retmsg))
        parts += [el(r[k], v) for k, v in extra.items()]
        if rows:
            listed = "".join(
                el(r["row"], el(r["serial_no"], escape(s)) + el(r["errmsg"], m)) for s, m in rows
            )
            parts.append(el(r["dataset"], listed))
        return "".join(parts) + f"</{r['root']}>"

    def envelope(self, inner: str, encoding: str = "UTF-8") -> bytes:
        svc = self.profile.service
        ns = svc["namespace"]
        text = (
            f'<?xml version="1.0" encoding="{encoding}"?>'
            f'<soap:Envelope xmlns:soap="{SOAP_ENV}"><soap:Body>'
            f'<ns2:{svc["operation"]}Response xmlns:ns2="{ns}"><{svc["output_part"]}>{escape(inner)}'
            f"</{svc['output_part']}></ns2:{svc['operation']}Response></soap:Body></soap:Envelope>"
        )
        return text.encode(encoding, "xmlcharrefreplace")

    def _send_xml(self, handler: _Handler, status: int, data: bytes, encoding: str = "UTF-8") -> None:
        handler.send_whole(status, f"text/xml; charset={encoding}", data)
        self.bytes_sent += len(data)

    def _mode_accept(self, handler: _Handler, body: bytes) -> None:
        _, _, serials = self._request(body)
        n = str(len(serials))
        inner = self._inner("1", f"本次上传{n}条，全部成功", succnum=n, failnum="0")
        self._send_xml(handler, 200, self.envelope(inner))

    def _echo_text(self, body: bytes, form: str) -> tuple[str, list[str]]:
        """The echo as markup for an XML (or HTML) text node, and the batch's 流水号."""
        inner, secret, serials = self._request(body)
        shown = encode_secret(secret, form)
        echoed = inner.replace(codec_escape(secret), shown) if secret else inner
        markup = escape(f"收到的请求: {echoed} 验证码={shown}")
        if form == "xml":  # the text itself is XML-escaped: a proxy that quotes the request as markup
            markup = escape(markup)
        if form in MARKUP_FORMS:  # stays markup: the parser turns it back into the secret
            markup = markup.replace(escape(shown), shown)
        return markup, serials

    def _mode_echo(
        self,
        handler: _Handler,
        body: bytes,
        where: str = "retmsg",
        form: str = "plain",
        encoding: str = "UTF-8",
        charset: str | None = None,
    ) -> None:
        """``charset`` overrides what the HTML page's Content-Type claims (a broken proxy's)."""
        markup, serials = self._echo_text(body, form)
        if where == "fault":
            data = (
                f'<?xml version="1.0" encoding="{encoding}"?>'
                f'<soap:Envelope xmlns:soap="{SOAP_ENV}"><soap:Body><soap:Fault>'
                f"<faultcode>soap:Server</faultcode><faultstring>{markup}</faultstring>"
                "</soap:Fault></soap:Body></soap:Envelope>"
            ).encode(encoding, "xmlcharrefreplace")
            if charset == "":  # no charset in the Content-Type: the body says what it is (UTF-16, …)
                handler.send_whole(500, "text/xml", data)
            else:
                self._send_xml(handler, 500, data, charset or encoding)
        elif where == "retmsg":
            inner = self._inner("-1", "【用户名或验证码错误】" + markup)
            self._send_xml(handler, 200, self.envelope(inner, encoding), encoding)
        elif where == "errmsg":
            rows = [(s, "【字段校验失败】" + markup) for s in serials]
            inner = self._inner("-1", "全部失败", rows, succnum="0", failnum=str(len(rows)))
            self._send_xml(handler, 200, self.envelope(inner, encoding), encoding)
        elif where == "html":
            page = f"<html><body><h1>500 Internal Server Error</h1><pre>{markup}</pre></body></html>"
            data = page.encode(encoding, "xmlcharrefreplace")
            handler.send_whole(500, f"text/html; charset={charset or encoding}", data)
        else:
            raise ValueError(f"unknown place {where!r}; known: {', '.join(PLACES)}")

    def _mode_counts(self, handler: _Handler, body: bytes, succnum: str = "1" + "0" * 30) -> None:
        """An "all saved" reply whose count fits no ledger column."""
        inner = self._inner("1", "全部成功", succnum=succnum, failnum="0")
        self._send_xml(handler, 200, self.envelope(inner))

    def _mode_many_rows(self, handler: _Handler, body: bytes, rows: int = 1000) -> None:
        """A reply listing ``rows`` empty rows (6 bytes each) in a CDATA section: cheap to send, costly to
        parse."""
        r, svc = self.profile.reply, self.profile.service
        inner = f"<{r['root']}><{r['retcode']}>2</{r['retcode']}><{r['dataset']}>"
        inner += f"<{r['row']}/>" * rows + f"</{r['dataset']}></{r['root']}>"
        data = (
            f'<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="{SOAP_ENV}"><soap:Body>'
            f'<ns2:{svc["operation"]}Response xmlns:ns2="{svc["namespace"]}"><{svc["output_part"]}>'
            f"<![CDATA[{inner}]]></{svc['output_part']}></ns2:{svc['operation']}Response>"
            "</soap:Body></soap:Envelope>"
        ).encode()
        self._send_xml(handler, 200, data)

    def _mode_redirect(
        self, handler: _Handler, body: bytes, status: int = 302, location: str | None = None
    ) -> None:
        """``location`` replaces the default target (``""``: no Location header at all)."""
        _, secret, _ = self._request(body)
        if location is None:
            location = f"{self.elsewhere.url}?jyfwyzm={urllib.parse.quote(secret, safe='')}"
        headers = {"Location": location} if location else {}
        handler.send_whole(status, "text/html", b"<html>moved</html>", **headers)

    def _mode_trickle(
        self, handler: _Handler, body: bytes, interval: float = 2.0, chunked: bool = False
    ) -> None:
        _, _, serials = self._request(body)
        n = str(len(serials))
        data = self.envelope(self._inner("1", "ok", succnum=n, failnum="0"))
        handler.send_head(200, "text/xml; charset=UTF-8", None if chunked else len(data))
        for i in range(len(data)):
            if self.stopping.wait(interval):
                return
            byte = data[i : i + 1]
            handler.wfile.write(b"1\r\n%s\r\n" % byte if chunked else byte)
            handler.wfile.flush()
            self.bytes_sent += 1

    def _mode_huge(
        self, handler: _Handler, body: bytes, size: int = 200 * 1000 * 1000, chunked: bool = True
    ) -> None:
        head = self.envelope(self._inner("1", "@@FILL@@")).split(b"@@FILL@@")
        filler = size - len(head[0]) - len(head[1])
        handler.send_head(200, "text/xml; charset=UTF-8", None if chunked else size)

        def chunks() -> Iterator[bytes]:
            yield head[0]
            block = b"x" * MB
            left = filler
            while left > 0 and not self.stopping.is_set():
                piece = block[: min(left, MB)]
                left -= len(piece)
                self.bytes_sent += len(piece)
                yield piece
            yield head[1]

        if chunked:
            handler.send_chunks(chunks())
        else:
            for chunk in chunks():
                handler.wfile.write(chunk)

    def _mode_slow_read(self, handler: _Handler, body: bytes, **options: Any) -> None:
        raise AssertionError("slow_read is handled before the body is read")

    def read_slowly(self, handler: _Handler, chunk: int = 64, interval: float = 0.05) -> None:
        """Read the request ``chunk`` bytes at a time, never answer."""
        left = int(handler.headers.get("Content-Length") or 0)
        while left > 0 and not self.stopping.wait(interval):
            data = handler.rfile.read1(min(chunk, left)) if hasattr(handler.rfile, "read1") else b""
            if not data:
                return
            left -= len(data)
            self.bytes_read += len(data)
        self.stopping.wait(60)

    def _mode_contradiction(self, handler: _Handler, body: bytes, retmsg_bytes: int = 2 * MB) -> None:
        self._request(body)
        unit = "系统繁忙，部分记录处理失败。"
        retmsg = unit * (retmsg_bytes // len(unit.encode("utf-8")) + 1)
        self._send_xml(handler, 200, self.envelope(self._inner("2", retmsg)))


def wait_for(predicate: Any, timeout: float = 5.0) -> bool:
    """Poll ``predicate`` until true or ``timeout`` seconds passed."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())

"""SOAP 1.1 over HTTP for the simulated centre: WSDL, envelopes, SOAP Faults and injected transport faults."""

from __future__ import annotations

import json
import logging
import re
import socket
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from lxml import etree

from cdyb_jxc.exceptions import CodecError
from cdyb_jxc.simulator.centre import Centre
from cdyb_jxc.simulator.faults import FaultPlan, FaultSpecError
from cdyb_jxc.simulator.store import SimulatorStore
from cdyb_jxc.wire.profile import Profile
from cdyb_jxc.wire.wsdl import render_wsdl
from cdyb_jxc.wire.xmlsafe import parse_body, parse_text

log = logging.getLogger(__name__)

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
MAX_BODY = 32 * 1024 * 1024
HTML_ERROR = (
    "<html><head><title>500 Internal Server Error</title></head>"
    "<body><h1>Internal Server Error</h1><p>Proxy Error</p></body></html>"
)


def _envelope(body_child: etree._Element, encoding: str) -> bytes:
    env = etree.Element(f"{{{SOAP_ENV}}}Envelope", nsmap={"soap": SOAP_ENV})
    body = etree.SubElement(env, f"{{{SOAP_ENV}}}Body")
    body.append(body_child)
    envelope: bytes = etree.tostring(env, encoding=encoding, xml_declaration=True)
    return envelope


def soap_fault(message: str, code: str = "soap:Server") -> bytes:
    fault = etree.Element(f"{{{SOAP_ENV}}}Fault")
    etree.SubElement(fault, "faultcode").text = code
    etree.SubElement(fault, "faultstring").text = message
    return _envelope(fault, "UTF-8")


def response_envelope(profile: Profile, returned: str, encoding: str = "UTF-8") -> bytes:
    svc = profile.service
    wrapper = etree.Element(
        f"{{{svc['namespace']}}}{svc['operation']}Response", nsmap={"ns2": svc["namespace"]}
    )
    etree.SubElement(wrapper, svc["output_part"]).text = returned
    return _envelope(wrapper, encoding)


class SoapRequestError(Exception):
    """The envelope is malformed or names an unknown operation: HTTP 500 with a SOAP Fault."""


def read_input_xml(profile: Profile, body: bytes, content_type: str) -> str | None:
    """Extract ``inputXml`` from a request envelope (charset from HTTP first, then the XML declaration)."""
    charset = None
    for part in content_type.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == "charset" and value:
            charset = value.strip("\"'")
    try:
        if charset:
            try:
                text = body.decode(charset)
            except (LookupError, UnicodeDecodeError) as err:
                raise SoapRequestError(f"envelope cannot be decoded as {charset}") from err
            root = parse_text(text, "SOAP envelope")
        else:
            root = parse_body(body, "SOAP envelope")
    except CodecError as err:
        raise SoapRequestError(str(err)) from err
    if root.tag != f"{{{SOAP_ENV}}}Envelope":
        raise SoapRequestError("not a SOAP 1.1 Envelope")
    body_el = root.find(f"{{{SOAP_ENV}}}Body")
    if body_el is None:
        raise SoapRequestError("SOAP Envelope has no Body")
    call = next((c for c in body_el if isinstance(c.tag, str)), None)
    svc = profile.service
    if call is None or call.tag != f"{{{svc['namespace']}}}{svc['operation']}":
        name = etree.QName(call).text if call is not None else "nothing"
        raise SoapRequestError(f"Unknown operation: {name}")
    for child in call:
        if isinstance(child.tag, str) and etree.QName(child).localname == svc["input_part"]:
            input_xml: str | None = child.text
            return input_xml
    return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body are written separately: without this each reply waits for the peer's delayed ACK
    disable_nagle_algorithm = True
    server: SimulatorHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _drop(self) -> None:
        """Close the connection abruptly (RST), without any reply."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass

    def _is_loopback(self) -> bool:
        return self.client_address[0] in ("127.0.0.1", "::1") or self.client_address[0].startswith("127.")

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        app = self.server.app
        if parts.path == app.profile.service["path"] and parts.query.lower().startswith("wsdl"):
            bound = self.server.server_address
            host = self.headers.get("Host") or f"{bound[0]!s}:{bound[1]}"
            text = render_wsdl(app.profile, f"http://{host}{parts.path}")
            self._send(200, text.encode("utf-8"), "text/xml; charset=UTF-8")
        elif parts.path == "/admin/stats" and self._is_loopback():
            stats = {
                "faults": app.faults.stats(),
                "stored_rows": app.store.count_rows(),
                "requests": app.requests,
            }
            self._send(200, json.dumps(stats).encode(), "application/json")
        else:
            self._send(404, b"not found", "text/plain")

    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        app = self.server.app
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._send(413, b"request too large", "text/plain")
            self.close_connection = True
            return
        body = self.rfile.read(length)
        if parts.path == "/admin/faults" and self._is_loopback():
            self._admin_faults(body)
        elif parts.path == app.profile.service["path"]:
            try:
                self._soap(body)
            except Exception:
                log.exception("simulator failed on a request")
                self._send(500, soap_fault("internal simulator error"), "text/xml; charset=UTF-8")
        else:
            self._send(404, b"not found", "text/plain")

    def _admin_faults(self, body: bytes) -> None:
        try:
            spec = json.loads(body or b"{}")
            self.server.app.set_faults(str(spec.get("spec", "")), int(spec.get("seed", 0)))
        except (ValueError, FaultSpecError) as err:
            self._send(400, str(err).encode(), "text/plain")
            return
        self._send(200, b"ok", "text/plain")

    def _soap(self, body: bytes) -> None:
        app = self.server.app
        with app.counter_lock:
            app.requests += 1
        delay, fault = app.faults.next_call()
        if delay:
            time.sleep(delay)
        try:
            input_xml = read_input_xml(app.profile, body, self.headers.get("Content-Type", ""))
        except SoapRequestError as err:
            self._send(500, soap_fault(str(err), "soap:Client"), "text/xml; charset=UTF-8")
            return
        if fault == "drop_before_store":
            self._drop()
            return
        if fault == "soap_fault":
            self._send(500, soap_fault("java.lang.NullPointerException"), "text/xml; charset=UTF-8")
            return
        if fault == "html_500":
            self._send(500, HTML_ERROR.encode(), "text/html; charset=UTF-8")
            return
        returned = app.centre.handle(input_xml)
        if fault:
            log.info("fault %s injected after processing", fault)
        self._answer(fault, returned)

    def _answer(self, fault: str | None, returned: str) -> None:
        """Send the centre's ``returned`` text, or what ``fault`` makes of it once the rows are stored."""
        app = self.server.app
        if fault == "drop_after_store":
            self._drop()
        elif fault == "empty_200":
            self._send(200, b"", "text/xml; charset=UTF-8")
        elif fault == "malformed_inner":
            self._send(
                200, response_envelope(app.profile, returned[: len(returned) // 2]), "text/xml; charset=UTF-8"
            )
        elif fault == "missing_output":
            bad = returned.replace(f"<{app.profile.reply['root']}>", "<result>").replace(
                f"</{app.profile.reply['root']}>", "</result>"
            )
            self._send(200, response_envelope(app.profile, bad), "text/xml; charset=UTF-8")
        elif fault == "no_dataset":
            tag = re.escape(app.profile.reply["dataset"])
            bare = re.sub(rf"\s*(?:<{tag}>.*?</{tag}>|<{tag}\s*/>)", "", returned, flags=re.DOTALL)
            self._send(200, response_envelope(app.profile, bare), "text/xml; charset=UTF-8")
        elif fault == "gbk_envelope":
            self._send(200, response_envelope(app.profile, returned, "GBK"), "text/xml; charset=GBK")
        else:
            self._send(200, response_envelope(app.profile, returned), "text/xml; charset=UTF-8")


class SimulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], app: Simulator) -> None:
        self.app = app
        super().__init__(address, _Handler)


class Simulator:
    """The whole simulated centre: store, rules, faults and the HTTP server.

    :param profile: the interface profile
    :param store: the persistent store
    :param environment: ``test`` or ``prod``
    :param host: address to bind (loopback by default)
    :param port: port to bind; 0 picks a free one
    :param faults: fault spec (see :mod:`cdyb_jxc.simulator.faults`)
    :param seed: fault seed
    """

    def __init__(
        self,
        profile: Profile,
        store: SimulatorStore,
        *,
        environment: str = "test",
        host: str = "127.0.0.1",
        port: int = 0,
        faults: str = "",
        seed: int = 0,
        centre: Centre | None = None,
    ) -> None:
        self.profile = profile
        self.store = store
        self.centre = centre or Centre(profile, store, environment)
        self.faults = FaultPlan(faults, seed)
        self.requests = 0
        self.counter_lock = threading.Lock()
        self.httpd = SimulatorHTTPServer((host, port), self)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}{self.profile.service['path']}"

    def set_faults(self, spec: str, seed: int = 0) -> None:
        self.faults = FaultPlan(spec, seed)

    def serve_forever(self) -> None:
        self.httpd.serve_forever(poll_interval=0.2)

    def start(self) -> Simulator:
        """Serve in a background thread (tests, benchmarks)."""
        self._thread = threading.Thread(target=self.serve_forever, name="cdyb-jxc-simulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

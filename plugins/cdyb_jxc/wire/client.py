"""SOAP client of the centre (zeep), without Airflow: one call in, one typed reply out.

Transport failures are sorted into the three kinds of :mod:`cdyb_jxc.exceptions`: not sent (retryable),
sent but no readable reply (in doubt), refused by configuration (not retryable).

One client may be called from several threads at once (requests in flight): each thread gets its own
``requests`` session, transport and zeep service, so that one call's status, body and deadline never mix
with another's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import requests
from urllib3.exceptions import NewConnectionError

from cdyb_jxc.exceptions import CallRejectedError, CodecError, InDoubtError, TransportError
from cdyb_jxc.safety.redaction import REDACTOR, register_secret
from cdyb_jxc.safety.textcap import REPLY_MAX, cap
from cdyb_jxc.wire.codec import BatchReply, RowFailure, build_request, parse_reply, redact_request
from cdyb_jxc.wire.profile import Profile
from cdyb_jxc.wire.transport import KEEP_BYTES, MAX_REPLY_BYTES, BoundedTransport
from cdyb_jxc.wire.wsdl import wsdl_document

log = logging.getLogger(__name__)


# zeep would log whole envelopes (with the 验证码) at DEBUG on this logger: kept at INFO, and should someone
# turn it up anyway (logging config), every log record of the process passes the redactor
# (installed by register_secret).
logging.getLogger("zeep.transports").setLevel(logging.INFO)


@dataclass(frozen=True)
class Exchange:
    """One request and its reply.

    :param request: the request with the 验证码 redacted
    :param reply_text: the ``return`` string as received, 验证码 redacted
    :param reply: the parsed reply
    :param seconds: wall time of the call
    """

    request: str
    reply_text: str
    reply: BatchReply
    seconds: float


@dataclass(frozen=True)
class Request:
    """One batch's ``inputXml``, built once: what goes out, and the same text for the audit.

    :param audit: the request with the 验证码 redacted (what the ledger keeps)
    :param text: the request as sent (holds the 验证码: never logged, never stored)
    """

    audit: str
    text: str = field(repr=False)


def redacted_reply(reply: BatchReply) -> BatchReply:
    """``reply`` with every text it holds redacted: parsing joins what markup split (a CDATA section inside
    the 验证码), so the parsed texts pass the redaction point too, not only the bytes they came from."""
    failures = tuple(RowFailure(REDACTOR.text(f.serial_no), REDACTOR.text(f.message)) for f in reply.failures)
    return replace(
        reply, retcode=REDACTOR.text(reply.retcode), retmsg=REDACTOR.text(reply.retmsg), failures=failures
    )


def _not_sent(err: BaseException) -> bool:
    """True when the request certainly never reached the server (connection refused or connect timeout)."""
    if isinstance(err, requests.ConnectTimeout):
        return True
    seen: set[int] = set()
    cur: BaseException | None = err
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, NewConnectionError | ConnectionRefusedError):
            return True
        for arg in getattr(cur, "args", ()):
            if isinstance(arg, NewConnectionError | ConnectionRefusedError):
                return True
            reason = getattr(arg, "reason", None)
            if isinstance(reason, NewConnectionError | ConnectionRefusedError):
                return True
        cur = cur.__cause__ or cur.__context__
    return False


def _session_for(url: str, verify: bool | str) -> requests.Session:
    """A session whose environment settings (proxies, CA bundle, ``.netrc``) for ``url`` are read once:
    ``requests`` reads them at every call otherwise, a few percent of an upload's time."""
    session = requests.Session()
    session.verify = verify
    settings = session.merge_environment_settings(url, {}, None, verify, None)
    auth = requests.utils.get_netrc_auth(url)
    session.trust_env = False
    session.proxies.update(settings["proxies"])
    session.verify, session.cert = settings["verify"], settings["cert"]
    if auth:
        session.auth = auth
    return session


class CentreClient:
    """Calls the profile's operation (``callBusiness``) on one endpoint with one institution's credentials.

    :param profile: the interface profile
    :param endpoint: the SOAP endpoint URL
    :param user: 交易访问用户
    :param verification_code: 交易访问验证码 (kept in memory only, redacted from everything else)
    :param institution_code: 定点机构编码
    :param timeout: seconds for the whole call (connect + send + whole reply), and for each connect or read
    :param verify: verify TLS certificates
    :param max_reply_bytes: a reply larger than this is refused while it is read
    """

    def __init__(
        self,
        profile: Profile,
        *,
        endpoint: str,
        user: str,
        verification_code: str,
        institution_code: str,
        timeout: float = 60.0,
        verify: bool = True,
        max_reply_bytes: int = MAX_REPLY_BYTES,
    ) -> None:
        self.profile = profile
        self.endpoint = endpoint
        self.user = user
        self._secret = verification_code
        register_secret(verification_code)
        self.institution_code = institution_code
        self.timeout = timeout
        self.verify = verify
        self.max_reply_bytes = max_reply_bytes
        self._local = threading.local()  # this thread's session, transport and service
        self._sessions: list[requests.Session] = []  # every thread's, for close()
        self._sessions_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CentreClient(endpoint={self.endpoint!r}, institution={self.institution_code!r})"

    @property
    def session(self) -> requests.Session:
        """This thread's session (kept alive between its calls)."""
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = _session_for(self.endpoint, self.verify)
            with self._sessions_lock:
                self._sessions.append(session)
            self._local.session = session
        return session

    @property
    def transport(self) -> BoundedTransport:
        """This thread's transport: its last status and body are those of this thread's last call."""
        transport: BoundedTransport | None = getattr(self._local, "transport", None)
        if transport is None:
            transport = BoundedTransport(
                session=self.session, timeout=self.timeout, max_reply_bytes=self.max_reply_bytes
            )
            self._local.transport = transport
        return transport

    def _used_transport(self) -> BoundedTransport | None:
        return getattr(self._local, "transport", None)

    @property
    def last_status(self) -> int | None:
        """HTTP status of this thread's last reply (zeep hides it behind its fault handling)."""
        transport = self._used_transport()
        return transport.last_status if transport is not None else None

    @property
    def service(self) -> Any:
        """This thread's zeep service proxy (built once per thread)."""
        service = getattr(self._local, "service", None)
        if service is None:
            service = self._local.service = self._new_service()
        return service

    def _new_service(self) -> Any:
        """A zeep service proxy, built from the packaged WSDL (in memory) with the endpoint overridden."""
        from zeep import Client, Settings

        svc = self.profile.service
        # huge text nodes are read whole: the transport already refused any reply over its byte limit
        settings = Settings(
            strict=False, forbid_dtd=True, forbid_entities=True, forbid_external=True, xml_huge_tree=True
        )
        client = Client(wsdl_document(self.profile), transport=self.transport, settings=settings)
        binding = f"{{{svc['namespace']}}}{svc['service_name']}SoapBinding"
        return client.create_service(binding, self.endpoint)

    def close(self) -> None:
        """Close every thread's session."""
        with self._sessions_lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()

    def build(self, txn_key: str, rows: Sequence[Mapping[str, str | None]]) -> str:
        return build_request(
            self.profile,
            self.profile.transaction(txn_key),
            rows,
            user=self.user,
            verification_code=self._secret,
            institution_code=self.institution_code,
        )

    def _doubt(self, message: str) -> InDoubtError:
        """An in-doubt error (message redacted) carrying the reply's head, redacted, for the audit."""
        transport = self._used_transport()
        body = transport.last_body if transport is not None else None
        if transport is None or not body:
            return InDoubtError(REDACTOR.text(message))
        cut = f"{len(body)} bytes, first {KEEP_BYTES} kept" if len(body) > KEEP_BYTES else None
        return InDoubtError(REDACTOR.text(message), reply_text=transport.kept_text(body, cut))

    def call(self, input_xml: str) -> str | None:
        """Send one ``inputXml`` and return the ``return`` string (redacted). Raises the transport
        exceptions; every message is redacted."""
        from zeep.exceptions import (
            DTDForbidden,
            EntitiesForbidden,
            ExternalReferenceForbidden,
            Fault,
            XMLSyntaxError,
        )
        from zeep.exceptions import TransportError as ZeepTransportError

        service = self.service
        url = self.endpoint
        try:
            operation = service[self.profile.operation]  # the profile names it, as the WSDL does
            text = operation(**{self.profile.service["input_part"]: input_xml})
        except requests.RequestException as err:
            if _not_sent(err):
                raise TransportError(f"could not reach {url}: {type(err).__name__}") from err
            raise self._doubt(f"reply lost from {url}: {type(err).__name__}") from err
        except Fault as err:
            if err.code is None and err.message == "Unknown fault occured":  # zeep's text for a non-SOAP body
                status = self.last_status or 500
                if 400 <= status < 500:
                    raise CallRejectedError(f"HTTP {status} from {url}; check the endpoint URL") from err
                raise self._doubt(f"HTTP {status} from {url} without a SOAP reply") from err
            raise self._doubt(f"SOAP Fault from {url}: {err.message}") from err
        except ZeepTransportError as err:
            if 400 <= err.status_code < 500:
                raise CallRejectedError(f"HTTP {err.status_code} from {url}; check the endpoint URL") from err
            raise self._doubt(f"HTTP {err.status_code} from {url} without a SOAP reply") from err
        except (XMLSyntaxError, ValueError) as err:
            raise self._doubt(f"unreadable reply from {url}: {type(err).__name__}") from err
        except (DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden) as err:
            what = "SOAP envelope contains a DOCTYPE or entity declaration; refused"
            raise self._doubt(f"unreadable reply from {url}: {what}") from err
        except AttributeError as err:
            # zeep's lenient parser yields no document at all for a body that is not XML (text/plain pages)
            raise self._doubt(f"unreadable reply from {url}: not an XML document") from err
        # the body was redacted before zeep parsed it; this catches forms only visible once parsed
        return REDACTOR.text(text) if isinstance(text, str) else text

    def prepare(self, txn_key: str, rows: Sequence[Mapping[str, str | None]]) -> Request:
        """Build the request of one batch of wire rows of ``txn_key``, and its audit copy (验证码 redacted),
        once: :meth:`send_request` sends exactly this text."""
        text = self.build(txn_key, rows)
        return Request(REDACTOR.text(redact_request(self.profile, text)), text)

    def send(self, txn_key: str, rows: Sequence[Mapping[str, str | None]]) -> Exchange:
        """Send one batch of wire rows of ``txn_key`` and parse the reply (see :meth:`send_request`)."""
        return self.send_request(self.prepare(txn_key, rows))

    def send_request(self, request: Request) -> Exchange:
        """Send a request built by :meth:`prepare` and parse the reply. Safe to call from several threads.

        Raises :class:`TransportError` (not sent), :class:`InDoubtError` (sent, no readable reply, or no
        complete reply within the deadline) or :class:`CallRejectedError` (endpoint refuses at HTTP level).
        A whole-call rejection by the centre is returned, not raised: see
        :attr:`BatchReply.whole_call_rejected`.
        """
        started = time.perf_counter()
        text = self.call(request.text)
        seconds = time.perf_counter() - started
        try:
            reply = redacted_reply(parse_reply(self.profile, text))
        except CodecError as err:
            # text was redacted by call(); capped as the batch's audit keeps it
            kept = None if text is None else cap(text, REPLY_MAX)
            message = REDACTOR.text(f"unreadable reply from {self.endpoint}: {err}")
            raise InDoubtError(message, reply_text=kept) from err
        return Exchange(request.audit, text or "", reply, seconds)

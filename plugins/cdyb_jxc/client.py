"""SOAP client of the centre (zeep), without Airflow: one call in, one typed reply out.

Transport failures are sorted into the three kinds of :mod:`cdyb_jxc.exceptions`: not sent (retryable),
sent but no readable reply (in doubt), refused by configuration (not retryable).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from xml.sax.saxutils import escape as xml_escape

import requests
from urllib3.exceptions import NewConnectionError

from cdyb_jxc.codec import REDACTED, BatchReply, build_request, parse_reply, redact_request
from cdyb_jxc.codec import escape as codec_escape
from cdyb_jxc.exceptions import CallRejectedError, CodecError, InDoubtError, TransportError
from cdyb_jxc.profile import Profile
from cdyb_jxc.wsdl import wsdl_file

log = logging.getLogger(__name__)


class _RedactSecrets(logging.Filter):
    """Replaces every known 验证码 (plain and XML-escaped) in a record's message with the redaction mark."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def add(self, secret: str) -> None:
        if len(secret) >= 4:  # shorter values would mangle ordinary text; the centre's codes are longer
            inner = codec_escape(secret)  # as written inside inputXml
            self.secrets.update({secret, inner, xml_escape(inner), xml_escape(secret)})

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            if any(s in message for s in self.secrets):
                for secret in sorted(self.secrets, key=len, reverse=True):
                    message = message.replace(secret, REDACTED)
                record.msg, record.args = message, None
        return True


# zeep logs whole envelopes (with the 验证码) at DEBUG on this logger: kept at INFO, and should someone
# turn it up anyway (logging config), the 验证码 is cut out of every record.
_ZEEP_TRANSPORT_LOG = logging.getLogger("zeep.transports")
_ZEEP_TRANSPORT_LOG.setLevel(logging.INFO)
_REDACT = _RedactSecrets()
_ZEEP_TRANSPORT_LOG.addFilter(_REDACT)


@dataclass(frozen=True)
class Exchange:
    """One request and its reply.

    :param request: the request with the 验证码 redacted
    :param reply_text: the ``return`` string as received
    :param reply: the parsed reply
    :param seconds: wall time of the call
    """

    request: str
    reply_text: str
    reply: BatchReply
    seconds: float


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


class CentreClient:
    """Calls ``callBusiness`` on one endpoint with one institution's credentials.

    :param profile: the interface profile
    :param endpoint: the SOAP endpoint URL
    :param user: 交易访问用户
    :param verification_code: 交易访问验证码 (kept in memory only)
    :param institution_code: 定点机构编码
    :param timeout: seconds for connect and for the whole operation
    :param verify: verify TLS certificates
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
    ) -> None:
        self.profile = profile
        self.endpoint = endpoint
        self.user = user
        self._secret = verification_code
        _REDACT.add(verification_code)
        self.institution_code = institution_code
        self.timeout = timeout
        self.verify = verify
        self.last_status: int | None = None

    def __repr__(self) -> str:
        return f"CentreClient(endpoint={self.endpoint!r}, institution={self.institution_code!r})"

    @cached_property
    def session(self) -> requests.Session:
        session = requests.Session()
        session.verify = self.verify
        return session

    @cached_property
    def service(self) -> Any:
        """The zeep service proxy, built from the packaged WSDL with the endpoint overridden."""
        from zeep import Client, Settings
        from zeep.transports import Transport

        client_self = self

        class RecordingTransport(Transport):
            """Keeps the HTTP status of the last reply, which zeep hides behind its fault handling."""

            def post(self, address: str, message: Any, headers: Any) -> Any:
                client_self.last_status = None
                response = super().post(address, message, headers)
                client_self.last_status = response.status_code
                return response

        svc = self.profile.service
        transport = RecordingTransport(
            session=self.session, timeout=self.timeout, operation_timeout=self.timeout
        )
        # huge text nodes are read whole, so an oversized reply is refused by our limit, not silently cut
        settings = Settings(
            strict=False, forbid_dtd=True, forbid_entities=True, forbid_external=True, xml_huge_tree=True
        )
        client = Client(wsdl_file(self.profile), transport=transport, settings=settings)
        binding = f"{{{svc['namespace']}}}{svc['service_name']}SoapBinding"
        return client.create_service(binding, self.endpoint)

    def close(self) -> None:
        if "session" in self.__dict__:
            self.session.close()

    def build(self, txn_key: str, rows: Sequence[Mapping[str, str | None]]) -> str:
        return build_request(
            self.profile,
            self.profile.transaction(txn_key),
            rows,
            user=self.user,
            verification_code=self._secret,
            institution_code=self.institution_code,
        )

    def call(self, input_xml: str) -> str | None:
        """Send one ``inputXml`` and return the ``return`` string. Raises the transport exceptions."""
        from zeep.exceptions import (
            DTDForbidden,
            EntitiesForbidden,
            ExternalReferenceForbidden,
            Fault,
            XMLSyntaxError,
        )
        from zeep.exceptions import TransportError as ZeepTransportError

        service = self.service
        try:
            return service.callBusiness(**{self.profile.service["input_part"]: input_xml})
        except requests.RequestException as err:
            if _not_sent(err):
                raise TransportError(f"could not reach {self.endpoint}: {type(err).__name__}") from err
            raise InDoubtError(f"reply lost from {self.endpoint}: {type(err).__name__}") from err
        except Fault as err:
            if err.code is None and err.message == "Unknown fault occured":  # zeep's text for a non-SOAP body
                status = self.last_status or 500
                if 400 <= status < 500:
                    message = f"HTTP {status} from {self.endpoint}; check the endpoint URL"
                    raise CallRejectedError(message) from err
                raise InDoubtError(f"HTTP {status} from {self.endpoint} without a SOAP reply") from err
            raise InDoubtError(f"SOAP Fault from {self.endpoint}: {err.message}") from err
        except ZeepTransportError as err:
            if 400 <= err.status_code < 500:
                raise CallRejectedError(
                    f"HTTP {err.status_code} from {self.endpoint}; check the endpoint URL"
                ) from err
            raise InDoubtError(f"HTTP {err.status_code} from {self.endpoint} without a SOAP reply") from err
        except (XMLSyntaxError, ValueError) as err:
            raise InDoubtError(f"unreadable reply from {self.endpoint}: {type(err).__name__}") from err
        except (DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden) as err:
            raise InDoubtError(
                f"unreadable reply from {self.endpoint}: SOAP envelope contains a DOCTYPE or entity"
                " declaration; refused"
            ) from err
        except AttributeError as err:
            # zeep's lenient parser yields no document at all for a body that is not XML (text/plain pages)
            raise InDoubtError(f"unreadable reply from {self.endpoint}: not an XML document") from err

    def send(self, txn_key: str, rows: Sequence[Mapping[str, str | None]]) -> Exchange:
        """Send one batch of wire rows of ``txn_key`` and parse the reply.

        Raises :class:`TransportError` (not sent), :class:`InDoubtError` (sent, no readable reply) or
        :class:`CallRejectedError` (endpoint refuses at HTTP level). A whole-call rejection by the centre is
        returned, not raised: see :attr:`BatchReply.whole_call_rejected`.
        """
        input_xml = self.build(txn_key, rows)
        started = time.perf_counter()
        text = self.call(input_xml)
        seconds = time.perf_counter() - started
        try:
            reply = parse_reply(self.profile, text)
        except CodecError as err:
            doubt = InDoubtError(f"unreadable reply from {self.endpoint}: {err}")
            doubt.reply_text = text  # type: ignore[attr-defined]
            raise doubt from err
        return Exchange(redact_request(self.profile, input_xml), text or "", reply, seconds)

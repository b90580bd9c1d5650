from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import pytest
import zeep
from zeep.transports import Transport

from cdyb_jxc.simulator.server import Simulator
from cdyb_jxc.wire.codec import BatchReply, build_request, parse_reply
from cdyb_jxc.wire.profile import Profile
from tests.conftest import INSTITUTION, SECRET, USER

Send = Callable[..., BatchReply]


@pytest.fixture
def soap_client(simulator: Simulator) -> zeep.Client:
    """A plain zeep client built from the WSDL the simulator serves."""
    return zeep.Client(f"{simulator.url}?wsdl", transport=Transport(timeout=10, operation_timeout=10))


@pytest.fixture
def send(profile: Profile, soap_client: zeep.Client) -> Send:
    """Build a request for ``txn`` from wire rows, call the simulator over SOAP, parse the reply."""

    def _send(
        txn: str,
        rows: Sequence[Mapping[str, str | None]],
        *,
        user: str = USER,
        secret: str = SECRET,
        institution: str = INSTITUTION,
    ) -> BatchReply:
        spec = profile.transaction(txn)
        xml = build_request(
            profile, spec, rows, user=user, verification_code=secret, institution_code=institution
        )
        return parse_reply(profile, soap_client.service.callBusiness(inputXml=xml))

    return _send


@pytest.fixture
def send_raw(soap_client: zeep.Client, profile: Profile) -> Callable[[str | None], BatchReply]:
    def _send_raw(input_xml: str | None) -> BatchReply:
        return parse_reply(profile, soap_client.service.callBusiness(inputXml=input_xml))

    return _send_raw

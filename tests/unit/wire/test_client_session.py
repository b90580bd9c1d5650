"""The client's HTTP session takes the environment's proxy and CA settings, read once when it is made."""

from __future__ import annotations

from cdyb_jxc.wire.client import CentreClient
from cdyb_jxc.wire.profile import load_profile
from tests.conftest import INSTITUTION, SECRET

ENDPOINT = "http://centre.example:8080/services/jxc"


def _client(verify: bool | str = True) -> CentreClient:
    return CentreClient(
        load_profile(),
        endpoint=ENDPOINT,
        user="u",
        verification_code=SECRET,
        institution_code=INSTITUTION,
        verify=verify,
    )


def test_a_proxy_named_in_the_environment_is_used_and_not_read_again(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.hospital:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    session = _client().session
    assert session.proxies["http"] == "http://proxy.hospital:3128"
    monkeypatch.setenv("HTTP_PROXY", "http://elsewhere:1")  # a call no longer reads the environment
    assert not session.trust_env
    prepared = session.merge_environment_settings(ENDPOINT, {}, None, session.verify, None)
    assert prepared["proxies"]["http"] == "http://proxy.hospital:3128"


def test_no_proxy_for_the_centre_leaves_it_direct(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.hospital:3128")
    monkeypatch.setenv("NO_PROXY", "centre.example")
    assert "http" not in _client().session.proxies


def test_a_ca_bundle_from_the_environment_applies_unless_verification_is_off(monkeypatch, tmp_path):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    assert _client().session.verify == str(bundle)
    assert _client(verify=False).session.verify is False

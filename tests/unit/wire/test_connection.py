"""Connection settings: read by name from an allowlist, every error names the field."""

from __future__ import annotations

import pytest

from cdyb_jxc.exceptions import ConnectionConfigError
from cdyb_jxc.wire.connection import build_settings, read_extra

GOOD = {
    "conn_id": "c",
    "host": "https://centre.example/services/SjcjService",
    "login": "user",
    "password": "secret-code",
    "conn_type": "cdyb_jxc",
}


def test_good_connection_is_read_with_defaults():
    s = build_settings(**GOOD, extra={"institution_code": "H1"})
    assert (s.endpoint, s.user, s.institution_code, s.environment) == (GOOD["host"], "user", "H1", "test")
    assert (s.timeout, s.batch_limit, s.verify, s.profile) == (60.0, None, True, None)
    assert s.max_in_flight == 2
    assert "secret-code" not in repr(s)


def test_extras_are_read_by_name_and_unknown_ones_are_not_forwarded():
    picked = read_extra(
        {
            "institution_code": "H1",
            "proxies": {"http": "x"},
            "extra__cdyb_jxc__timeout": "5",
            "verify": "false",
        },
        "cdyb_jxc",
    )
    assert picked == {"institution_code": "H1", "timeout": "5", "verify": "false"}


def test_ui_prefixed_extras_and_string_values_are_understood():
    s = build_settings(
        **GOOD,
        extra={
            "extra__cdyb_jxc__institution_code": "H2",
            "environment": " PROD ",
            "timeout": "12.5",
            "batch_limit": "50",
            "verify": "false",
            "profile": "/etc/cdyb/profile.toml",
        },
    )
    assert (s.institution_code, s.environment, s.timeout, s.batch_limit, s.verify, s.profile) == (
        "H2",
        "prod",
        12.5,
        50,
        False,
        "/etc/cdyb/profile.toml",
    )


@pytest.mark.parametrize(
    ("change", "extra", "message"),
    [
        ({"host": "centre.example"}, {"institution_code": "H1"}, "host must be the endpoint URL"),
        ({"host": None}, {"institution_code": "H1"}, "host must be the endpoint URL"),
        ({"login": ""}, {"institution_code": "H1"}, "login (交易访问用户) is empty"),
        ({"password": None}, {"institution_code": "H1"}, "password (交易访问验证码) is empty"),
        ({}, {}, "extra 'institution_code' (定点机构编码) is required"),
        (
            {},
            {"institution_code": "H1", "environment": "staging"},
            "extra 'environment' must be test or prod",
        ),
        ({}, {"institution_code": "H1", "timeout": "soon"}, "extra 'timeout' must be a number of seconds"),
        ({}, {"institution_code": "H1", "timeout": 0}, "extra 'timeout' must be between 0 and 3600"),
        ({}, {"institution_code": "H1", "batch_limit": "lots"}, "extra 'batch_limit' must be a whole number"),
        (
            {},
            {"institution_code": "H1", "batch_limit": 2.5},
            "extra 'batch_limit' must be a whole number, not 2.5",
        ),
        ({}, {"institution_code": "H1", "batch_limit": True}, "extra 'batch_limit' must be a whole number"),
        ({}, {"institution_code": "H1", "batch_limit": -1}, "extra 'batch_limit' must be positive"),
        ({}, {"institution_code": "H1", "verify": "maybe"}, "extra 'verify' must be true or false"),
    ],
)
def test_bad_connection_settings_name_the_field(change, extra, message):
    with pytest.raises(ConnectionConfigError) as info:
        build_settings(**{**GOOD, **change}, extra=extra)
    assert message in str(info.value)
    assert "connection 'c'" in str(info.value)
    assert "secret-code" not in str(info.value)


@pytest.mark.parametrize(("given", "read"), [(1, 1), ("4", 4), (" 8 ", 8), ("", 2)])
def test_max_in_flight_extra_is_read_as_a_number_of_requests(given, read):
    s = build_settings(**GOOD, extra={"institution_code": "H1", "max_in_flight": given})
    assert s.max_in_flight == read


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (0, "extra 'max_in_flight' must be a whole number from 1 to 8, not 0"),
        (9, "extra 'max_in_flight' must be a whole number from 1 to 8, not 9"),
        ("-1", "extra 'max_in_flight' must be a whole number from 1 to 8, not -1"),
        ("lots", "extra 'max_in_flight' must be a whole number, not 'lots'"),
        (2.5, "extra 'max_in_flight' must be a whole number, not 2.5"),
        (True, "extra 'max_in_flight' must be a whole number, not True"),
    ],
)
def test_max_in_flight_outside_1_to_8_names_the_connection_and_the_extra(given, message):
    with pytest.raises(ConnectionConfigError) as info:
        build_settings(**GOOD, extra={"institution_code": "H1", "max_in_flight": given})
    assert str(info.value) == f"connection 'c': {message}"


def test_the_connections_max_in_flight_is_the_uploaders_unless_one_is_given(tmp_path):
    from cdyb_jxc.config import ConnectionFields
    from cdyb_jxc.ledger import Ledger
    from cdyb_jxc.upload.session import CentreSession

    fields = ConnectionFields(
        conn_type="cdyb_jxc",
        host=GOOD["host"],
        login="user",
        password="secret-code",
        extra={"institution_code": "H1", "max_in_flight": "3"},
    )
    session = CentreSession("c", lambda: fields)
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        assert session.uploader("outbound", ledger).sending.max_in_flight == 3
        assert session.uploader("outbound", ledger, max_in_flight=None).sending.max_in_flight == 3
        assert session.uploader("outbound", ledger, max_in_flight=1).sending.max_in_flight == 1
    finally:
        ledger.dispose()

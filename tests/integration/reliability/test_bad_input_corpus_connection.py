"""Bad-input corpus, connection settings: each bad field of the Airflow connection is named together with
the connection, before anything is sent. The rules of the corpus are in ``conftest.py``.
"""

from __future__ import annotations

import pytest

from cdyb_jxc.exceptions import ConnectionConfigError
from cdyb_jxc.wire.connection import build_settings
from tests.conftest import INSTITUTION, SECRET, USER

# ---------------------------------------------------------------------------------------------------------
# bad connection settings
# ---------------------------------------------------------------------------------------------------------

_CONN = {
    "conn_id": "cdyb_jxc_default",
    "host": "http://127.0.0.1:8900/services/SjcjService",
    "login": USER,
    "password": SECRET,
    "extra": {"institution_code": INSTITUTION},
    "conn_type": "cdyb_jxc",
}
_WHERE = "connection 'cdyb_jxc_default': "

SETTINGS_CASES = [
    pytest.param({"host": None}, "host must be the endpoint URL (http:// or https://), got ''", id="no-host"),
    pytest.param(
        {"host": "127.0.0.1:8900/services/SjcjService"},
        "host must be the endpoint URL (http:// or https://), got '127.0.0.1:8900/services/SjcjService'",
        id="host-without-scheme",
    ),
    pytest.param(
        {"host": "ftp://centre/services"},
        "host must be the endpoint URL (http:// or https://), got 'ftp://centre/services'",
        id="host-wrong-scheme",
    ),
    pytest.param({"login": ""}, "login (交易访问用户) is empty", id="no-login"),
    pytest.param({"password": None}, "password (交易访问验证码) is empty", id="no-password"),
    pytest.param({"extra": {}}, "extra 'institution_code' (定点机构编码) is required", id="no-institution"),
    pytest.param(
        {"extra": {"institution_code": INSTITUTION, "environment": "production"}},
        "extra 'environment' must be test or prod, not 'production'",
        id="unknown-environment",
    ),
    pytest.param(
        {"extra": {"institution_code": INSTITUTION, "timeout": "abc"}},
        "extra 'timeout' must be a number of seconds",
        id="timeout-text",
    ),
    pytest.param(
        {"extra": {"institution_code": INSTITUTION, "timeout": 0}},
        "extra 'timeout' must be between 0 and 3600 seconds, not 0.0",
        id="timeout-zero",
    ),
    pytest.param(
        {"extra": {"institution_code": INSTITUTION, "batch_limit": "ten"}},
        "extra 'batch_limit' must be a whole number, not 'ten'",
        id="batch-limit-text",
    ),
    pytest.param(
        {"extra": {"institution_code": INSTITUTION, "batch_limit": -5}},
        "extra 'batch_limit' must be positive, not -5",
        id="batch-limit-negative",
    ),
    pytest.param(
        {"extra": {"institution_code": INSTITUTION, "verify": "maybe"}},
        "extra 'verify' must be true or false, not 'maybe'",
        id="verify-not-boolean",
    ),
]


@pytest.mark.parametrize(("override", "message"), SETTINGS_CASES)
def test_bad_connection_settings_name_connection_and_field(override, message):
    with pytest.raises(ConnectionConfigError) as info:
        build_settings(**{**_CONN, **override})
    assert str(info.value) == _WHERE + message

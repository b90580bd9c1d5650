"""A connection in ``AIRFLOW_CONN_<ID>`` read without Airflow (:func:`cdyb_jxc.config.env_connection`): the
same fields as Airflow's own lookup gives, for the JSON and the URI form, and no answer where only Airflow
can give one (it is asked then)."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

from cdyb_jxc.config import SECRETS_BACKEND_VARS, ConnectionFields, env_connection, parse_connection
from cdyb_jxc.hooks.cdyb_jxc import fields_of

CONN_ID = "cdyb_env_probe"
VAR = "AIRFLOW_CONN_CDYB_ENV_PROBE"
ENDPOINT = "http://10.1.2.3:8900/services/SjcjService"
HARD_PASSWORD = "p@ss:w/rd?#%+&=验证码 é"  # every character a URI gives a meaning to, and non-ASCII

URIS = [
    pytest.param(
        f"cdyb-jxc://his_user:{quote(HARD_PASSWORD, safe='')}@{quote(ENDPOINT, safe='')}"
        "?institution_code=H51010400001&environment=prod&timeout=30&batch_limit=&verify=false",
        id="endpoint-percent-encoded-in-host",
    ),
    pytest.param(
        f"cdyb-jxc://{quote('用户 1', safe='')}:{quote(HARD_PASSWORD, safe='')}@{quote(ENDPOINT, safe='')}"
        f"?__extra__={quote(json.dumps({'institution_code': 'H1', 'timeout': 5, 'verify': False}))}",
        id="__extra__-as-json",
    ),
    pytest.param(
        "cdyb-jxc://http://u:pw%2Fx@10.1.2.3:8900/services/SjcjService?institution_code=H1",
        id="host-with-its-own-protocol",
    ),
    pytest.param(
        "cdyb-jxc://u:pw-1@Centre.Example%2Fservices%2FSjcjService", id="host-with-a-path-keeps-case"
    ),
    pytest.param("cdyb_jxc://u:secret-pw@MixedCase.Example:8080/a%20schema?x=1&x=2", id="underscore-scheme"),
    pytest.param("postgresql://ledger:pw-9@DB.example:5432/ledger?sslmode=require", id="postgresql"),
    pytest.param("cdyb-jxc://:only-a-password@host", id="empty-login"),
    pytest.param("cdyb-jxc://", id="nothing"),
]

JSONS = [
    pytest.param(
        {
            "conn_type": "cdyb_jxc",
            "host": ENDPOINT,
            "login": "his_user",
            "password": HARD_PASSWORD,
            "extra": {"institution_code": "H51010400001", "environment": "test", "batch_limit": 30},
        },
        id="spec-form",
    ),
    pytest.param(
        {
            "conn_type": "cdyb-jxc",
            "host": ENDPOINT,
            "password": "pw-123",
            "extra": '{"institution_code": "H1"}',
        },
        id="extra-as-text",
    ),
    pytest.param(
        {"host": ENDPOINT, "login": "u", "port": "8900", "schema": "s", "description": "d", "extra": {}},
        id="port-as-text-empty-extra",
    ),
    pytest.param({"conn_type": "", "login": "", "password": None, "port": 0, "extra": ""}, id="falsy-fields"),
]

# values Airflow refuses, or whose extras it cannot use as an object: env_connection leaves them to Airflow
DEFERRED = [
    pytest.param('{"conn_type": "cdyb_jxc", "host": ', id="bad-json"),
    pytest.param('{"conn_type": "cdyb_jxc", "hostname": "h"}', id="unknown-field"),
    pytest.param('{"host": "h", "port": "eighty"}', id="bad-port"),
    pytest.param('{"host": "h", "port": [1]}', id="port-of-wrong-type"),
    pytest.param('{"host": "h", "extra": "{not json"}', id="extra-not-json"),
    pytest.param('{"host": "h", "extra": [1, 2]}', id="extra-a-list"),
    pytest.param("cdyb-jxc://u:p@host:eighty/x", id="uri-bad-port"),
    pytest.param("a://b://c://d", id="uri-three-schemes"),
    pytest.param("cdyb-jxc://u:p@http://host/x", id="uri-credentials-before-protocol"),
    pytest.param("cdyb-jxc://h?__extra__=%5B1%5D", id="uri-__extra__-a-list"),
]


def _airflow_fields(monkeypatch: pytest.MonkeyPatch, value: str) -> ConnectionFields:
    """What Airflow's own lookup reads from the variable (the hook's path)."""
    monkeypatch.setenv(VAR, value)
    return fields_of(BaseHook.get_connection(CONN_ID))


@pytest.fixture(autouse=True)
def _no_secrets_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    """Airflow's lookup, the reference, reads the environment alone."""
    for name in SECRETS_BACKEND_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("uri", URIS)
def test_a_uri_reads_as_airflow_reads_it(monkeypatch, uri):
    ours = env_connection(CONN_ID, {VAR: uri, "AIRFLOW_CONFIG": "/nonexistent/airflow.cfg"})
    assert ours == _airflow_fields(monkeypatch, uri)


@pytest.mark.parametrize("conn", JSONS)
def test_the_json_form_reads_as_airflow_reads_it(monkeypatch, conn):
    value = json.dumps(conn, ensure_ascii=False)
    ours = env_connection(CONN_ID, {VAR: value, "AIRFLOW_CONFIG": "/nonexistent/airflow.cfg"})
    assert ours == _airflow_fields(monkeypatch, value)


def test_a_hard_password_and_an_encoded_endpoint_come_back_decoded():
    fields = parse_connection(
        f"cdyb-jxc://his_user:{quote(HARD_PASSWORD, safe='')}@{quote(ENDPOINT, safe='')}?institution_code=H1"
    )
    assert (fields.conn_type, fields.host, fields.login) == ("cdyb_jxc", ENDPOINT, "his_user")
    assert fields.password == HARD_PASSWORD
    assert fields.extra == {"institution_code": "H1"}
    assert HARD_PASSWORD not in repr(fields)


@pytest.mark.parametrize("value", DEFERRED)
def test_what_airflow_refuses_or_reads_without_usable_extras_is_left_to_airflow(monkeypatch, value):
    assert env_connection(CONN_ID, {VAR: value, "AIRFLOW_CONFIG": "/nonexistent/airflow.cfg"}) is None
    monkeypatch.setenv(VAR, value)
    try:
        extra = BaseHook.get_connection(CONN_ID).extra_dejson
    except AirflowNotFoundException:
        return  # Airflow refuses it: the hook then says the connection is not defined
    assert not isinstance(extra, dict) or extra == {}  # Airflow dropped extras it could not parse


@pytest.mark.parametrize("environ", [{}, {VAR: ""}, {VAR: "   "}], ids=["unset", "empty", "blank"])
def test_an_unset_or_blank_variable_is_left_to_airflows_other_sources(environ):
    assert env_connection(CONN_ID, environ) is None


def test_a_configured_secrets_backend_is_asked_first_so_airflow_decides(tmp_path):
    value = json.dumps({"host": ENDPOINT, "login": "u", "password": "pw-123"})
    clean = {VAR: value, "AIRFLOW_HOME": str(tmp_path)}
    assert env_connection(CONN_ID, clean) is not None
    backend = "airflow.secrets.local_filesystem.LocalFilesystemBackend"
    assert env_connection(CONN_ID, {**clean, "AIRFLOW__SECRETS__BACKEND": backend}) is None
    assert env_connection(CONN_ID, {**clean, "AIRFLOW__SECRETS__BACKEND_CMD": "cat /etc/b"}) is None
    (tmp_path / "airflow.cfg").write_text(
        "[core]\nload_examples = False\n[secrets]\nbackend =\n", encoding="utf-8"
    )
    assert env_connection(CONN_ID, clean) is not None  # Airflow's default airflow.cfg names none
    (tmp_path / "airflow.cfg").write_text(f"[secrets]\nbackend = {backend}\n", encoding="utf-8")
    assert env_connection(CONN_ID, clean) is None
    other = tmp_path / "elsewhere.cfg"
    other.write_text("[secrets]\nbackend = \n", encoding="utf-8")
    assert env_connection(CONN_ID, {**clean, "AIRFLOW_CONFIG": str(other)}) is not None


def test_a_multi_team_name_is_left_to_airflow():
    value = json.dumps({"host": ENDPOINT})
    assert env_connection("team___conn", {"AIRFLOW_CONN_TEAM___CONN": value}) is None

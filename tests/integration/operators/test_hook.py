"""The hook: connection from AIRFLOW_CONN_*, lazy client, test_connection against the simulator."""

from __future__ import annotations

import json
import os

import pytest

from cdyb_jxc.get_provider_info import get_provider_info
from cdyb_jxc.hooks.cdyb_jxc import CdybJxcHook
from tests.conftest import INSTITUTION, outbound_row


def test_hook_builds_nothing_until_used(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_CDYB_JXC_DEFAULT", raising=False)
    hook = CdybJxcHook()  # no connection defined: construction must not look it up
    assert hook.cdyb_jxc_conn_id == "cdyb_jxc_default"
    assert "client" not in hook.__dict__


def test_send_returns_a_typed_reply(centre_conn, store):
    hook = CdybJxcHook(centre_conn)
    exchange = hook.send("outbound", [outbound_row("H1")])
    assert exchange.reply.status == "success"
    assert hook.settings.institution_code == INSTITUTION
    assert hook.batch_limit == 100
    assert hook.client.timeout == 10
    assert hook.client.service is hook.client.service  # built once, reused
    hook.close()


def test_test_connection_succeeds_without_storing_anything(centre_conn, store):
    ok, message = CdybJxcHook(centre_conn).test_connection()
    assert ok, message
    assert message.startswith("connected to http://127.0.0.1:")
    assert store.count_rows() == 0


def test_test_connection_reports_wrong_credentials(simulator, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_BAD",
        json.dumps(
            {
                "conn_type": "cdyb_jxc",
                "host": simulator.url,
                "login": "his_user",
                "password": "wrong-code",
                "extra": {"institution_code": INSTITUTION},
            }
        ),
    )
    assert CdybJxcHook("bad").test_connection() == (False, "【用户名或验证码错误】")


def test_test_connection_reports_unreachable_endpoint(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_DEAD",
        json.dumps(
            {
                "conn_type": "cdyb_jxc",
                "host": "http://127.0.0.1:9/services/SjcjService",
                "login": "u",
                "password": "p-code",
                "extra": {"institution_code": INSTITUTION, "timeout": 2},
            }
        ),
    )
    ok, message = CdybJxcHook("dead").test_connection()
    assert not ok
    assert message.startswith("could not reach http://127.0.0.1:9/services/SjcjService")


def test_test_connection_reports_bad_settings(monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_HALF",
        json.dumps({"conn_type": "cdyb_jxc", "host": "http://x", "login": "u", "password": "p-code"}),
    )
    assert CdybJxcHook("half").test_connection() == (
        False,
        "connection 'half': extra 'institution_code' (定点机构编码) is required",
    )


def test_provider_info_declares_the_connection_form():
    info = get_provider_info()
    assert info["package-name"] == "airflow-provider-cdyb-jxc"
    (conn,) = info["connection-types"]
    assert conn["connection-type"] == CdybJxcHook.conn_type == "cdyb_jxc"
    assert conn["hook-class-name"] == "cdyb_jxc.hooks.cdyb_jxc.CdybJxcHook"
    assert set(conn["conn-fields"]) == {
        "institution_code",
        "environment",
        "profile",
        "timeout",
        "batch_limit",
        "verify",
        "max_in_flight",
    }
    assert conn["ui-field-behaviour"]["relabeling"]["password"].startswith("交易访问验证码")


def test_airflow_providers_manager_registers_the_connection_type():
    from airflow.providers_manager import ProvidersManager

    pm = ProvidersManager()
    assert "airflow-provider-cdyb-jxc" in pm.providers
    hook_info = pm.hooks.get("cdyb_jxc")
    assert hook_info is not None
    assert hook_info.hook_class_name == "cdyb_jxc.hooks.cdyb_jxc.CdybJxcHook"


def test_connection_form_widgets_exist_for_every_extra():
    from airflow.providers_manager import ProvidersManager

    widgets = ProvidersManager().connection_form_widgets
    for key in ("institution_code", "environment", "profile", "timeout", "batch_limit", "verify"):
        assert f"extra__cdyb_jxc__{key}" in widgets


def test_a_ledger_belongs_to_one_centre_environment(centre_conn, monkeypatch, tmp_path):
    from cdyb_jxc.exceptions import ConnectionConfigError
    from cdyb_jxc.ledger import Ledger

    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    hook = CdybJxcHook(centre_conn)
    assert hook.uploader("outbound", ledger).run([[outbound_row("E1")]]).states == {"ACCEPTED": 1}
    # the same connection switched to prod: E1 is not at the production centre, so the test ledger must
    # not be reused (it would skip E1 as "already accepted")
    conn = json.loads(os.environ["AIRFLOW_CONN_CDYB_JXC_DEFAULT"])
    conn["extra"]["environment"] = "prod"
    monkeypatch.setenv("AIRFLOW_CONN_CDYB_JXC_DEFAULT", json.dumps(conn))
    with pytest.raises(ConnectionConfigError) as info:
        CdybJxcHook(centre_conn).uploader("outbound", ledger)
    assert str(info.value) == (
        f"ledger {ledger.url} holds {INSTITUTION}'s uploads to the 'test' environment, but the connection"
        " points at 'prod': give each environment its own ledger"
        " (ledger_url / --ledger / CDYB_JXC_LEDGER_URL)"
    )
    hook.close()


def test_test_connection_reports_an_undefined_connection():
    ok, message = CdybJxcHook("nosuch_centre").test_connection()
    assert not ok
    assert message.startswith("connection 'nosuch_centre' is not defined")


def test_a_connection_for_another_institution_fails_a_deployments_task(centre_conn, store):
    """The deployment file says which 定点机构编码 a connection serves; one naming another is refused."""
    from cdyb_jxc.exceptions import ConnectionConfigError

    hook = CdybJxcHook(centre_conn, institution_code="H99999999999")
    with pytest.raises(ConnectionConfigError, match=f"extra 'institution_code' is {INSTITUTION}, but"):
        hook.settings  # noqa: B018
    assert CdybJxcHook(centre_conn, institution_code=INSTITUTION).settings.institution_code == INSTITUTION
    assert store.count_rows() == 0

"""Where a run's settings, ledger and profile come from (:mod:`cdyb_jxc.config`)."""

from __future__ import annotations

import re
from datetime import timedelta
from importlib import resources
from pathlib import Path

import pytest
from sqlalchemy import make_url

from cdyb_jxc.config import (
    ENVIRONMENT_VARIABLES,
    EnvironmentSettings,
    InstitutionSettings,
    connection_profile,
    default_ledger_url,
    resolve_ledger_url,
    resolve_profile,
)

README = Path(__file__).resolve().parents[2] / "README.md"


def _profile_named(path: Path, name: str) -> Path:
    text = resources.files("cdyb_jxc").joinpath("data/default_profile.toml").read_text(encoding="utf-8")
    path.write_text(text.replace('name = "chengdu-jxc-default"', f'name = "{name}"', 1), encoding="utf-8")
    return path


def _no_connection(conn_id: str):
    raise AssertionError(f"no connection should be looked up, asked for {conn_id!r}")


def test_every_variable_the_readme_documents_is_read_here():
    documented = set(re.findall(r"CDYB_JXC_[A-Z_]+", README.read_text(encoding="utf-8")))
    documented -= {"CDYB_JXC_DEFAULT", "CDYB_JXC_TEST_PG"}  # a connection's env name; the test suite's
    assert documented == set(ENVIRONMENT_VARIABLES) - {"AIRFLOW_HOME"}


def test_an_empty_environment_gives_the_documented_defaults(tmp_path):
    settings = EnvironmentSettings.from_environ({"AIRFLOW_HOME": str(tmp_path)}).institution()
    assert settings == InstitutionSettings(
        conn_id="cdyb_jxc_default",
        source_conn_id="cdyb_jxc_his",
        ledger_url=None,
        ledger_conn_id=None,
        report_dir=str(tmp_path / "cdyb_jxc_reports"),
        notify="log",
        start_date="2026-01-01",
        recheck_days=7,
        mapping_file=None,
        retry_delay=timedelta(minutes=2),
        task_timeout=timedelta(minutes=120),
    )


def test_without_airflow_home_reports_go_under_the_users_airflow_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert EnvironmentSettings.from_environ({}).institution().report_dir == str(
        tmp_path / "airflow" / "cdyb_jxc_reports"
    )


def test_every_variable_is_read_and_an_empty_one_counts_as_unset():
    environ = {
        "CDYB_JXC_CONN_ID": "centre_b",
        "CDYB_JXC_SOURCE_CONN_ID": "",
        "CDYB_JXC_LEDGER_URL": "postgresql://ledger/db",
        "CDYB_JXC_LEDGER_CONN_ID": "ledger_pg",
        "CDYB_JXC_PROFILE": "/etc/cdyb/profile.toml",
        "CDYB_JXC_REPORT_DIR": "/data/reports",
        "CDYB_JXC_NOTIFY": "webhook:https://example.org/hook",
        "CDYB_JXC_START_DATE": "2026-03-01",
        "CDYB_JXC_RECHECK_DAYS": "3",
        "CDYB_JXC_MAPPING_FILE": "/data/mapping.csv",
        "CDYB_JXC_RETRY_DELAY_SECONDS": "30",
        "CDYB_JXC_TASK_TIMEOUT_MINUTES": "45",
    }
    env = EnvironmentSettings.from_environ(environ)
    assert env.profile == "/etc/cdyb/profile.toml"
    assert env.institution() == InstitutionSettings(
        conn_id="centre_b",
        source_conn_id="cdyb_jxc_his",
        ledger_url="postgresql://ledger/db",
        ledger_conn_id="ledger_pg",
        report_dir="/data/reports",
        notify="webhook:https://example.org/hook",
        start_date="2026-03-01",
        recheck_days=3,
        mapping_file="/data/mapping.csv",
        retry_delay=timedelta(seconds=30),
        task_timeout=timedelta(minutes=45),
    )


def test_a_bad_number_fails_the_institution_settings_only():
    env = EnvironmentSettings.from_environ({"CDYB_JXC_RECHECK_DAYS": "a week"})
    assert env.conn_id == "cdyb_jxc_default"  # the monitor and the CLI read what they need and go on
    with pytest.raises(ValueError, match="a week"):
        env.institution()
    timeout = EnvironmentSettings.from_environ({"CDYB_JXC_TASK_TIMEOUT_MINUTES": "1441"})
    with pytest.raises(
        ValueError, match=r"^CDYB_JXC_TASK_TIMEOUT_MINUTES must be between 0 and 1440 minutes"
    ):
        timeout.institution()


def test_a_blank_task_timeout_is_the_default():
    env = EnvironmentSettings.from_environ({"CDYB_JXC_TASK_TIMEOUT_MINUTES": "   "})
    assert env.institution().task_timeout == timedelta(minutes=120)


def test_default_ledger_is_the_environments_url_else_sqlite_in_airflow_home(tmp_path):
    assert default_ledger_url({"CDYB_JXC_LEDGER_URL": "postgresql://h/l"}) == "postgresql://h/l"
    home = tmp_path / "not-yet"
    assert default_ledger_url({"AIRFLOW_HOME": str(home)}) == f"sqlite:///{home / 'cdyb_jxc_ledger.db'}"
    assert home.is_dir()  # SQLite creates the file, not its folder


def test_a_ledger_connection_wins_over_a_url_and_keeps_its_password():
    asked: list[str] = []

    def lookup(conn_id: str):
        asked.append(conn_id)
        return make_url("postgresql://ledger:pw-1@db.example/ledger")

    url = resolve_ledger_url("sqlite:///elsewhere.db", "ledger_pg", get_connection=lookup)
    assert asked == ["ledger_pg"]
    assert (url.host, url.password) == ("db.example", "pw-1")


def test_a_ledger_url_is_used_as_given(monkeypatch):
    monkeypatch.setenv("CDYB_JXC_LEDGER_URL", "postgresql://from-env/l")
    url = resolve_ledger_url("postgresql://u:pw-2@given/l", get_connection=_no_connection)
    assert (url.host, url.password) == ("given", "pw-2")


def test_without_url_or_connection_the_ledger_is_the_default(monkeypatch, tmp_path):
    monkeypatch.setenv("CDYB_JXC_LEDGER_URL", "postgresql://from-env/l")
    assert resolve_ledger_url(get_connection=_no_connection).host == "from-env"
    monkeypatch.delenv("CDYB_JXC_LEDGER_URL")
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    assert resolve_ledger_url(get_connection=_no_connection).database == str(tmp_path / "cdyb_jxc_ledger.db")


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"institution_code": "H1", "profile": "/p/a.toml"}, "/p/a.toml"),
        ({"extra__cdyb_jxc__profile": "/p/ui.toml"}, "/p/ui.toml"),  # as the connection form writes it
        ({"institution_code": "H1"}, None),
        ({"profile": ""}, None),
        (None, None),  # no such connection
    ],
)
def test_the_profile_extra_of_a_centre_connection(extra, expected):
    assert connection_profile(extra) == expected


def test_profile_order_is_override_connection_environment_then_packaged(monkeypatch, tmp_path):
    override = _profile_named(tmp_path / "override.toml", "override")
    connection = _profile_named(tmp_path / "connection.toml", "connection")
    environment = _profile_named(tmp_path / "environment.toml", "environment")
    monkeypatch.setenv("CDYB_JXC_PROFILE", str(environment))
    assert resolve_profile(str(override), connection=str(connection)).name == "override"
    assert resolve_profile(None, connection=str(connection)).name == "connection"
    assert resolve_profile().name == "environment"
    monkeypatch.delenv("CDYB_JXC_PROFILE")
    assert resolve_profile().name == "chengdu-jxc-default"

"""The packaged DAGs' settings: an institution's settings plus its SQL templates."""

from __future__ import annotations

from dataclasses import fields
from datetime import timedelta

from cdyb_jxc.config import InstitutionSettings
from cdyb_jxc.workflows.settings import DagSettings


def test_dag_settings_carry_every_institution_setting(tmp_path):
    institution = InstitutionSettings(
        conn_id="centre_b",
        source_conn_id="his_b",
        ledger_conn_id="ledger_pg",
        report_dir="/data/reports",
        notify="email:ops@example.org",
        start_date="2026-03-01",
        recheck_days=2,
        mapping_file="/data/mapping.csv",
        retry_delay=timedelta(seconds=5),
        task_timeout=timedelta(minutes=30),
    )
    settings = DagSettings.for_institution(institution, tmp_path)
    assert settings.sql_dir == str(tmp_path)
    for f in fields(InstitutionSettings):
        assert getattr(settings, f.name) == getattr(institution, f.name), f.name
    assert settings.upload_kwargs() == {
        "execution_timeout": timedelta(minutes=30),
        "cdyb_jxc_conn_id": "centre_b",
        "source_conn_id": "his_b",
        "ledger_url": None,
        "ledger_conn_id": "ledger_pg",
        "mapping_file": "/data/mapping.csv",
        "institution_code": None,
    }
    assert settings.ledger_kwargs == {
        "conn_id": "centre_b",
        "ledger_url": None,
        "ledger_conn_id": "ledger_pg",
        "institution_code": None,
    }
    assert (settings.default_args()["retries"], settings.default_args()["retry_delay"]) == (
        3,
        timedelta(seconds=5),
    )


def test_dag_settings_from_the_environment(tmp_path):
    environ = {
        "AIRFLOW_HOME": str(tmp_path),
        "CDYB_JXC_SOURCE_CONN_ID": "his_main",
        "CDYB_JXC_RECHECK_DAYS": "1",
    }
    settings = DagSettings.from_env(tmp_path / "sql", environ)
    assert (settings.source_conn_id, settings.recheck_days) == ("his_main", 1)
    assert settings.report_dir == str(tmp_path / "cdyb_jxc_reports")
    assert settings.sql_dir == str(tmp_path / "sql")

"""Every institution of the deployment file gets its own DAGs; a bad file is one import error naming keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdyb_jxc.exceptions import DeploymentConfigError
from cdyb_jxc.workflows.factory import build_dags

CONFIG = """\
defaults:
  schedule: "15 1 * * *"
  pool: cdyb_jxc_centre
institutions:
  - code: H51010400001
    name: 示例医院本部
    conn_id: cdyb_jxc_h1
    source_conn_id: his_main
  - code: H51010400002
    name: 示例医院东院
    conn_id: cdyb_jxc_h2
    source_conn_id: his_east
    pool: east_only
"""
CODES = ("H51010400001", "H51010400002")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "cdyb_jxc.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


def test_each_institution_has_its_own_init_and_daily_dag(config, tmp_path):
    dags = build_dags(config, {"AIRFLOW_HOME": str(tmp_path)})
    kinds = ("init", "daily", "preflight", "watch")
    assert set(dags) == {f"cdyb_jxc_{kind}__{code}" for kind in kinds for code in CODES}
    daily = dags["cdyb_jxc_daily__H51010400001"]
    assert {"cdyb-jxc", "H51010400001", "示例医院本部"} <= set(daily.tags)
    assert daily.timetable.expression == "15 1 * * *"
    for task_id in ("upload_inbound", "upload_outbound", "upload_stock"):
        task = daily.get_task(task_id)
        assert (task.cdyb_jxc_conn_id, task.institution_code) == ("cdyb_jxc_h1", "H51010400001")
        assert task.source_conn_id == "his_main"
        assert task.pool == "cdyb_jxc_centre"
    assert dags["cdyb_jxc_daily__H51010400002"].get_task("upload_stock").pool == "east_only"
    gate = daily.get_task("wait_for_initialization")
    assert gate.op_kwargs["institution_code"] == "H51010400001"
    # one institution's initialization never releases another's
    outlets = {dags[f"cdyb_jxc_init__{c}"].get_task("record_initialization").outlets[0].uri for c in CODES}
    assert len(outlets) == 2


def test_without_a_file_the_environment_keeps_todays_dag_ids(tmp_path):
    dags = build_dags(None, {"AIRFLOW_HOME": str(tmp_path)})
    assert set(dags) == {"cdyb_jxc_init", "cdyb_jxc_daily", "cdyb_jxc_preflight", "cdyb_jxc_watch"}
    assert dags["cdyb_jxc_daily"].get_task("upload_inbound").institution_code is None


def test_a_cron_out_of_range_is_named_by_its_key(config, tmp_path):
    config.write_text(
        CONFIG.replace("    pool: east_only\n", '    schedule: "0 25 * * *"\n'), encoding="utf-8"
    )
    with pytest.raises(DeploymentConfigError, match=r"institutions\[1\]\.schedule: .*out of range"):
        build_dags(config, {"AIRFLOW_HOME": str(tmp_path)})


def test_a_bad_file_is_the_dag_files_one_import_error(config, tmp_path, airflow_db, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    repo_dag_file = Path(__file__).resolve().parents[3] / "dags" / "cdyb_jxc_dags.py"
    folder = tmp_path / "dags"
    folder.mkdir()
    (folder / "cdyb_jxc_dags.py").write_text(repo_dag_file.read_text(encoding="utf-8"), encoding="utf-8")
    config.write_text(CONFIG.replace("    conn_id: cdyb_jxc_h2\n", ""), encoding="utf-8")
    monkeypatch.setenv("CDYB_JXC_CONFIG", str(config))
    bag = DagBag(str(folder))
    assert bag.dag_ids == []
    (error,) = bag.import_errors.values()
    assert "institutions[1].conn_id: missing" in error
    config.write_text(CONFIG, encoding="utf-8")
    bag = DagBag(str(folder))
    assert bag.import_errors == {}
    assert len(bag.dag_ids) == 8


def test_each_institution_has_a_preflight_at_22_that_never_calls_the_centre(config, tmp_path):
    from airflow.sdk import CronTriggerTimetable

    dags = build_dags(config, {"AIRFLOW_HOME": str(tmp_path)})
    preflight = dags["cdyb_jxc_preflight__H51010400002"]
    assert isinstance(preflight.timetable, CronTriggerTimetable)
    assert preflight.timetable.expression == "0 22 * * *"
    assert {"预检", "H51010400002"} <= set(preflight.tags)
    checks = [preflight.get_task(f"validate_{t}") for t in ("inbound", "outbound", "stock")]
    assert [c.transaction for c in checks] == ["inbound", "outbound", "stock"]
    assert {c.institution_code for c in checks} == {"H51010400002"}
    assert {c.pool for c in checks} == {"default_pool"}  # the centre's pool is for uploads only
    assert preflight.get_task("report_preflight").trigger_rule == "all_done"


def test_an_intraday_schedule_adds_a_same_day_dag_of_inbound_and_outbound_only(config, tmp_path):
    from airflow.sdk import CronTriggerTimetable

    config.write_text(CONFIG.replace("    pool: east_only\n", '    intraday_schedule: "0  8-22 * * *"\n'))
    dags = build_dags(config, {"AIRFLOW_HOME": str(tmp_path)})
    assert "cdyb_jxc_intraday__H51010400001" not in dags  # optional: only where it is set
    intraday = dags["cdyb_jxc_intraday__H51010400002"]
    assert isinstance(intraday.timetable, CronTriggerTimetable)
    assert intraday.timetable.expression == "0 8-22 * * *"
    assert {"当日上传", "H51010400002"} <= set(intraday.tags)
    assert set(intraday.task_ids) == {
        "wait_for_initialization",
        "upload_inbound",
        "upload_outbound",
        "resend_returns",
    }  # no stock: the snapshot stays end-of-day
    uploads = [intraday.get_task(t) for t in ("upload_inbound", "upload_outbound", "resend_returns")]
    assert {u.institution_code for u in uploads} == {"H51010400002"}
    assert {u.recheck_days for u in uploads} == {0}  # earlier days are the daily DAG's
    assert uploads[2].resend_now == ("original_missing",)
    assert intraday.get_task("upload_outbound").upstream_task_ids == {"upload_inbound"}


def test_a_bad_intraday_cron_is_named_by_its_key(config, tmp_path):
    config.write_text(CONFIG.replace("  pool: cdyb_jxc_centre\n", '  intraday_schedule: "0 8-25 * * *"\n'))
    with pytest.raises(
        DeploymentConfigError, match=r"institutions\[0\]\.intraday_schedule: .*out of (range|bands)"
    ):
        build_dags(config, {"AIRFLOW_HOME": str(tmp_path)})


def test_the_environments_institution_has_an_intraday_dag_when_the_variable_is_set(tmp_path):
    env = {"AIRFLOW_HOME": str(tmp_path), "CDYB_JXC_INTRADAY_SCHEDULE": "30 9-21/2 * * *"}
    dags = build_dags(None, env)
    assert dags["cdyb_jxc_intraday"].timetable.expression == "30 9-21/2 * * *"
    assert "cdyb_jxc_intraday" not in build_dags(None, {"AIRFLOW_HOME": str(tmp_path)})

"""The packaged DAGs import cleanly, fast, without I/O, with the tags, schedule and retries users rely on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DAG_FILES = sorted((REPO / "dags").glob("*.py"))
PARSE = r"""
import runpy, socket, sys, time
import airflow.sdk
from airflow.providers.standard.operators.python import PythonOperator
def refuse(*a, **k):
    raise AssertionError("network access while parsing a DAG file")
socket.socket.connect = refuse
socket.create_connection = refuse
import sqlite3
sqlite3.connect = refuse
start = time.perf_counter()
runpy.run_path(sys.argv[1])
elapsed = time.perf_counter() - start
heavy = [m for m in ("zeep", "pandas", "pyarrow", "openpyxl", "lxml", "requests") if m in sys.modules]
print(f"{elapsed:.3f} {','.join(heavy) or '-'}")
"""


def test_the_repository_dag_file_is_the_one_scaffold_writes():
    from cdyb_jxc.cli.scaffold import SCAFFOLD

    assert [p.name for p in DAG_FILES] == ["cdyb_jxc_dags.py"]
    template = (SCAFFOLD / "cdyb_jxc_dags.py.tmpl").read_text(encoding="utf-8")
    assert DAG_FILES[0].read_text(encoding="utf-8") == template


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_parses_in_under_a_second_without_io_or_heavy_imports(path):
    out = subprocess.run(
        [sys.executable, "-c", PARSE, str(path)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    seconds, heavy = out.stdout.split()[-2:]
    assert float(seconds) < 1.0
    assert heavy == "-"


def test_dagbag_has_no_import_errors(airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(REPO / "dags"))
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == {"cdyb_jxc_init", "cdyb_jxc_daily", "cdyb_jxc_preflight", "cdyb_jxc_watch"}


def test_init_dag_shape(repo_dag):
    dag = repo_dag("cdyb_jxc_init")
    assert dag.schedule is None or str(dag.timetable.summary) in ("None", "Never, external triggers only")
    assert set(dag.tags) >= {"cdyb-jxc", "医保"}
    assert [t.task_id for t in dag.topological_sort()] == [
        "check_not_initialized",
        "upload_init",
        "record_initialization",
    ]
    assert "force" in dag.params
    assert dag.params["force"] is False
    record = dag.get_task("record_initialization")
    assert [o.uri for o in record.outlets] == ["cdyb_jxc://initialization"]
    assert dag.get_task("upload_init").retries == 3


def test_daily_dag_shape(repo_dag):
    from airflow.sdk import CronDataIntervalTimetable

    dag = repo_dag("cdyb_jxc_daily")
    assert isinstance(dag.timetable, CronDataIntervalTimetable)
    assert dag.timetable.expression == "0 2 * * *"
    assert str(dag.timetable.timezone) == "Asia/Shanghai"
    order = [t.task_id for t in dag.topological_sort()]
    assert order.index("upload_inbound") < order.index("upload_outbound") < order.index("upload_stock")
    for task_id in ("upload_inbound", "upload_outbound", "upload_stock"):
        task = dag.get_task(task_id)
        assert task.retries == 3
        assert task.retry_exponential_backoff
    assert dag.get_task("done").trigger_rule == "none_failed_min_one_success"
    assert set(dag.get_task("check_partial_success").downstream_task_ids) == {
        "report_rejects",
        "all_accepted",
    }

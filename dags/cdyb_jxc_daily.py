"""Airflow DAG: daily T+1 药品入库/出库/库存 upload (JXC002-JXC004).

Settings: see cdyb_jxc.workflows.builder."""

from pathlib import Path

from cdyb_jxc.workflows.builder import DagSettings, build_daily_dag

dag = build_daily_dag(DagSettings.from_env(Path(__file__).resolve().parent.parent / "include" / "sql"))

"""Airflow DAG: one-time 药品采购信息初始化 (JXC001). Settings: see cdyb_jxc.workflows.builder."""

from pathlib import Path

from cdyb_jxc.workflows.builder import DagSettings, build_init_dag

dag = build_init_dag(DagSettings.from_env(Path(__file__).resolve().parent.parent / "include" / "sql"))

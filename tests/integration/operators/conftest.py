from __future__ import annotations

import csv
import importlib.util
import json
import textwrap
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from cdyb_jxc.simulator.server import Simulator
from tests.conftest import AIRFLOW_HOME, INSTITUTION, SECRET, USER


@pytest.fixture
def centre_conn(simulator: Simulator, monkeypatch: pytest.MonkeyPatch) -> str:
    """``cdyb_jxc_default`` pointing at the served simulator, from an AIRFLOW_CONN_* variable."""
    conn = {
        "conn_type": "cdyb_jxc",
        "host": simulator.url,
        "login": USER,
        "password": SECRET,
        "extra": {"institution_code": INSTITUTION, "environment": "test", "timeout": 10},
    }
    monkeypatch.setenv("AIRFLOW_CONN_CDYB_JXC_DEFAULT", json.dumps(conn))
    return "cdyb_jxc_default"


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture
def run_dag(airflow_db: Path) -> Callable[..., Any]:
    """Write a DAG file into the dags folder, load it and run ``dag.test()``; returns the DagRun."""

    def _run(body: str, **test_kwargs: Any) -> Any:
        dag_id = f"t_{uuid.uuid4().hex[:10]}"
        path = AIRFLOW_HOME / "dags" / f"{dag_id}.py"
        path.write_text(textwrap.dedent(body).replace("DAG_ID", dag_id), encoding="utf-8")
        spec = importlib.util.spec_from_file_location(dag_id, path)
        assert spec
        assert spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.dag.test(**test_kwargs)

    return _run

"""Fixtures for the packaged DAGs: the repo's dags/ linked into the test dags folder, a small demo HIS."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from cdyb_jxc.deployment import DEFAULT_SCHEDULE
from cdyb_jxc.simulator.store import SimulatorStore
from tests.conftest import AIRFLOW_HOME, INSTITUTION, SECRET, USER

REPO = Path(__file__).resolve().parents[2]
PG = os.environ.get("CDYB_JXC_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
DAG_FILE = "cdyb_jxc_dags.py"
sys.path.insert(0, str(REPO / "include" / "demo"))


def last_closed_day() -> date:
    """The business day of the daily DAG's latest closed interval (02:00 to 02:00 Asia/Shanghai): yesterday,
    but the day before between 00:00 and 02:00. The demo's last day is that one, so a real scheduler's
    catch-up run (on unpause) always covers the last day and never one a test triggers or backfills."""
    runs_at = int(DEFAULT_SCHEDULE.split()[1])  # the hour the daily DAG's intervals end
    shanghai = datetime.now(UTC) + timedelta(hours=8)
    return (shanghai - timedelta(hours=runs_at)).date() - timedelta(days=1)


@pytest.fixture
def demo_env(
    tmp_path: Path, store: SimulatorStore, centre_conn: str, monkeypatch: pytest.MonkeyPatch
) -> dict:
    """A 3-day demo HIS (120 items) seeded into the simulator, and the DAG settings pointing at it."""
    from generate_his import generate

    his, mapping = tmp_path / "his.db", tmp_path / "mapping.csv"
    info = generate(his, mapping, days=3, end=last_closed_day(), items=120, outbound_per_day=200)
    institutions = tmp_path / "inst.csv"
    institutions.write_text(
        f"institution_code,environment,user,verification_code\n{INSTITUTION},test,{USER},{SECRET}\n",
        encoding="utf-8",
    )
    with institutions.open(encoding="utf-8") as inst, mapping.open(encoding="utf-8") as mp:
        store.seed_csv(inst, mp)
    ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    monkeypatch.setenv("CDYB_JXC_LEDGER_URL", ledger_url)
    monkeypatch.setenv("CDYB_JXC_REPORT_DIR", str(tmp_path / "reports"))
    monkeypatch.setenv("CDYB_JXC_RETRY_DELAY_SECONDS", "0")
    monkeypatch.setenv("AIRFLOW_CONN_CDYB_JXC_HIS", json.dumps({"conn_type": "sqlite", "host": str(his)}))
    return {
        "his": his,
        "ledger_url": ledger_url,
        "reports": tmp_path / "reports",
        "days": [date.fromordinal(info["first_day"] + n).isoformat() for n in range(3)],
    }


@pytest.fixture
def repo_dag(airflow_db: Path) -> Callable[[str], Any]:
    """A DAG of the repo's DAG file (the one ``cdyb-jxc scaffold`` writes), loaded from the test dags
    folder through a symlink, as Airflow would load it, with the environment as it is now."""

    def _load(dag_id: str) -> Any:
        link = AIRFLOW_HOME / "dags" / DAG_FILE
        if not link.exists():
            link.symlink_to(REPO / "dags" / DAG_FILE)
        spec = importlib.util.spec_from_file_location("repo_cdyb_jxc_dags", link)
        assert spec
        assert spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return getattr(module, dag_id)

    return _load


@pytest.fixture
def pg_db() -> Iterator[str]:
    """A PostgreSQL database of its own (metadata, result backend and ledger of a real deployment)."""
    name = f"cdyb_jxc_af_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield PG.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()

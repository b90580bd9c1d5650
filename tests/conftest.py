"""Shared fixtures: the default profile, a seeded simulator store and a served simulator on loopback."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

# Airflow reads its configuration once per process: point it at a throw-away home before anything imports it.
AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="cdyb_jxc_airflow_"))
(AIRFLOW_HOME / "dags").mkdir()
atexit.register(shutil.rmtree, AIRFLOW_HOME, ignore_errors=True)
os.environ["AIRFLOW_HOME"] = str(AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(AIRFLOW_HOME / "dags")
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "INFO"
# Airflow writes a generated secret into airflow.cfg only when it creates the file; a process that imported
# Airflow earlier would not see it, so every test process (and its children) shares one explicit secret.
os.environ.setdefault("AIRFLOW__API_AUTH__JWT_SECRET", os.urandom(16).hex())
os.environ.pop("CDYB_JXC_LEDGER_URL", None)
os.environ.pop("CDYB_JXC_PROFILE", None)

import csv  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402 - Airflow environment must be set first
from sqlalchemy import create_engine, text  # noqa: E402

from cdyb_jxc.ledger import Ledger  # noqa: E402
from cdyb_jxc.simulator.server import Simulator  # noqa: E402
from cdyb_jxc.simulator.store import SimulatorStore  # noqa: E402
from cdyb_jxc.upload.engine import Uploader  # noqa: E402
from cdyb_jxc.wire.profile import Profile, load_profile  # noqa: E402
from tests.dag_factory import TaskSpec, write_dag_file  # noqa: E402

INSTITUTION = "H51010400001"
USER = "his_user"
SECRET = "S3cret-验证码-value"
PROD_SECRET = "Pr0d-secret"
OTHER_INSTITUTION = "H51010400002"


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """An initialised Airflow metadata database (SQLite) in the session's AIRFLOW_HOME."""
    out = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True, timeout=300
    )
    if out.returncode != 0:
        raise RuntimeError(f"airflow db migrate failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return AIRFLOW_HOME


@pytest.fixture(scope="session")
def profile() -> Profile:
    return load_profile()


def seed_store(store: SimulatorStore, items: int = 20) -> None:
    store.add_institution(INSTITUTION, "test", USER, SECRET)
    store.add_institution(INSTITUTION, "prod", USER, PROD_SECRET)
    store.add_institution(OTHER_INSTITUTION, "test", "other", "other-secret")
    store.add_mapping((INSTITUTION, f"M{i:04d}", f"XA{i:06d}", i % 10 == 9) for i in range(1, items + 1))


@pytest.fixture
def store() -> Iterator[SimulatorStore]:
    s = SimulatorStore(":memory:")
    seed_store(s)
    yield s
    s.close()


@pytest.fixture
def simulator(profile: Profile, store: SimulatorStore) -> Iterator[Simulator]:
    sim = Simulator(profile, store).start()
    yield sim
    sim.stop()


def item(i: int) -> dict[str, str]:
    return {
        "insurance_item_code": f"XA{i:06d}",
        "hospital_item_name": f"阿莫西林胶囊{i}号",
        "mapping_serial_no": f"M{i:04d}",
        "split_flag": "0",
        "unit": "盒",
    }


def outbound_row(serial: str, i: int = 1, **extra: str) -> dict[str, str]:
    row = {
        "serial_no": serial,
        **item(i),
        "outbound_type": "21",
        "sale_price": "12.5",
        "quantity": "2",
        "event_time": "2026-11-20 10:00:00",
    }
    row.update(extra)
    return row


def inbound_row(serial: str, i: int = 1, **extra: str) -> dict[str, str]:
    row = {
        "serial_no": serial,
        **item(i),
        "inbound_type": "11",
        "purchase_price": "10.1234",
        "quantity": "100",
        "event_time": "2026-11-20 09:00:00",
        "supplier_name": "国药控股四川医药股份有限公司",
        "lot_no": "B20261101",
        "expiry_date": "2028-10-31",
    }
    row.update(extra)
    return row


def init_row(serial: str, i: int = 1, **extra: str) -> dict[str, str]:
    row = {
        "serial_no": serial,
        **item(i),
        "purchase_price": "10",
        "quantity": "50",
        "event_time": "2026-11-01 08:00:00",
    }
    row.update(extra)
    return row


def stock_row(serial: str, i: int = 1, **extra: str) -> dict[str, str]:
    row = {"serial_no": serial, **item(i), "stock_date": "2026-11-20", "stock_quantity": "48"}
    row.update(extra)
    return row


class RacingLedger(Ledger):
    """Lets ``competitor`` run once, right after this ledger's first lookup (another upload claiming a
    流水号 between an upload's lookup and its writes)."""

    competitor: Callable[[], Any] | None = None

    def lookup(self, institution_code: str, serials: Any) -> Any:
        found = super().lookup(institution_code, serials)
        run, self.competitor = self.competitor, None
        if run is not None:
            run()
        return found


def make_uploader(profile: Profile, sender: Any, ledger: Any, txn: str = "outbound", **kw: Any) -> Uploader:
    """An :class:`Uploader` of ``INSTITUTION`` that never sleeps between resends (and makes none unless
    ``resend_attempts`` says so)."""
    kw.setdefault("resend_attempts", 0)
    return Uploader(
        profile=profile,
        txn_key=txn,
        institution_code=INSTITUTION,
        sender=sender,
        ledger=ledger,
        sleep=lambda s: None,
        **kw,
    )


FIXED_NOW = datetime(2026, 11, 21, 12, 0, 0)


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
    """Write a DAG of ``tasks`` into the dags folder (see :func:`tests.dag_factory.dag_source`), load it and
    run ``dag.test()``; returns the DagRun."""

    def _run(*tasks: TaskSpec, chain: bool = False, **dag_kwargs: Any) -> Any:
        dag_id = f"t_{uuid.uuid4().hex[:10]}"
        path = write_dag_file(AIRFLOW_HOME / "dags", dag_id, *tasks, chain=chain, **dag_kwargs)
        spec = importlib.util.spec_from_file_location(dag_id, path)
        assert spec
        assert spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.dag.test()

    return _run


PG_ADMIN_URL = os.environ.get("CDYB_JXC_TEST_PG", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A throw-away PostgreSQL database for the session (the production-path ledger)."""
    name = f"cdyb_jxc_test_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def assert_day_counts_match_rows(engine) -> None:
    """The ledger's day counts (kept by every write) equal a recount of its rows: checked after every
    scenario that writes a ledger, so a write that forgets them fails the scenario that made it."""
    from sqlalchemy import inspect

    from cdyb_jxc.ledger import rollup

    if not inspect(engine).has_table("cdyb_jxc_day_count"):
        return
    with engine.connect() as conn:
        assert rollup.stored(conn) == rollup.recounted(conn)


def exact_day_counts(engine) -> dict:
    """The day counts kept, after asserting that they equal a recount of the rows."""
    from cdyb_jxc.ledger import rollup

    with engine.connect() as conn:
        kept = rollup.stored(conn)
        assert kept == rollup.recounted(conn)
    return kept


def row_table_reads(engine, needle: str = "FROM cdyb_jxc_upload_row") -> list[str]:
    """A list that fills with the SELECTs ``engine`` runs whose text holds ``needle``."""
    from sqlalchemy import event

    seen: list[str] = []

    def before(conn, cursor, statement, *args):
        if statement.lstrip().startswith("SELECT") and needle in statement:
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", before)
    return seen

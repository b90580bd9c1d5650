"""``cdyb-jxc scaffold DIR``: a DAG file, an example deployment file and the SQL templates, for Airflow."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cdyb_jxc.cli import main
from cdyb_jxc.deployment import load_deployment

EXPECTED = {
    "dags/cdyb_jxc_dags.py",
    "cdyb_jxc.yaml",
    "cdyb_jxc_sql/init.sql",
    "cdyb_jxc_sql/inbound.sql",
    "cdyb_jxc_sql/outbound.sql",
    "cdyb_jxc_sql/stock.sql",
}


def _written(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_scaffold_writes_a_working_deployment(tmp_path, capsys):
    assert main(["scaffold", str(tmp_path)]) == 0
    assert _written(tmp_path) == EXPECTED
    deployment = load_deployment(tmp_path / "cdyb_jxc.yaml", {"AIRFLOW_HOME": str(tmp_path)})
    assert [i.code for i in deployment.institutions] == ["H51010400001", "H51010400002"]
    assert {i.sql_dir for i in deployment.institutions} == {str(tmp_path / "cdyb_jxc_sql")}
    sql = (tmp_path / "cdyb_jxc_sql" / "outbound.sql").read_text(encoding="utf-8")
    assert sql.startswith("-- cdyb-jxc SQL template")
    assert "{{ business_date }}" in sql
    assert "wrote" in capsys.readouterr().out


def test_scaffold_leaves_existing_files_alone_unless_forced(tmp_path, capsys):
    (tmp_path / "cdyb_jxc.yaml").write_text("mine", encoding="utf-8")
    assert main(["scaffold", str(tmp_path)]) == 1
    assert "nothing written" in capsys.readouterr().err
    assert _written(tmp_path) == {"cdyb_jxc.yaml"}
    assert (tmp_path / "cdyb_jxc.yaml").read_text(encoding="utf-8") == "mine"
    assert main(["scaffold", str(tmp_path), "--force"]) == 0
    assert (tmp_path / "cdyb_jxc.yaml").read_text(encoding="utf-8") != "mine"


def test_airflow_lists_every_scaffolded_institutions_dags(tmp_path):
    """As a new user would: scaffold into a fresh AIRFLOW_HOME, then ``airflow dags list``."""
    home = tmp_path / "airflow"
    assert main(["scaffold", str(home)]) == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CDYB_JXC"))}
    env |= {"AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    env["AIRFLOW__CORE__DAGS_FOLDER"] = str(home / "dags")
    airflow = [sys.executable, "-m", "airflow"]
    migrated = subprocess.run(
        [*airflow, "db", "migrate"], capture_output=True, text=True, timeout=300, env=env
    )
    assert migrated.returncode == 0, migrated.stderr[-2000:]
    out = subprocess.run(
        [*airflow, "dags", "list", "--local", "-o", "plain"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    for code in ("H51010400001", "H51010400002"):
        assert f"cdyb_jxc_init__{code}" in out.stdout
        assert f"cdyb_jxc_daily__{code}" in out.stdout

"""``cdyb-jxc upload`` as SPEC §8 defines it: same hook, ledger and batching; exit status 0 / 1 / 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import INSTITUTION, SECRET, USER, outbound_row, stock_row
from tests.integration.operators.conftest import write_csv


@pytest.fixture
def cli(simulator, tmp_path):
    env = {
        **os.environ,
        "AIRFLOW_CONN_CDYB_JXC_DEFAULT": json.dumps(
            {
                "conn_type": "cdyb_jxc",
                "host": simulator.url,
                "login": USER,
                "password": SECRET,
                "extra": {"institution_code": INSTITUTION, "environment": "test", "batch_limit": 30},
            }
        ),
    }
    ledger = f"sqlite:///{tmp_path / 'ledger.db'}"

    def _run(*args: str, conn_env: dict | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "cdyb_jxc", "upload", *args, "--ledger", ledger],
            capture_output=True,
            text=True,
            timeout=120,
            env={**env, **(conn_env or {})},
        )

    return _run


def test_every_row_accepted_exits_0_and_prints_counts(cli, tmp_path, store):
    src = write_csv(tmp_path / "out.csv", [outbound_row(f"CK{i:03d}") for i in range(70)])
    out = cli("--transaction", "outbound", "--file", str(src))
    assert out.returncode == 0, out.stderr
    assert "outbound: read 70 rows, sent 70 in 3 requests, held back 0" in out.stdout
    assert "ACCEPTED             70" in out.stdout
    assert store.count_rows() == 70
    again = cli("--transaction", "outbound", "--file", str(src))
    assert again.returncode == 0
    assert "sent 0 in 0 requests" in again.stdout
    assert store.count_rows() == 70


def test_some_rows_rejected_exits_1_and_names_them(cli, tmp_path, store):
    src = write_csv(tmp_path / "stock.csv", [stock_row("KC1"), stock_row("KC2", stock_quantity="-3")])
    out = cli("--transaction", "stock", "--file", str(src))
    assert out.returncode == 1
    assert "REJECTED             1" in out.stdout
    assert "rejected KC2: 【字段校验失败】库存数量(kcsl)不能小于0: '-3'" in out.stdout


def test_missing_columns_exit_2_before_sending(cli, tmp_path, simulator):
    src = write_csv(tmp_path / "bad.csv", [{"serial_no": "X1", "quantity": "1"}])
    out = cli("--transaction", "outbound", "--file", str(src))
    assert out.returncode == 2
    assert "lacks required column(s) for JXC003" in out.stderr
    assert "insurance_item_code" in out.stderr
    assert simulator.requests == 0


def test_whole_call_rejected_exits_2(cli, tmp_path, simulator):
    src = write_csv(tmp_path / "out.csv", [outbound_row("CK1")])
    bad = json.dumps(
        {
            "conn_type": "cdyb_jxc",
            "host": simulator.url,
            "login": USER,
            "password": "wrong-code",
            "extra": {"institution_code": INSTITUTION},
        }
    )
    out = cli(
        "--transaction", "outbound", "--file", str(src), conn_env={"AIRFLOW_CONN_CDYB_JXC_DEFAULT": bad}
    )
    assert out.returncode == 2
    assert "the centre rejected the whole call: 【用户名或验证码错误】" in out.stderr
    assert "wrong-code" not in out.stdout + out.stderr


def test_usage_errors_exit_2(cli, tmp_path):
    out = cli("--transaction", "refund", "--file", "x.csv")
    assert out.returncode == 2
    out = cli("--transaction", "outbound", "--file", str(tmp_path / "missing.csv"))
    assert out.returncode == 2
    assert "does not exist" in out.stderr


def test_undefined_connection_exits_2_naming_it_without_a_traceback(cli, tmp_path, simulator):
    src = write_csv(tmp_path / "out.csv", [outbound_row("CK1")])
    out = cli("--transaction", "outbound", "--file", str(src), "--conn-id", "nosuch_conn")
    assert out.returncode == 2
    assert "connection 'nosuch_conn' is not defined" in out.stderr
    assert "AIRFLOW_CONN_NOSUCH_CONN" in out.stderr
    assert "Traceback" not in out.stderr
    assert simulator.requests == 0

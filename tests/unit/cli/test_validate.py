"""``cdyb-jxc validate``: the rows an upload would hold back, as text or CSV, with SPEC-style exit codes."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

import pytest

from cdyb_jxc.cli import main
from tests.conftest import outbound_row, write_csv


def _run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["validate", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_a_clean_file_exits_0_and_says_every_row_goes(tmp_path, capsys):
    source = write_csv(tmp_path / "out.csv", [outbound_row("A1"), outbound_row("A2", 2)])
    code, out, _ = _run(capsys, "--transaction", "outbound", "--file", str(source))
    assert code == 0
    assert out.strip() == "2 rows read, 2 would be sent, 0 problem(s)"


def test_problems_are_listed_one_per_line_as_csv(tmp_path, capsys):
    rows = [outbound_row("A1"), outbound_row("A2", quantity="abc"), outbound_row("A1"), outbound_row("A3", 3)]
    mapping = tmp_path / "mapping.csv"
    mapping.write_text(
        "mapping_serial_no,insurance_item_code\nM0001,XA000001\nM0002,XA000002\n", encoding="utf-8"
    )
    source = write_csv(tmp_path / "out.csv", rows)
    args = ["--transaction", "outbound", "--file", str(source), "--mapping", str(mapping), "--format", "csv"]
    code, out, _ = _run(capsys, *args)
    assert code == 1
    lines = list(csv.reader(io.StringIO(out)))
    assert lines[0] == ["row", "serial_no", "category", "field", "detail"]
    assert lines[1] == ["2", "A2", "字段校验失败", "quantity", "出库数量(akc226)不是合法的数值: 'abc'"]
    assert lines[2] == [
        "3",
        "A1",
        "源数据问题",
        "serial_no",
        "流水号在数据源中重复(源数据第3行)，仅上传第一条",
    ]
    assert lines[3][:4] == ["4", "A3", "未对码", "mapping_serial_no"]  # M0003 is not in the mapping copy
    assert len(lines) == 4


def test_text_output_names_row_serial_category_and_field(tmp_path, capsys):
    source = write_csv(tmp_path / "out.csv", [outbound_row("A1", quantity="-1")])
    code, out, _ = _run(capsys, "--transaction", "outbound", "--file", str(source))
    first, summary = out.strip().splitlines()
    assert code == 1
    assert first.startswith("第1行 流水号 A1: 【")
    assert " quantity: " in first
    assert summary == "1 rows read, 0 would be sent, 1 problem(s)"


def test_a_file_that_cannot_be_read_is_a_source_issue(tmp_path, capsys):
    source = tmp_path / "out.csv"
    source.write_bytes("serial_no,quantity\nA1,\xff\n".encode("latin-1"))
    code, out, _ = _run(capsys, "--transaction", "outbound", "--file", str(source), "--format", "csv")
    assert code == 1
    (header, line) = list(csv.reader(io.StringIO(out)))
    assert header[0] == "row"
    assert line[:2] == ["", ""]
    assert line[2] == "源数据问题"


@pytest.mark.parametrize(
    "args",
    [
        ["--transaction", "outbound", "--file", "missing.csv"],
        ["--transaction", "refund", "--file", "x.csv"],
        ["--transaction", "outbound"],
        ["--transaction", "outbound", "--file", "PLACEHOLDER", "--mapping", "missing-mapping.csv"],
    ],
    ids=["no-file", "bad-transaction", "no-file-option", "no-mapping-file"],
)
def test_usage_errors_exit_2(tmp_path, capsys, args, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_csv(tmp_path / "PLACEHOLDER", [outbound_row("A1")])
    try:
        code = main(["validate", *args])
    except SystemExit as stop:  # argparse's own usage errors
        code = int(stop.code or 0)
    assert code == 2


def test_validate_needs_no_connection_and_never_loads_airflow(tmp_path):
    source = write_csv(tmp_path / "out.csv", [outbound_row("A1", quantity="abc")])
    check = (
        "import sys\nfrom cdyb_jxc.cli import main\n"
        f"code = main(['validate', '--transaction', 'outbound', '--file', {str(source)!r}])\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'airflow'], 'airflow loaded'\n"
        "assert 'requests' not in sys.modules and 'zeep' not in sys.modules\n"
        "sys.exit(code)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(Path(__file__).resolve().parents[3] / "plugins")}
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 1, out.stderr[-2000:]
    assert "字段校验失败" in out.stdout

"""Bad-input corpus, the command line: bad inputs through ``cdyb-jxc upload``, its options, the exit status
the operations team scripts against, the one line the user reads, and terminal output with the source's
control characters escaped. The rules of the corpus are in ``conftest.py``.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from cdyb_jxc.cli import main as cli_main
from cdyb_jxc.ledger import IN_DOUBT, Ledger
from tests.conftest import outbound_row, write_csv
from tests.integration.reliability.conftest import (
    CSV_HINT,
    FEW_COLUMNS,
    LACKS,
    RAGGED,
    cli_error_line,
    conn_env,
    csv_text,
    long_csv,
    write_xlsx,
)


@pytest.fixture
def upload_cli(simulator, tmp_path, capsys, monkeypatch):
    """Run ``cdyb-jxc upload`` in this process; returns (status, stdout, stderr). ``cdyb_jxc_default``
    points at the simulator until a test sets it otherwise with :func:`conn_env`."""
    conn_env(monkeypatch, simulator.url, timeout=5)

    def _run(path: Path, *options: str, txn: str = "outbound") -> tuple[int, str, str]:
        capsys.readouterr()
        argv = ["upload", "--transaction", txn, "--file", str(path), "--no-progress"]
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        try:
            code = cli_main([*argv, "--ledger", f"sqlite:///{tmp_path / 'cli-ledger.db'}", *options])
        finally:  # the command configures logging for its process: undo it for the next test
            root.handlers[:], root.level = handlers, level
        out, err = capsys.readouterr()
        return code, out, err

    return _run


def test_cli_missing_columns_exit_2_before_sending(simulator, tmp_path, monkeypatch):
    """As a real process: the exit status the operations team scripts against."""
    conn_env(monkeypatch, simulator.url)
    src = write_csv(tmp_path / "out.csv", FEW_COLUMNS)
    out = subprocess.run(
        [sys.executable, "-m", "cdyb_jxc", "upload", "--transaction", "outbound", "--file", str(src),
         "--ledger", f"sqlite:///{tmp_path / 'ledger.db'}"],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert cli_error_line(out.stderr) == "cdyb-jxc: " + LACKS.format(path=src)
    assert simulator.requests == 0


CLI_CASES = [
    # (file name, writer, connection extra, exit status, message)
    pytest.param(
        "out.csv",
        lambda p: write_csv(p, [outbound_row("CK1")]),
        {"environment": "production"},
        2,
        "connection 'cdyb_jxc_default': extra 'environment' must be test or prod, not 'production'",
        id="bad-connection-extra",
    ),
    pytest.param(
        "out.csv",
        lambda p: write_csv(p, [outbound_row("CK1")]),
        {"profile": "{dir}/gbk.toml"},
        2,
        "profile file {dir}/gbk.toml cannot be read as UTF-8: 'utf-8' codec can't decode byte 0xb3 in"
        " position 8: invalid start byte",
        id="profile-saved-as-gbk",
    ),
    pytest.param(
        "out.xlsx",
        lambda p: p.write_text("<html><table></table></html>", encoding="utf-8"),
        {},
        2,
        "cannot read {dir}/out.xlsx: File is not a zip file",
        id="xlsx-that-is-not-excel",
    ),
    pytest.param(
        "missing.csv", None, {}, 2, "source file {dir}/missing.csv does not exist", id="file-does-not-exist"
    ),
]


@pytest.mark.parametrize(("name", "writer", "extra", "status", "message"), CLI_CASES)
def test_cli_reports_bad_input_in_one_line(
    simulator, upload_cli, tmp_path, monkeypatch, name, writer, extra, status, message
):
    (tmp_path / "gbk.toml").write_bytes("name = '成都'\n".encode("gbk"))
    conn_env(monkeypatch, simulator.url, **{k: v.format(dir=tmp_path) for k, v in extra.items()})
    src = tmp_path / name
    if writer is not None:
        writer(src)
    code, _, err = upload_cli(src)
    assert code == status
    assert cli_error_line(err) == "cdyb-jxc: " + message.format(dir=tmp_path)


def test_cli_row_without_serial_exits_1_naming_the_source_row(simulator, upload_cli, tmp_path, monkeypatch):
    conn_env(monkeypatch, simulator.url)
    src = write_csv(tmp_path / "out.csv", [outbound_row("CK1"), outbound_row("")])
    code, out, _ = upload_cli(src)
    assert code == 1
    assert "  ACCEPTED             1" in out
    assert "  SOURCE_ISSUE         1 (not sent: see the reject list below)" in out
    assert "  rejected source row 2: 【字段校验失败】源数据第2行: 流水号(yka105)不能为空" in out


def test_cli_server_answering_garbage_exits_1_and_says_to_resume(rogue, upload_cli, tmp_path, monkeypatch):
    rogue.status, rogue.content_type, rogue.body = 200, "text/plain", b"Service temporarily unavailable"
    conn_env(monkeypatch, rogue.url)
    src = write_csv(tmp_path / "out.csv", [outbound_row("CK1")])
    code, out, err = upload_cli(src)
    assert code == 1
    assert cli_error_line(err) == (
        "cdyb-jxc: transport fault, run the same command again to resume: "
        f"unreadable reply from {rogue.url}: not an XML document"
    )
    # three tries (the command resends twice), then the row waits in the ledger for the next run
    assert "outbound: read 1 rows, sent 3 in 3 requests, held back 0" in out
    assert rogue.requests == 3
    ledger = Ledger(f"sqlite:///{tmp_path / 'cli-ledger.db'}")
    (row,) = ledger.iter_rows()
    ledger.dispose()
    assert (row["serial_no"], row["state"]) == ("CK1", IN_DOUBT)
    assert row["detail"] == f"应答丢失: unreadable reply from {rogue.url}: not an XML document"


def test_cli_duplicate_serial_in_source_is_not_a_clean_exit(simulator, upload_cli, tmp_path, monkeypatch):
    conn_env(monkeypatch, simulator.url)
    src = write_csv(tmp_path / "out.csv", [outbound_row("CK1"), outbound_row("CK1", quantity="5")])
    code, out, _ = upload_cli(src)
    assert "rejected CK1: 【数据重复上传】流水号在数据源中重复(源数据第2行)，仅上传第一条" in out
    assert code != 0


def test_cli_ragged_line_6000_exits_2_before_sending(simulator, upload_cli, tmp_path):
    src = long_csv(tmp_path, RAGGED)
    code, out, err = upload_cli(src)
    assert code == 2
    assert cli_error_line(err) == (
        f"cdyb-jxc: {src} line 6000 has 11 values where the header has 10 columns" + CSV_HINT
    )
    assert "read 0 rows, sent 0 in 0 requests" in out
    assert simulator.requests == 0


def test_cli_encoding_option(simulator, upload_cli, tmp_path):
    src = tmp_path / "out.csv"
    src.write_bytes(csv_text([outbound_row("CK1"), outbound_row("CK2")], tmp_path).encode("gbk"))
    code, _, err = upload_cli(src)
    assert code == 2
    assert cli_error_line(err) == (
        f"cdyb-jxc: {src} is not UTF-8 (undecodable byte 0xb0 at line 2); it reads as GB18030: pass"
        " --encoding gb18030 (operator argument encoding='gb18030')"
    )
    code, _, err = upload_cli(src, "--encoding", "gbkk")
    assert (code, cli_error_line(err)) == (2, "cdyb-jxc: unknown encoding 'gbkk' (e.g. utf-8, gb18030)")
    assert simulator.requests == 0
    code, out, _ = upload_cli(src, "--encoding", "gb18030")
    assert code == 0
    assert "  ACCEPTED             2" in out


def test_cli_sheet_option(simulator, upload_cli, tmp_path):
    src = write_xlsx(tmp_path / "out.xlsx", [outbound_row("CK1")], {"汇总": [["合计", 2]]})
    code, _, err = upload_cli(src)
    assert code == 2
    assert "name the one to upload with --sheet" in cli_error_line(err)
    code, _, err = upload_cli(src, "--sheet", "出库单")
    assert (code, cli_error_line(err)) == (
        2,
        f"cdyb-jxc: {src} has no sheet named '出库单' (sheets: '出库', '汇总')",
    )
    assert simulator.requests == 0
    code, out, _ = upload_cli(src, "--sheet", "出库")
    assert code == 0
    assert "  ACCEPTED             1" in out


def test_cli_unknown_columns_are_warned_about_in_the_output_escaped(simulator, centre_conn, tmp_path):
    """As a real process: warnings reach the terminal, with the source's control characters escaped."""
    evil = "CK\x1b[31m2"
    rows = [{**outbound_row("CK1"), "his_id": "7", "操作员\x1b[8m": "x"}, outbound_row(evil, quantity="-")]
    src = write_csv(tmp_path / "out.csv", [*rows, outbound_row(evil)])
    out = subprocess.run(
        [sys.executable, "-m", "cdyb_jxc", "upload", "--transaction", "outbound", "--file", str(src),
         "--ledger", f"sqlite:///{tmp_path / 'ledger.db'}"],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert out.returncode == 1, out.stderr
    shown = out.stdout + out.stderr  # Airflow's logging writes to stdout, the command's own lines to both
    assert (
        f"{src}: column(s) not in the profile for JXC003 药品出库信息上传, ignored:"
        " 'his_id', '操作员\\x1b[8m'" in shown
    )
    assert "JXC003 流水号 CK\\x1b[31m2 appears more than once in the source" in shown  # a log line
    assert "  rejected CK\\x1b[31m2: 【字段校验失败】" in out.stdout
    assert "\x1b" not in shown


def test_cli_escapes_control_characters_of_source_values(simulator, upload_cli, tmp_path):
    evil = "CK\x1b[2K\rCK2\x08\u202e"  # erase the line, return, backspace, right-to-left override
    rows = [
        outbound_row(evil, quantity="abc"),
        outbound_row("CK3", hospital_item_name="阿莫\x1b]0;pwned\x07西林"),
    ]
    src = write_csv(tmp_path / "out.csv", rows)
    code, out, err = upload_cli(src)
    assert code == 1
    for text in (out, err):
        assert not {"\x1b", "\r", "\x08", "\u202e"} & set(text)
    assert (
        "  rejected CK\\x1b[2K\\x0dCK2\\x08\\u202e: 【字符集错误】流水号(yka105)含GBK无法表示的字符(U+202E)"
        in out
    )


def test_cli_escapes_control_characters_in_error_messages(simulator, upload_cli, tmp_path):
    src = tmp_path / "out.csv"
    text = csv_text([outbound_row("CK1")], tmp_path)
    src.write_text("Serial_No\x1b[2J" + text[text.index(",") :], encoding="utf-8")
    code, _, err = upload_cli(src)
    assert code == 2
    assert "\x1b" not in err
    assert "(columns are the profile's logical names; found: Serial_No\\x1b[2J, " in cli_error_line(err)

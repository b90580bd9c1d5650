"""Bad-input corpus, source files: ambiguous means refused, before anything is sent.

Same style as ``test_bad_input_corpus.py``: each case feeds one bad source file through the real code path
(the uploader or ``cdyb-jxc upload`` against the real simulator) and asserts the exact message. Whole-file
problems stop before the first request (``simulator.requests == 0``) and leave the ledger empty, wherever in
the file they are; rows that are only individually bad end in the ledger with their reason.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from cdyb_jxc.cli import main as cli_main
from cdyb_jxc.exceptions import SourceDataError
from cdyb_jxc.ledger import ACCEPTED, REJECTED, Ledger
from cdyb_jxc.upload.engine import Uploader
from cdyb_jxc.upload.sources import iter_file_chunks
from cdyb_jxc.wire.client import CentreClient
from cdyb_jxc.wire.profile import Profile
from tests.conftest import INSTITUTION, SECRET, USER, inbound_row, outbound_row, write_csv

# ---------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def ledger_url(tmp_path: Path) -> str:
    """These cases need no second database: SQLite only."""
    return f"sqlite:///{tmp_path / 'ledger.db'}"


def _upload(
    profile: Profile, client: CentreClient, ledger: Ledger, path: Path, txn: str = "outbound", **kw: Any
):
    uploader = Uploader(
        profile=profile,
        txn_key=txn,
        institution_code=INSTITUTION,
        sender=client,
        ledger=ledger,
        sleep=lambda s: None,
        resend_attempts=0,
    )
    return uploader.run(iter_file_chunks(path, profile.transaction(txn), **kw))


def _rows(ledger: Ledger) -> dict[str, dict[str, Any]]:
    return {r["serial_no"]: r for r in ledger.iter_rows()}


def _csv_text(rows: list[dict[str, Any]], tmp_path: Path) -> str:
    return write_csv(tmp_path / "template.csv", rows).read_text(encoding="utf-8")


def _long_csv(tmp_path: Path, bad: str | None, rows: int = 7000, at_line: int = 6000) -> Path:
    lines = _csv_text([outbound_row(f"CK{i:05d}", (i % 8) + 1) for i in range(rows)], tmp_path).splitlines()
    if bad is not None:
        lines[at_line - 1] = bad
    src = tmp_path / "out.csv"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return src


def _xlsx(path: Path, rows: list[dict[str, Any]], sheets: dict[str, list[list[Any]]] | None = None) -> Path:
    from openpyxl import Workbook

    book = Workbook()
    book.active.title = "出库"
    book.active.append(list(rows[0]))
    for row in rows:
        book.active.append(list(row.values()))
    for title, extra in (sheets or {}).items():
        sheet = book.create_sheet(title)
        for values in extra:
            sheet.append(values)
    book.save(path)
    return path


def _header(first: str) -> Callable[[Path], Path]:
    def write(path: Path) -> Path:
        text = _csv_text([outbound_row("CK1"), outbound_row("CK2")], path.parent)
        path.write_text(first + text[text.index(",") :], encoding="utf-8")
        return path

    return write


_HINT = " (an unquoted comma, or a value missing?)"
RAGGED = "CK9,XA000001,x,M0001,0,盒,21,12.5,2,2026-11-20 10:00:00,extra"

# (file name, writer, exact message with {path})
WHOLE_FILE_CASES = [
    pytest.param(
        "out.csv",
        lambda p: _long_csv(p.parent, RAGGED),
        "{path} line 6000 has 11 values where the header has 10 columns" + _HINT,
        id="ragged-row-at-line-6000-of-7000",
    ),
    pytest.param(
        "out.csv",
        lambda p: _long_csv(p.parent, "CK9,XA000001,x,M0001,0,盒,21"),
        "{path} line 6000 has 7 values where the header has 10 columns" + _HINT,
        id="short-row-at-line-6000-of-7000",
    ),
    pytest.param(
        "out.csv",
        lambda p: _long_csv(p.parent, 'CK9,XA000001,"x"y,M0001,0,盒,21,12.5,2,2026-11-20 10:00:00'),
        "{path} line 6000: malformed CSV (',' expected after '\"')",
        id="bad-quote-at-line-6000",
    ),
    pytest.param(
        "out.csv",
        lambda p: _long_csv(
            p.parent, 'CK9,XA000001,"x,M0001,0,盒,21,12.5,2,2026-11-20 10:00:00', at_line=6999
        ),
        "{path} line 6999: a quoted value opened there is never closed (malformed CSV)",
        id="unclosed-quote-near-the-end",
    ),
    pytest.param(
        "out.csv",
        lambda p: p.write_bytes(
            _long_csv(p.parent, "CK9,XA000001,阿莫西林,M0001,0,盒,21,12.5,2,2026-11-20 10:00:00")
            .read_bytes()
            .replace("阿莫西林,".encode(), "阿莫西林,".encode("gbk"))
        ),
        # the rest of the file is UTF-8 Chinese, which GB18030 cannot read either: a mixed file
        "{path} is not UTF-8 (undecodable byte 0xb0 at line 6000) nor GB18030: pass its encoding with"
        " --encoding (operator: encoding)",
        id="one-gbk-line-at-6000",
    ),
    pytest.param(
        "out.csv",
        _header(" serial_no"),
        "{path}: column(s) match the profile's logical names only after trimming spaces or ignoring case:"
        " ' serial_no' (for serial_no); rename them exactly",
        id="header-with-leading-space",
    ),
    pytest.param(
        "out.csv",
        _header("Serial_No"),
        "{path}: column(s) match the profile's logical names only after trimming spaces or ignoring case:"
        " 'Serial_No' (for serial_no); rename them exactly",
        id="header-in-other-case",
    ),
    pytest.param(
        "out.csv",
        _header("unit"),
        "{path}: column(s) appear more than once in the header: 'unit' at positions 1, 6"
        " (which one holds the data is ambiguous)",
        id="header-repeated",
    ),
    pytest.param(
        "out.xlsx",
        lambda p: _xlsx(p, [outbound_row("CK1")], {"汇总": [["合计", 2]]}),
        "{path} has 2 sheets with data ('出库', '汇总'): name the one to upload with --sheet"
        " (operator argument sheet)",
        id="xlsx-two-sheets-with-data",
    ),
    pytest.param(
        "out.xlsx",
        lambda p: _xlsx(p, [outbound_row("CK1"), outbound_row("CK2", serial_no=20261120000123456789)]),
        "{path} cell A3 (column serial_no) holds the number 2.026112000012346e+19, longer than Excel keeps"
        " exactly (digits are already lost): format the column as text in Excel and enter the values again",
        id="xlsx-serial-beyond-float-precision",
    ),
    pytest.param(
        "out.xlsx",
        lambda p: _xlsx(p, [outbound_row("CK1"), outbound_row("CK2", sale_price="=B2*2")]),
        "{path} cell H3 (column sale_price) holds a formula without a calculated value (the workbook was"
        " written by a program that never calculated it): open and save it in Excel, or paste the values",
        id="xlsx-formula-never-calculated",
    ),
    pytest.param(
        "out.xlsx",
        lambda p: _xlsx(p, [outbound_row("CK1", quantity="#VALUE!")]),
        "{path} cell I2 (column quantity) holds the Excel error #VALUE!: correct the cell or its formula",
        id="xlsx-error-value",
    ),
]


@pytest.mark.parametrize(("name", "writer", "message"), WHOLE_FILE_CASES)
def test_whole_file_problem_anywhere_stops_before_the_first_request(
    profile, simulator, client, ledger, tmp_path, name, writer, message
):
    path = tmp_path / name
    writer(path)
    with pytest.raises(SourceDataError) as info:
        _upload(profile, client, ledger, path)
    assert str(info.value) == message.format(path=path)
    assert simulator.requests == 0
    assert _rows(ledger) == {}


def test_the_same_7000_rows_without_the_ragged_line_all_go_out(profile, simulator, client, ledger, tmp_path):
    """The control for the ragged case: it is the one line that stops the file, not its size."""
    src = _long_csv(tmp_path, None)
    result = _upload(profile, client, ledger, src)
    assert result.rows_read == 7000
    assert result.states[ACCEPTED] == 7000
    assert simulator.requests == 70


# ---------------------------------------------------------------------------------------------------------
# values that reach the centre: read as meant, or held back with their reason
# ---------------------------------------------------------------------------------------------------------


def test_gbk_csv_with_encoding_is_stored_with_its_chinese_text(
    profile, simulator, store, client, ledger, tmp_path
):
    src = tmp_path / "in.csv"
    row = inbound_row("RK1", supplier_name="国药控股四川医药股份有限公司", remark="饮片（散装）")
    src.write_bytes(_csv_text([row], tmp_path).encode("gbk"))
    result = _upload(profile, client, ledger, src, txn="inbound", encoding="gb18030")
    assert result.states[ACCEPTED] == 1
    (stored,) = store.accepted_rows()
    assert (stored["supplier_name"], stored["remark"]) == ("国药控股四川医药股份有限公司", "饮片（散装）")


def test_blank_and_null_marker_values_are_never_sent_as_data(profile, simulator, client, ledger, tmp_path):
    rows = [
        inbound_row("RK1"),
        inbound_row("RK2", lot_no="   "),  # required, whitespace only
        inbound_row("RK3", lot_no="NULL"),  # required, the HIS export's null marker
        inbound_row("RK4", remark="\\N", invoice_no=" "),  # optional: absent, the row goes out
        inbound_row("   "),  # no usable 流水号
    ]
    src = write_csv(tmp_path / "in.csv", rows)
    result = _upload(profile, client, ledger, src, txn="inbound")
    ledger_rows = _rows(ledger)
    assert {s: r["state"] for s, r in ledger_rows.items()} == {
        "RK1": ACCEPTED,
        "RK2": REJECTED,
        "RK3": REJECTED,
        "RK4": ACCEPTED,
    }
    assert ledger_rows["RK2"]["detail"] == ledger_rows["RK3"]["detail"] == "批号(ykc010)不能为空" or (
        ledger_rows["RK2"]["field"] == ledger_rows["RK3"]["field"] == "lot_no"
    )
    assert ledger_rows["RK2"]["held_back"] == 1
    assert result.source_issues == 1
    assert simulator.requests == 1


def test_excel_serials_and_times_arrive_as_in_the_cell(profile, simulator, store, client, ledger, tmp_path):
    row = outbound_row("X", serial_no=2026112000012345, event_time=datetime(2026, 11, 20, 23, 59, 59, 999600))
    src = _xlsx(tmp_path / "out.xlsx", [row])
    result = _upload(profile, client, ledger, src)
    assert result.states[ACCEPTED] == 1
    (stored,) = store.accepted_rows()
    assert (stored["serial_no"], stored["event_time"]) == ("2026112000012345", "2026-11-20 23:59:59")


def test_excel_sheet_named_is_the_one_read(profile, simulator, client, ledger, tmp_path):
    src = _xlsx(tmp_path / "out.xlsx", [outbound_row("CK1")], {"汇总": [["合计", 2]]})
    result = _upload(profile, client, ledger, src, sheet="出库")
    assert result.states[ACCEPTED] == 1
    with pytest.raises(SourceDataError) as info:
        _upload(profile, client, ledger, src, sheet="Sheet1")
    assert str(info.value) == f"{src} has no sheet named 'Sheet1' (sheets: '出库', '汇总')"


# ---------------------------------------------------------------------------------------------------------
# through `cdyb-jxc upload`: options, exit status, the line the user reads, escaped terminal output
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def upload_cli(simulator, tmp_path, capsys, monkeypatch):
    """Run ``cdyb-jxc upload`` in this process against the simulator; returns (status, stdout, stderr)."""
    conn = {
        "conn_type": "cdyb_jxc",
        "host": simulator.url,
        "login": USER,
        "password": SECRET,
        "extra": {"institution_code": INSTITUTION, "environment": "test", "timeout": 5},
    }
    monkeypatch.setenv("AIRFLOW_CONN_CDYB_JXC_DEFAULT", json.dumps(conn))

    def _run(path: Path, *options: str, txn: str = "outbound") -> tuple[int, str, str]:
        capsys.readouterr()
        argv = ["upload", "--transaction", txn, "--file", str(path), "--no-progress"]
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        try:
            code = cli_main([*argv, "--ledger", f"sqlite:///{tmp_path / 'cli.db'}", *options])
        finally:  # the command configures logging for its process: undo it for the next test
            root.handlers[:], root.level = handlers, level
        out, err = capsys.readouterr()
        return code, out, err

    return _run


def _error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("cdyb-jxc: ")]
    assert len(lines) == 1, err
    return lines[0]


def test_cli_ragged_line_6000_exits_2_before_sending(simulator, upload_cli, tmp_path):
    src = _long_csv(tmp_path, RAGGED)
    code, out, err = upload_cli(src)
    assert code == 2
    assert _error_line(err) == (
        f"cdyb-jxc: {src} line 6000 has 11 values where the header has 10 columns" + _HINT
    )
    assert "read 0 rows, sent 0 in 0 requests" in out
    assert simulator.requests == 0


def test_cli_encoding_option(simulator, upload_cli, tmp_path):
    src = tmp_path / "out.csv"
    src.write_bytes(_csv_text([outbound_row("CK1"), outbound_row("CK2")], tmp_path).encode("gbk"))
    code, _, err = upload_cli(src)
    assert code == 2
    assert _error_line(err) == (
        f"cdyb-jxc: {src} is not UTF-8 (undecodable byte 0xb0 at line 2); it reads as GB18030: pass"
        " --encoding gb18030 (operator argument encoding='gb18030')"
    )
    code, _, err = upload_cli(src, "--encoding", "gbkk")
    assert (code, _error_line(err)) == (2, "cdyb-jxc: unknown encoding 'gbkk' (e.g. utf-8, gb18030)")
    assert simulator.requests == 0
    code, out, _ = upload_cli(src, "--encoding", "gb18030")
    assert code == 0
    assert "  ACCEPTED             2" in out


def test_cli_sheet_option(simulator, upload_cli, tmp_path):
    src = _xlsx(tmp_path / "out.xlsx", [outbound_row("CK1")], {"汇总": [["合计", 2]]})
    code, _, err = upload_cli(src)
    assert code == 2
    assert "name the one to upload with --sheet" in _error_line(err)
    code, _, err = upload_cli(src, "--sheet", "出库单")
    assert (code, _error_line(err)) == (
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
    text = _csv_text([outbound_row("CK1")], tmp_path)
    src.write_text("Serial_No\x1b[2J" + text[text.index(",") :], encoding="utf-8")
    code, _, err = upload_cli(src)
    assert code == 2
    assert "\x1b" not in err
    assert "(columns are the profile's logical names; found: Serial_No\\x1b[2J, " in _error_line(err)


# ---------------------------------------------------------------------------------------------------------
# the operators take the same options
# ---------------------------------------------------------------------------------------------------------


def _ti() -> Any:
    return SimpleNamespace(dag_id="d", run_id="r", task_id="outbound", map_index=-1, try_number=1)


def test_operator_sheet_and_encoding_arguments(centre_conn, simulator, tmp_path):
    from airflow.sdk.exceptions import AirflowFailException

    from cdyb_jxc.operators.upload import CdybJxcOutboundOperator

    ledger_url = f"sqlite:///{tmp_path}/l.db"
    book = _xlsx(tmp_path / "out.xlsx", [outbound_row("CK1")], {"汇总": [["合计", 2]]})
    gbk = tmp_path / "out.csv"
    gbk.write_bytes(_csv_text([outbound_row("CK2")], tmp_path).encode("gbk"))
    for source, kw in ((book, {}), (gbk, {})):
        op = CdybJxcOutboundOperator(task_id="outbound", source_file=str(source), ledger_url=ledger_url, **kw)
        with pytest.raises(AirflowFailException):
            op.execute({"ti": _ti()})  # type: ignore[arg-type]
    assert simulator.requests == 0
    for source, kw in ((book, {"sheet": "出库"}), (gbk, {"encoding": "gb18030"})):
        op = CdybJxcOutboundOperator(task_id="outbound", source_file=str(source), ledger_url=ledger_url, **kw)
        summary = op.execute({"ti": _ti()})  # type: ignore[arg-type]
        assert summary["states"][ACCEPTED] == 1

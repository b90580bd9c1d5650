"""Bad-input corpus, transport: servers that redirect, trickle, never read, answer too much; bad deadline
settings. The rules of the corpus (conftest.py): the exact message the user reads, no row lost (every row
IN_DOUBT with the reason, retryable), nothing counted accepted.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from cdyb_jxc.cli import main as cli_main
from cdyb_jxc.exceptions import InDoubtError, TransportError
from cdyb_jxc.ledger import IN_DOUBT, Ledger
from cdyb_jxc.wire.client import CentreClient
from cdyb_jxc.wire.profile import Profile
from tests.conftest import SECRET, make_uploader, outbound_row, write_csv
from tests.hostile_centre import HostileCentre
from tests.integration.reliability.conftest import centre_client, conn_env

LIMIT = 4096  # a small reply limit keeps these cases fast; the 200 MB case is in tests/integration/client


@pytest.fixture
def hostile(profile: Profile) -> Iterator[HostileCentre]:
    with HostileCentre(profile) as centre:
        yield centre


# a short deadline keeps the slow servers of these cases fast
_client = functools.partial(centre_client, timeout=2)


def _upload(profile: Profile, client: CentreClient, ledger: Ledger, n: int = 2) -> BaseException:
    uploader = make_uploader(profile, client, ledger)
    with pytest.raises((InDoubtError, TransportError)) as info:
        uploader.run([[outbound_row(f"B{i}", i % 20 + 1) for i in range(n)]])
    client.close()
    return info.value


TRANSPORT_CASES = [
    # (mode, options, client kwargs, message after "{url}" formatting, cut marker of the stored reply or None)
    pytest.param(
        "redirect",
        {"status": 307},
        {},
        "HTTP 307 redirect from {url} to {elsewhere}?jyfwyzm=****** refused: the request carries the"
        " 交易访问验证码 and is never sent anywhere else; check the endpoint URL",
        None,
        id="redirect-307-to-another-port",
    ),
    pytest.param(
        "redirect",
        {"status": 301, "location": ""},
        {},
        "HTTP 301 redirect from {url} to (no Location header) refused: the request carries the"
        " 交易访问验证码 and is never sent anywhere else; check the endpoint URL",
        None,
        id="redirect-without-location",
    ),
    pytest.param(
        "redirect",
        {"status": 302, "location": "http://x/\x1b[31m?a=" + "验证码".encode().decode("latin-1") + "y" * 400},
        {},
        "HTTP 302 redirect from {url} to http://x/\\x1b[31m?a=éª\\x8cè¯\\x81ç\xa0\\x81"
        + "y" * 262
        + "… refused: the"
        " request carries the 交易访问验证码 and is never sent anywhere else; check the endpoint URL",
        None,
        id="redirect-location-with-terminal-escapes-is-escaped-and-cut",
    ),
    pytest.param(
        "trickle",
        {"interval": 0.2},
        {},
        "no complete reply from {url} within the 2s deadline (connection cut; the rows may have been stored)",
        "[cut by cdyb-jxc: deadline passed after ",
        id="trickle-content-length",
    ),
    pytest.param(
        "trickle",
        {"interval": 0.2, "chunked": True},
        {},
        "no complete reply from {url} within the 2s deadline (connection cut; the rows may have been stored)",
        "[cut by cdyb-jxc: deadline passed after ",
        id="trickle-chunked",
    ),
    pytest.param(
        "huge",
        {"size": 10_000_000, "chunked": True},
        {"max_reply_bytes": LIMIT},
        f"unreadable reply from {{url}}: reply larger than the {LIMIT}-byte limit;"
        " refused after reading 65832 bytes",
        f"[cut by cdyb-jxc: reply refused over the {LIMIT}-byte limit; 65832 bytes read, first 65536 kept]",
        id="too-big-chunked",
    ),
    pytest.param(
        "huge",
        {"size": 10_000_000, "chunked": False},
        {"max_reply_bytes": LIMIT},
        f"unreadable reply from {{url}}: reply larger than the {LIMIT}-byte limit;"
        " it announced 10000000 bytes; refused after reading 65536 bytes",
        f"[cut by cdyb-jxc: reply refused over the {LIMIT}-byte limit; 65536 bytes read, first 65536 kept]",
        id="too-big-announced",
    ),
]


@pytest.mark.parametrize(("mode", "options", "client_kw", "message", "marker"), TRANSPORT_CASES)
def test_hostile_transport_leaves_rows_in_doubt_with_reason(
    profile, hostile, ledger, mode, options, client_kw, message, marker
):
    hostile.set_mode(mode, **options)
    err = _upload(profile, _client(profile, hostile.url, **client_kw), ledger)
    expected = message.format(url=hostile.url, elsewhere=hostile.elsewhere.url)
    assert isinstance(err, InDoubtError)
    assert str(err) == expected
    rows = list(ledger.iter_rows())
    assert len(rows) == 2
    assert {(r["state"], r["detail"]) for r in rows} == {(IN_DOUBT, f"应答丢失: {expected}")}
    (batch,) = ledger.batches()
    assert (batch["outcome"], batch["error"]) == ("in_doubt", expected)
    if marker:
        assert batch["reply"].startswith(marker)
        assert len(batch["reply"]) < 70_000
    assert hostile.elsewhere.connections == 0
    assert hostile.requests == 1


@pytest.mark.parametrize(
    ("value", "shown"),
    [("1" + "0" * 30, "'10000000000000000000…'"), ("99999999999", "'99999999999'"), ("-1", "'-1'")],
    ids=["10**30-sqlite-overflow", "beyond-postgresql-integer", "negative"],
)
def test_reply_count_out_of_range_leaves_rows_in_doubt(profile, hostile, ledger, value, shown):
    hostile.set_mode("counts", succnum=value)
    err = _upload(profile, _client(profile, hostile.url), ledger)
    expected = f"unreadable reply from {hostile.url}: reply has a succnum {shown} outside 0..1000000000"
    assert isinstance(err, InDoubtError)
    assert str(err) == expected
    rows = list(ledger.iter_rows())
    assert {(r["state"], r["detail"]) for r in rows} == {(IN_DOUBT, f"应答丢失: {expected}")}
    assert len(rows) == 2
    (batch,) = ledger.batches()
    assert (batch["outcome"], batch["succnum"]) == ("in_doubt", None)


def test_reply_listing_more_rows_than_a_batch_is_refused_before_parsing(profile, hostile, ledger):
    rows = 2 * profile.batch_limit + 1
    hostile.set_mode("many_rows", rows=rows)
    err = _upload(profile, _client(profile, hostile.url), ledger)
    limit = 2 * profile.batch_limit
    expected = (
        f"unreadable reply from {hostile.url}: reply lists more than {limit} rows"
        f" (a batch has at most {profile.batch_limit})"
    )
    assert str(err) == expected
    assert {(r["state"], r["detail"]) for r in ledger.iter_rows()} == {(IN_DOUBT, f"应答丢失: {expected}")}


def test_html_error_page_with_an_unknown_charset_is_kept_readable(profile, hostile, ledger):
    hostile.set_mode("echo", where="html", form="plain", encoding="UTF-8", charset="x-no-such-codec")
    err = _upload(profile, _client(profile, hostile.url), ledger)
    assert str(err) == f"HTTP 500 from {hostile.url} without a SOAP reply"
    (batch,) = ledger.batches()
    assert batch["reply"].startswith("<html><body><h1>500 Internal Server Error</h1><pre>收到的请求: ")
    assert SECRET not in batch["reply"]
    assert "&lt;jyfwyzm&gt;******&lt;/jyfwyzm&gt;" in batch["reply"]
    assert {r["state"] for r in ledger.iter_rows()} == {IN_DOUBT}


def test_server_that_never_reads_is_cut_at_the_deadline(profile, ledger):
    with HostileCentre(profile, mode="slow_read", rcvbuf=2048, chunk=64, interval=0.05) as slow:
        err = _upload(profile, _client(profile, slow.url), ledger, n=100)
        url = slow.url
    assert str(err) == (
        f"no complete reply from {url} within the 2s deadline (connection cut; the rows may have been stored)"
    )
    assert {r["state"] for r in ledger.iter_rows()} == {IN_DOUBT}


def test_connect_that_times_out_is_not_sent(profile, ledger, monkeypatch):
    """Connecting never finishes (a black-holed address): bounded by the deadline, and the rows were
    certainly not sent (PENDING, not IN_DOUBT)."""
    import socket

    def slow_connect(*args: Any, **kwargs: Any) -> Any:
        raise TimeoutError("timed out")

    monkeypatch.setattr(socket, "create_connection", slow_connect)
    monkeypatch.setattr("urllib3.util.connection.create_connection", slow_connect)
    err = _upload(profile, _client(profile, "http://127.0.0.1:9/services/SjcjService"), ledger)
    assert isinstance(err, TransportError)
    assert str(err) == "could not reach http://127.0.0.1:9/services/SjcjService: ConnectTimeout"


def test_cli_refused_redirect_exits_1_and_says_to_resume(profile, hostile, tmp_path, monkeypatch, capsys):
    conn_env(monkeypatch, hostile.url)
    hostile.set_mode("redirect", status=302)
    src = write_csv(tmp_path / "out.csv", [outbound_row("CK1")])
    ledger_url = f"sqlite:///{tmp_path / 'cli.db'}"
    code = cli_main(
        ["upload", "--transaction", "outbound", "--file", str(src), "--ledger", ledger_url, "--no-progress"]
    )
    out, err = capsys.readouterr()
    assert code == 1
    lines = [line for line in err.splitlines() if line.startswith("cdyb-jxc: ")]
    assert lines == [
        (
            "cdyb-jxc: transport fault, run the same command again to resume: HTTP 302 redirect from"
            f" {hostile.url} to {hostile.elsewhere.url}?jyfwyzm=****** refused: the request carries the"
            " 交易访问验证码 and is never sent anywhere else; check the endpoint URL"
        )
    ]
    # three tries (the command resends twice), never followed; the row waits IN_DOUBT for the next run
    assert "outbound: read 1 rows, sent 3 in 3 requests, held back 0" in out
    assert hostile.requests == 3
    ledger = Ledger(ledger_url)
    (row,) = ledger.iter_rows()
    ledger.dispose()
    assert (row["serial_no"], row["state"]) == ("CK1", IN_DOUBT)
    assert hostile.elsewhere.connections == 0
    assert SECRET not in out + err


# ---------------------------------------------------------------------------------------------------------
# the task-level bound: execution_timeout on the packaged DAGs' upload tasks
# ---------------------------------------------------------------------------------------------------------


def test_packaged_upload_tasks_have_an_execution_timeout(monkeypatch, tmp_path):
    from cdyb_jxc.workflows.builder import DagSettings, build_daily_dag, build_init_dag

    monkeypatch.setenv("CDYB_JXC_TASK_TIMEOUT_MINUTES", "45")
    settings = DagSettings.from_env(tmp_path)
    daily, init = build_daily_dag(settings), build_init_dag(settings)
    uploads = [t for dag in (daily, init) for t in dag.tasks if t.task_id.startswith("upload_")]
    assert sorted(t.task_id for t in uploads) == [
        "upload_inbound",
        "upload_init",
        "upload_outbound",
        "upload_stock",
    ]
    assert {t.execution_timeout for t in uploads} == {timedelta(minutes=45)}
    monkeypatch.delenv("CDYB_JXC_TASK_TIMEOUT_MINUTES")
    assert DagSettings.from_env(tmp_path).task_timeout == timedelta(minutes=120)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("two hours", "CDYB_JXC_TASK_TIMEOUT_MINUTES must be a number of minutes, not 'two hours'"),
        ("0", "CDYB_JXC_TASK_TIMEOUT_MINUTES must be between 0 and 1440 minutes, not '0'"),
        ("-5", "CDYB_JXC_TASK_TIMEOUT_MINUTES must be between 0 and 1440 minutes, not '-5'"),
        ("10000", "CDYB_JXC_TASK_TIMEOUT_MINUTES must be between 0 and 1440 minutes, not '10000'"),
        ("nan", "CDYB_JXC_TASK_TIMEOUT_MINUTES must be between 0 and 1440 minutes, not 'nan'"),
    ],
)
def test_bad_task_timeout_setting_is_named(monkeypatch, tmp_path, raw, message):
    from cdyb_jxc.workflows.builder import DagSettings

    monkeypatch.setenv("CDYB_JXC_TASK_TIMEOUT_MINUTES", raw)
    with pytest.raises(ValueError, match="CDYB_JXC_TASK_TIMEOUT_MINUTES") as info:
        DagSettings.from_env(tmp_path)
    assert str(info.value) == message

"""Against a hostile centre (tests/hostile_centre.py): nothing leaks, nothing hangs, nothing is held whole.

* The centre echoes the request (the 验证码 with it) in a SOAP Fault, in ``retmsg``, in every row's error, in
  an HTML 500 page, in every form (plain, XML-escaped, percent-encoded UTF-8 and GBK, char refs, JSON) and
  envelope encoding (UTF-8, GBK, GB18030): the secret, in every form, is in no exception, ledger column,
  decompressed audit blob, monitor answer, log record, CLI output.
* A redirect is never followed; a trickling or never-reading server is cut at the deadline; a 200 MB reply
  is refused while it streams; the WSDL never comes from a file another user could plant.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import stat
import tempfile
import threading
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from cdyb_jxc.cli import main as cli_main
from cdyb_jxc.exceptions import CallRejectedError, InDoubtError
from cdyb_jxc.ledger import IN_DOUBT, PENDING, REJECTED, Ledger
from cdyb_jxc.ledger.schema import metadata
from cdyb_jxc.ui import queries, rejects
from cdyb_jxc.wire.client import CentreClient
from cdyb_jxc.wire.profile import Profile
from cdyb_jxc.wire.transport import MAX_REPLY_BYTES
from cdyb_jxc.wire.wsdl import render_wsdl
from tests.conftest import INSTITUTION, SECRET, USER, make_uploader, outbound_row, write_csv
from tests.hostile_centre import FORMS, PLACES, HostileCentre
from tests.unit.safety.test_redaction import SPECIAL, text_forms

ECHO = "收到的请求"


@pytest.fixture
def hostile(profile: Profile) -> Iterator[HostileCentre]:
    with HostileCentre(profile) as centre:
        yield centre


def make_client(profile: Profile, url: str, secret: str = SECRET, timeout: float = 5) -> CentreClient:
    return CentreClient(
        profile,
        endpoint=url,
        user=USER,
        verification_code=secret,
        institution_code=INSTITUTION,
        timeout=timeout,
    )


def run_upload(
    profile: Profile, client: CentreClient, ledger: Ledger, serials: list[str]
) -> BaseException | None:
    uploader = make_uploader(profile, client, ledger)
    try:
        uploader.run([[outbound_row(s, i % 20 + 1) for i, s in enumerate(serials)]])
    except (InDoubtError, CallRejectedError) as err:
        return err
    return None


def capture_bodies(client: CentreClient) -> list[bytes | None]:
    """The reply bodies zeep parsed, one per call: the calls run on the sender's worker threads, each with
    its own transport, so each body is read on the thread that received it."""
    bodies: list[bytes | None] = []
    send_request = client.send_request

    def sending(request: Any) -> Any:
        try:
            return send_request(request)
        finally:
            bodies.append(client.transport.last_body)

    client.send_request = sending  # type: ignore[method-assign]
    return bodies


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        try:
            return zlib.decompress(value).decode("utf-8", "replace")
        except zlib.error:
            return value.decode("latin-1")
    return str(value)


def ledger_haystack(ledger: Ledger) -> list[str]:
    """Every column of every ledger table (blobs decompressed), the audit batches and the monitor's JSON."""
    out: list[str] = []
    with ledger.engine.connect() as conn:
        for table in metadata.sorted_tables:
            if not ledger.engine.dialect.has_table(conn, table.name):
                continue
            out += [_text(v) for row in conn.execute(select(table)) for v in row if v is not None]
    out += [json.dumps(b, default=str, ensure_ascii=False) for b in ledger.batches()]
    engine = ledger.engine
    answers = [
        queries.summary(engine),
        rejects.rejects(engine),
        queries.queues(engine),
        queries.calendar(engine),
    ]
    answers += [queries.trend(engine), rejects.all_rejects(engine)]
    out += [json.dumps(a, default=str, ensure_ascii=False) for a in answers]
    return out


def assert_no_secret(secret: str, haystack: list[str]) -> None:
    forms = text_forms(secret)
    for text in haystack:
        for name, form in forms.items():
            assert form not in text, (
                f"the 验证码 ({name}) leaked: …{text[max(0, text.find(form) - 80) :][:200]}…"
            )


def _logs(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records] + [caplog.text]


# ---------------------------------------------------------------------------------------------------------
# echoes: the whole matrix through the real client, uploader and ledger
# ---------------------------------------------------------------------------------------------------------

ECHO_CASES = [
    pytest.param(where, form, encoding, id=f"{where}-{form}-{encoding}")
    for where in PLACES
    for form in FORMS
    for encoding in ("UTF-8", "GBK", "GB18030")
]


@pytest.mark.parametrize("secret", [SECRET, SPECIAL], ids=["conftest-secret", "special-chars"])
@pytest.mark.parametrize(("where", "form", "encoding"), ECHO_CASES)
def test_echoed_secret_is_nowhere(profile, hostile, tmp_path, caplog, secret, where, form, encoding):
    caplog.set_level(logging.DEBUG)
    logging.getLogger("zeep").setLevel(logging.DEBUG)
    hostile.set_mode("echo", where=where, form=form, encoding=encoding)
    client = make_client(profile, hostile.url, secret)
    bodies = capture_bodies(client)
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        err = run_upload(profile, client, ledger, ["E1", "E2"])
        rows = {r["serial_no"]: r for r in ledger.iter_rows()}
        haystack = ledger_haystack(ledger)
        body = bodies[-1] if bodies else None  # what zeep parsed: redacted before it became text
    finally:
        logging.getLogger("zeep").setLevel(logging.WARNING)
        client.close()
        ledger.dispose()
    expected = {"fault": IN_DOUBT, "html": IN_DOUBT, "retmsg": PENDING, "errmsg": REJECTED}[where]
    assert {r["state"] for r in rows.values()} == {expected}
    assert len(rows) == 2
    if err is not None:
        haystack += [str(err), repr(err), str(getattr(err, "reply_text", ""))]
    haystack += _logs(caplog)
    assert hostile.requests == 1
    assert any(ECHO in h for h in haystack), "the echo never reached the ledger: the test proves nothing"
    assert_no_secret(secret, haystack)
    assert body is not None
    assert_no_secret(secret, [body.decode(encoding, "replace")])


def test_echo_in_every_place_through_the_cli(profile, hostile, tmp_path, monkeypatch, capsys, caplog):
    """``cdyb-jxc upload`` as the operations team runs it: stdout, stderr, ledger, monitor, logs."""
    caplog.set_level(logging.DEBUG)
    conn = {
        "conn_type": "cdyb_jxc",
        "host": hostile.url,
        "login": USER,
        "password": SECRET,
        "extra": {"institution_code": INSTITUTION, "environment": "test", "timeout": 5},
    }
    monkeypatch.setenv("AIRFLOW_CONN_CDYB_JXC_DEFAULT", json.dumps(conn))
    ledger_url = f"sqlite:///{tmp_path / 'cli.db'}"
    haystack: list[str] = []
    codes = {}
    cases = [("errmsg", "percent_gbk", "GBK"), ("retmsg", "charref", "UTF-8"), ("fault", "plain", "GB18030")]
    cases.append(("html", "json", "GBK"))
    for n, (where, form, encoding) in enumerate(cases):
        hostile.set_mode("echo", where=where, form=form, encoding=encoding)
        src = write_csv(tmp_path / f"{n}.csv", [outbound_row(f"C{n}-1"), outbound_row(f"C{n}-2", 2)])
        capsys.readouterr()
        codes[where] = cli_main(
            [
                "upload",
                "--transaction",
                "outbound",
                "--file",
                str(src),
                "--ledger",
                ledger_url,
                "--no-progress",
            ]
        )
        out, err = capsys.readouterr()
        haystack += [out, err]
    assert codes == {"errmsg": 1, "retmsg": 2, "fault": 1, "html": 1}
    assert any(ECHO in h for h in haystack), "the CLI printed no echo: the test proves nothing"
    ledger = Ledger(ledger_url)
    try:
        haystack += ledger_haystack(ledger)
    finally:
        ledger.dispose()
    haystack += _logs(caplog)
    assert_no_secret(SECRET, haystack)


# ---------------------------------------------------------------------------------------------------------
# redirects
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_is_never_followed(profile, hostile, tmp_path, status):
    hostile.set_mode("redirect", status=status)
    client = make_client(profile, hostile.url)
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        err = run_upload(profile, client, ledger, ["R1", "R2"])
        rows = list(ledger.iter_rows())
        (batch,) = ledger.batches()
    finally:
        client.close()
        ledger.dispose()
    assert isinstance(err, InDoubtError)
    where = f"{hostile.elsewhere.url}?jyfwyzm=******"
    assert str(err) == (
        f"HTTP {status} redirect from {hostile.url} to {where} refused: the request carries the"
        " 交易访问验证码 and is never sent anywhere else; check the endpoint URL"
    )
    time.sleep(0.3)  # anything sent would have arrived by now
    assert (hostile.elsewhere.connections, hostile.elsewhere.received) == (0, b"")
    assert {(r["state"], r["detail"]) for r in rows} == {(IN_DOUBT, f"应答丢失: {err}")}
    assert (batch["outcome"], batch["error"]) == ("in_doubt", str(err))


# ---------------------------------------------------------------------------------------------------------
# deadlines
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_trickling_reply_is_cut_at_the_deadline(profile, hostile, tmp_path, chunked):
    hostile.set_mode("trickle", interval=0.3, chunked=chunked)
    client = make_client(profile, hostile.url, timeout=2)
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    started = time.monotonic()
    try:
        err = run_upload(profile, client, ledger, ["T1"])
        elapsed = time.monotonic() - started
        (row,) = ledger.iter_rows()
        (batch,) = ledger.batches()
    finally:
        client.close()
        ledger.dispose()
    assert isinstance(err, InDoubtError)
    assert str(err) == (
        f"no complete reply from {hostile.url} within the 2s deadline (connection cut; the rows may have been"
        " stored)"
    )
    assert 1.9 < elapsed < 3.5, elapsed
    assert (row["state"], row["detail"]) == (IN_DOUBT, f"应答丢失: {err}")
    assert batch["reply"].startswith("[cut by cdyb-jxc: deadline passed after ")


def test_server_reading_the_request_slowly_is_cut_at_the_deadline(profile, tmp_path):
    """The send is bounded too: a server that reads a few bytes at a time keeps every socket operation
    alive (no per-read timeout fires), the watchdog cuts the call at the deadline."""
    with HostileCentre(profile, mode="slow_read", rcvbuf=2048, chunk=64, interval=0.05) as slow:
        client = make_client(profile, slow.url, timeout=2)
        ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
        started = time.monotonic()
        try:
            err = run_upload(profile, client, ledger, [f"S{i}" for i in range(100)])
            elapsed = time.monotonic() - started
            states = {r["state"] for r in ledger.iter_rows()}
        finally:
            client.close()
            ledger.dispose()
        assert slow.bytes_read > 0
    assert isinstance(err, InDoubtError)
    assert str(err).startswith(f"no complete reply from {slow.url} within the 2s deadline")
    assert elapsed < 3.5, elapsed
    assert states == {IN_DOUBT}


# ---------------------------------------------------------------------------------------------------------
# size
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "content-length"])
def test_200mb_reply_is_refused_while_streaming(profile, hostile, tmp_path, chunked):
    hostile.set_mode("huge", size=200_000_000, chunked=chunked)
    client = make_client(profile, hostile.url, timeout=20)
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    tracemalloc.start()
    try:
        err = run_upload(profile, client, ledger, ["H1", "H2"])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        client.close()
    try:
        rows = list(ledger.iter_rows())
        (batch,) = ledger.batches()
    finally:
        ledger.dispose()
    assert isinstance(err, InDoubtError)
    prefix = f"unreadable reply from {hostile.url}: reply larger than the {MAX_REPLY_BYTES}-byte limit"
    assert str(err).startswith(prefix)
    assert peak < 3 * MAX_REPLY_BYTES + 16 * 1024 * 1024, peak  # never the 200 MB
    assert hostile.bytes_sent < 100_000_000  # the server was cut off long before the end
    assert {r["state"] for r in rows} == {IN_DOUBT}
    assert batch["reply"].startswith("[cut by cdyb-jxc: reply refused over the 16777216-byte limit; ")
    assert len(batch["reply"]) < 70_000
    assert (tmp_path / "ledger.db").stat().st_size < 2 * 1024 * 1024


def test_contradicting_reply_with_2mb_retmsg_leaves_the_batch_in_doubt(profile, hostile, tmp_path):
    hostile.set_mode("contradiction")
    client = make_client(profile, hostile.url)
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    uploader = make_uploader(profile, client, ledger)
    try:
        with pytest.raises(InDoubtError):
            uploader.run([[outbound_row(f"X{i}", i % 20 + 1) for i in range(100)]])
        states = {r["state"] for r in ledger.iter_rows()}
        count = sum(1 for _ in ledger.iter_rows())
    finally:
        client.close()
        ledger.dispose()
    assert (states, count) == ({IN_DOUBT}, 100)  # nothing counted accepted


# ---------------------------------------------------------------------------------------------------------
# the WSDL
# ---------------------------------------------------------------------------------------------------------


def test_wsdl_planted_at_the_old_predictable_path_is_not_used(profile, simulator):
    """Before: the rendered WSDL was cached as ``$TMPDIR/cdyb_jxc_<digest>.wsdl`` and loaded if it existed;
    any local user could plant one pointing the operation elsewhere. Now zeep reads it from memory."""
    import hashlib

    text = render_wsdl(profile, "http://localhost/services/SjcjService")
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    planted = Path(tempfile.gettempdir()) / f"cdyb_jxc_{digest}.wsdl"
    existed = planted.exists()
    if not existed:
        planted.write_text(text.replace("callBusiness", "evilBusiness"), encoding="utf-8")
    opened: list[str] = []
    real_open = open

    def spy(file: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    client = make_client(profile, simulator.url)
    try:
        import builtins

        builtins.open = spy  # type: ignore[assignment]
        try:
            service = client.service
        finally:
            builtins.open = real_open
        assert client.send("outbound", [outbound_row("W1")]).reply.retcode == "1"
        assert service._binding_options["address"] == simulator.url
        assert service._operations.keys() >= {"callBusiness"}
    finally:
        client.close()
        if not existed:
            planted.unlink()
    assert not [p for p in opened if p.endswith(".wsdl") or tempfile.gettempdir() in p], opened


def test_no_world_writable_file_is_read_for_the_wsdl(profile, simulator, monkeypatch, tmp_path):
    """Whatever zeep loads comes from the package or memory: a world-writable temp dir full of files is
    never consulted, and the packaged template itself is not world-writable."""
    from importlib import resources

    hostile_tmp = tmp_path / "tmp"
    hostile_tmp.mkdir()
    hostile_tmp.chmod(0o1777)
    monkeypatch.setenv("TMPDIR", str(hostile_tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(hostile_tmp))
    client = make_client(profile, simulator.url)
    try:
        assert client.send("outbound", [outbound_row("W2")]).reply.retcode == "1"
    finally:
        client.close()
    assert list(hostile_tmp.iterdir()) == []
    template = Path(str(resources.files("cdyb_jxc").joinpath("data/SjcjService.wsdl.tmpl")))
    assert not template.stat().st_mode & stat.S_IWOTH
    assert not os.stat(template.parent).st_mode & stat.S_IWOTH


# ---------------------------------------------------------------------------------------------------------
# wide encodings, proxies
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["UTF-16", "UTF-16BE", "UTF-32", "UTF-32LE"])
def test_wide_fault_without_charset_is_decoded_and_redacted(profile, hostile, tmp_path, encoding):
    """No charset in the Content-Type: the stored reply is decoded as the body names itself (BOM or
    declaration), not as ISO-8859-1, and the secret is cut in the body's own encoding."""
    hostile.set_mode("echo", where="fault", form="plain", encoding=encoding, charset="")
    client = make_client(profile, hostile.url)
    bodies = capture_bodies(client)
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        err = run_upload(profile, client, ledger, ["W1"])
        haystack = ledger_haystack(ledger)
        (batch,) = ledger.batches()
        body = bodies[-1] if bodies else None
    finally:
        client.close()
        ledger.dispose()
    assert isinstance(err, InDoubtError)
    assert str(err).startswith(f"SOAP Fault from {hostile.url}: 收到的请求: ")
    assert "&lt;jyfwyzm&gt;******&lt;/jyfwyzm&gt;" in batch["reply"]  # readable text, not mojibake
    assert body is not None
    for codec in ("utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be"):
        assert SECRET.encode(codec) not in body
        haystack.append(body.decode(codec, "replace"))
    assert_no_secret(SECRET, [*haystack, str(err), str(getattr(err, "reply_text", ""))])


def test_https_proxy_trickling_its_connect_reply_is_cut_at_the_deadline(profile, tmp_path, monkeypatch):
    """urllib3 reads the proxy's CONNECT reply inside connect(): the socket is watched from its creation."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def proxy() -> None:
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n")
            for i in range(100):  # one header line every 0.3 s, never the blank line
                if stop.wait(0.3):
                    return
                with contextlib.suppress(OSError):
                    conn.sendall(b"X-Pad-%d: a\r\n" % i)

    thread = threading.Thread(target=proxy, daemon=True)
    thread.start()
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{server.getsockname()[1]}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    client = make_client(profile, "https://centre.invalid/services/SjcjService", timeout=2)
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    started = time.monotonic()
    try:
        err = run_upload(profile, client, ledger, ["P1"])
        elapsed = time.monotonic() - started
        states = {r["state"] for r in ledger.iter_rows()}
    finally:
        stop.set()
        client.close()
        ledger.dispose()
        server.close()
    assert isinstance(err, InDoubtError)
    assert str(err) == (
        "no complete reply from https://centre.invalid/services/SjcjService within the 2s deadline"
        " (connection cut; the rows may have been stored)"
    )
    assert elapsed < 3.5, elapsed
    assert states == {IN_DOUBT}

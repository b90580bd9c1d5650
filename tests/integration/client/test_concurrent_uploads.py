"""Uploads that meet: source issues of different sources, 流水号 claimed by two transactions at one instant,
fresh ledgers opened by several processes together, one ledger reached under several names. Real processes
and threads against real SQLite files and the local PostgreSQL, the real simulator over loopback."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cdyb_jxc.exceptions import UploadBusyError
from cdyb_jxc.ledger import ACCEPTED, DUPLICATE_CONFLICT, Ledger
from cdyb_jxc.ledger.lock import UploadLock
from cdyb_jxc.ledger.schema import metadata
from cdyb_jxc.upload.engine import Uploader
from cdyb_jxc.upload.result import RunInfo
from cdyb_jxc.upload.source_issues import file_source, task_source
from cdyb_jxc.wire.rules import MappingEntry
from tests.conftest import INSTITUTION, SECRET, USER, inbound_row, outbound_row, write_csv

USED_BY_INBOUND = "流水号已用于JXC002的记录(状态ACCEPTED)，本条未上传；请为本条使用新的流水号"


def _uploader(profile, client, ledger, txn_key="outbound", **kw: Any) -> Uploader:
    kw.setdefault("resend_attempts", 0)
    return Uploader(
        profile=profile,
        txn_key=txn_key,
        institution_code=INSTITUTION,
        sender=client,
        ledger=ledger,
        sleep=lambda s: None,
        **kw,
    )


def _issues(ledger: Ledger) -> list[dict[str, Any]]:
    return list(ledger.iter_source_issues())


def _cli_env(simulator) -> dict[str, str]:
    conn = {
        "conn_type": "cdyb_jxc",
        "host": simulator.url,
        "login": USER,
        "password": SECRET,
        "extra": {"institution_code": INSTITUTION, "environment": "test", "batch_limit": 30},
    }
    return {**os.environ, "AIRFLOW_CONN_CDYB_JXC_DEFAULT": json.dumps(conn)}


def _start_cli(simulator, ledger_url: str, txn: str, src: Path, *extra: str, cwd: Path | None = None):
    return subprocess.Popen(
        [sys.executable, "-m", "cdyb_jxc", "upload", "--transaction", txn, "--file", str(src),
         "--ledger", ledger_url, "--no-progress", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_cli_env(simulator), cwd=cwd,
    )  # fmt: skip


def _finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=240)
    assert "Traceback" not in err, err
    return proc.returncode, out, err


# -- 1. a source issue is keyed by its source, not only its row number --------------------------------------
def test_two_partial_files_of_one_day_keep_both_source_issues(simulator, ledger_url, tmp_path):
    """Two CLI files of the same day, each with a row without 流水号 as its second row: two issues."""
    morning = write_csv(tmp_path / "morning.csv", [outbound_row("AM1"), outbound_row("", quantity="1")])
    evening = write_csv(tmp_path / "evening.csv", [outbound_row("PM1"), outbound_row("", quantity="9")])
    for src in (morning, evening):
        code, out, _ = _finish(_start_cli(simulator, ledger_url, "outbound", src))
        assert code == 1
        assert "rejected source row 2: 【字段校验失败】源数据第2行: 流水号(yka105)不能为空" in out
    ledger = Ledger(ledger_url)
    issues = _issues(ledger)
    assert len(issues) == 2
    assert {(i["source_row"], i["business_date"], i["detail"]) for i in issues} == {
        (2, "2026-11-20", "源数据第2行: 流水号(yka105)不能为空")
    }
    keys = sorted(i["row_key"] for i in issues)
    assert keys[0] != keys[1]
    assert all(k.startswith("#2@") for k in keys)
    # the same file again replaces its own issue, it does not add one
    assert _finish(_start_cli(simulator, ledger_url, "outbound", morning))[0] == 1
    assert sorted(i["row_key"] for i in _issues(ledger)) == keys
    # a file rewritten in place with other rows of the day is another source: both kept
    write_csv(morning, [outbound_row("AM2"), outbound_row("", quantity="3")])
    assert _finish(_start_cli(simulator, ledger_url, "outbound", morning))[0] == 1
    assert len(_issues(ledger)) == 3
    ledger.dispose()


def test_whole_day_run_still_drops_every_fixed_issue_of_its_day(profile, client, ledger, store, tmp_path):
    """Source-named keys do not change the clearing rules: a whole-day run drops its day's issues that it
    no longer sees, whatever source raised them (the DAG's query is the whole day)."""
    a = write_csv(tmp_path / "a.csv", [outbound_row("")])
    b = write_csv(tmp_path / "b.csv", [outbound_row(""), outbound_row("")])
    _uploader(profile, client, ledger, source=file_source(a)).run([[outbound_row("")]])
    _uploader(profile, client, ledger, source=file_source(b)).run([[outbound_row(""), outbound_row("")]])
    assert len(_issues(ledger)) == 3
    day = task_source("cdyb_jxc_daily", "upload_outbound", -1, "his")
    run = RunInfo(token="whole-day")
    result = _uploader(profile, client, ledger, source=day, complete_days=["2026-11-20"], run=run).run(
        [[outbound_row("W1"), outbound_row("")]]
    )
    assert result.states == {ACCEPTED: 1}
    (left,) = _issues(ledger)  # only the one this whole-day run raised
    assert (left["row_key"][:3], left["run_token"]) == ("#2@", "whole-day")


def test_file_source_is_the_content_and_never_reads_a_pipe(tmp_path):
    one = write_csv(tmp_path / "one.csv", [outbound_row("X1")])
    same = tmp_path / "copy.csv"
    same.write_bytes(one.read_bytes())
    assert file_source(one) == file_source(same) == file_source(tmp_path / "." / "copy.csv")
    write_csv(one, [outbound_row("X2")])
    assert file_source(one) != file_source(same)
    read, write = os.pipe()
    os.write(write, b"serial_no\n")
    assert file_source(f"/proc/self/fd/{read}").startswith("file:/")  # not consumed
    assert os.read(read, 100) == b"serial_no\n"
    os.close(read)
    os.close(write)
    assert file_source(tmp_path / "missing.csv") == f"file:{tmp_path / 'missing.csv'}"


# -- 2. two transactions claim one 流水号 at the same instant ------------------------------------------------
class RacingLedger(Ledger):
    """Runs ``competitor`` once, right after this ledger's first lookup: another transaction's upload
    inserting the same 流水号 between this upload's lookup and its insert."""

    competitor: Callable[[], Any] | None = None

    def lookup(self, institution_code, serials):
        found = super().lookup(institution_code, serials)
        run, self.competitor = self.competitor, None
        if run is not None:
            run()
        return found


def test_serial_taken_by_another_transaction_between_lookup_and_insert_is_a_source_issue(
    profile, client, ledger_url, store
):
    ledger = RacingLedger(ledger_url)
    other = Ledger(ledger_url)
    inbound = _uploader(profile, client, other, "inbound")
    ledger.competitor = lambda: inbound.run([[inbound_row("SH-1"), inbound_row("SH-2", 2)]])
    registry = {"M0001": MappingEntry("XA000001")}  # SH-2 (M0002) would be held back as unmapped
    outbound = _uploader(profile, client, ledger, registry=registry)
    rows = [outbound_row("SH-1"), outbound_row("SH-2", 2), outbound_row("OK-3"), outbound_row("MAP-4", 2)]
    result = outbound.run([rows])  # no IntegrityError
    assert result.states == {ACCEPTED: 1, "REJECTED": 1}
    assert (result.held_back, result.source_issues, result.rows_sent) == (1, 2, 1)
    assert sorted(r["serial_no"] for r in result.rejects) == ["MAP-4", "SH-1", "SH-2"]
    issues = {i["row_key"]: i for i in _issues(ledger)}
    assert set(issues) == {"SH-1", "SH-2"}
    assert {(i["transaction_code"], i["category"], i["detail"]) for i in issues.values()} == {
        ("JXC003", "数据重复上传", USED_BY_INBOUND)
    }
    rows_now = {r["serial_no"]: (r["transaction_code"], r["state"]) for r in ledger.iter_rows()}
    assert rows_now == {
        "SH-1": ("JXC002", ACCEPTED),
        "SH-2": ("JXC002", ACCEPTED),
        "OK-3": ("JXC003", ACCEPTED),
        "MAP-4": ("JXC003", "REJECTED"),
    }
    stored = sorted((r["serial_no"], r["transaction_code"]) for r in store.accepted_rows())
    assert stored == [("OK-3", "JXC003"), ("SH-1", "JXC002"), ("SH-2", "JXC002")]
    ledger.dispose()
    other.dispose()


def test_integrity_error_not_caused_by_a_taken_serial_still_raises(ledger):
    from sqlalchemy.exc import IntegrityError

    row = {"institution_code": INSTITUTION, "serial_no": "N1", "transaction_code": "JXC003"}
    with pytest.raises(IntegrityError):  # NOT NULL columns missing: a bug, not a race
        ledger.insert_rows([row])


def test_two_transactions_racing_on_shared_serials_lose_no_row(simulator, ledger_url, tmp_path, store):
    """Two real processes, inbound and outbound, the same 流水号 in small chunks: whichever claims a 流水号
    first uploads it, the other lists it as a source issue; no traceback, no row in no state."""
    serials = [f"RACE{i:04d}" for i in range(300)]
    inbound = write_csv(tmp_path / "in.csv", [inbound_row(s) for s in serials])
    outbound = write_csv(tmp_path / "out.csv", [outbound_row(s) for s in serials])
    Ledger(ledger_url).dispose()  # tables exist: this test is about the rows
    procs = [
        _start_cli(simulator, ledger_url, "inbound", inbound, "--chunk-size", "10"),
        _start_cli(simulator, ledger_url, "outbound", outbound, "--chunk-size", "10"),
    ]
    for proc in procs:
        code, _, err = _finish(proc)
        assert code in (0, 1), err
    ledger = Ledger(ledger_url)
    owner = {r["serial_no"]: r["transaction_code"] for r in ledger.iter_rows()}
    issues = {(i["serial_no"], i["transaction_code"]) for i in _issues(ledger)}
    assert set(owner) == set(serials)
    for serial in serials:  # each 流水号: one transaction's row, the other's source issue
        loser = "JXC003" if owner[serial] == "JXC002" else "JXC002"
        assert (serial, loser) in issues, serial
    assert len(issues) == len(serials)
    assert ledger.count_by_state() == {ACCEPTED: len(serials)}
    assert sorted(r["serial_no"] for r in store.accepted_rows()) == serials
    ledger.dispose()


# -- 3. a fresh ledger opened by several processes at once --------------------------------------------------
def _open_ledger(url: str, barrier: Any, errors: Any) -> None:
    try:
        barrier.wait(timeout=60)
        Ledger(url).dispose()
    except BaseException:  # reported to the parent, which fails the test
        errors.put(traceback.format_exc())


@pytest.mark.parametrize("repeat", range(3))
def test_first_uploads_started_together_create_the_tables_once(ledger_url, repeat):
    from sqlalchemy import create_engine, inspect

    engine = create_engine(ledger_url)
    metadata.drop_all(engine)  # fresh again for each repeat
    engine.dispose()
    ctx = multiprocessing.get_context("fork")
    workers = 6
    barrier, errors = ctx.Barrier(workers), ctx.Queue()
    procs = [ctx.Process(target=_open_ledger, args=(ledger_url, barrier, errors)) for _ in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    failures = [errors.get(timeout=5) for _ in range(errors.qsize())] if not errors.empty() else []
    assert failures == [], "\n".join(failures)
    assert [p.exitcode for p in procs] == [0] * workers
    engine = create_engine(ledger_url)
    assert set(metadata.tables) <= set(inspect(engine).get_table_names())
    engine.dispose()


# -- 4. the lock belongs to the database, not to the spelling of its URL ------------------------------------
@pytest.fixture
def sqlite_ledger(tmp_path) -> Path:
    (tmp_path / "data").mkdir()
    path = tmp_path / "data" / "ledger.db"
    Ledger(f"sqlite:///{path}").dispose()
    (tmp_path / "link.db").symlink_to(path)
    return path


@pytest.mark.parametrize(
    "spelling",
    ["symlink", "relative", "dotted", "relative-then-chdir", "uri-localhost", "uri-empty-authority",
     "uri-escaped", "uri-relative"],
)  # fmt: skip
def test_sqlite_lock_follows_the_file_not_its_spelling(sqlite_ledger, tmp_path, monkeypatch, spelling):
    plain = Ledger(f"sqlite:///{sqlite_ledger}")
    monkeypatch.chdir(tmp_path)
    url = {
        "symlink": f"sqlite:///{tmp_path / 'link.db'}",
        "relative": "sqlite:///data/ledger.db",
        "dotted": f"sqlite:///{tmp_path / 'data' / '..' / 'data' / 'ledger.db'}",
        "relative-then-chdir": "sqlite:///link.db",
        # SQLite URI filenames, read as SQLite reads them: authority empty or localhost, %-escapes decoded
        "uri-localhost": f"sqlite:///file://localhost{sqlite_ledger}?uri=true",
        "uri-empty-authority": f"sqlite:///file://{sqlite_ledger}?uri=true",
        "uri-escaped": f"sqlite:///file:{str(sqlite_ledger).replace('.db', '%2Edb')}?mode=rw&uri=true",
        "uri-relative": "sqlite:///file:data/ledger.db?uri=true&cache=shared",
    }[spelling]
    other = Ledger(url)
    if spelling == "relative-then-chdir":
        monkeypatch.chdir(tmp_path / "data")  # resolved when the ledger was created
    assert other.database_file == str(sqlite_ledger)
    with UploadLock(plain, INSTITUTION, "JXC003"):
        with pytest.raises(UploadBusyError, match="another upload of JXC003"):
            UploadLock(other, INSTITUTION, "JXC003", wait_seconds=0.2, poll_seconds=0.05).__enter__()
        # and the other spelling still reads and writes the same file
        plain.set_milestone(INSTITUTION, "probe", spelling)
        assert other.milestone(INSTITUTION, "probe")["detail"] == spelling
    with UploadLock(other, INSTITUTION, "JXC003", wait_seconds=1):
        pass
    plain.dispose()
    other.dispose()


def test_upload_through_a_symlink_waits_for_the_upload_through_the_plain_path(
    profile, client, sqlite_ledger, tmp_path, store
):
    plain = Ledger(f"sqlite:///{sqlite_ledger}")
    linked = Ledger(f"sqlite:///{tmp_path / 'link.db'}")
    held = UploadLock(plain, INSTITUTION, "JXC003").__enter__()
    try:
        with pytest.raises(UploadBusyError):
            _uploader(profile, client, linked, lock_wait=0.2).run([[outbound_row("SY1")]])
        assert list(linked.iter_rows()) == []
        threading.Timer(0.5, held.release).start()
        result = _uploader(profile, client, linked, lock_wait=30).run([[outbound_row("SY1")]])
        assert result.states == {ACCEPTED: 1}
    finally:
        held.release()
    plain.dispose()
    linked.dispose()


def test_two_cli_uploads_through_two_names_of_one_file_never_run_at_once(
    simulator, sqlite_ledger, tmp_path, store
):
    """The report of issue 10: the same file uploaded twice at once, once through a symlink, gave ~1,400 false
    DUPLICATE_CONFLICT. One waits for the other, then finds every row already accepted."""
    src = write_csv(tmp_path / "out.csv", [outbound_row(f"TW{i:04d}") for i in range(600)])
    procs = [
        _start_cli(simulator, f"sqlite:///{sqlite_ledger}", "outbound", src, "--chunk-size", "50"),
        _start_cli(simulator, "sqlite:///link.db", "outbound", src, "--chunk-size", "50", cwd=tmp_path),
    ]
    outs = [_finish(p) for p in procs]
    assert [code for code, _, _ in outs] == [0, 0], [err for _, _, err in outs]
    ledger = Ledger(f"sqlite:///{sqlite_ledger}")
    assert ledger.count_by_state() == {ACCEPTED: 600}
    assert DUPLICATE_CONFLICT not in "".join(out for _, out, _ in outs)
    assert len(list(store.accepted_rows())) == 600
    ledger.dispose()


def test_postgresql_lock_is_per_database_whatever_the_host_spelling(pg_database):
    by_ip = Ledger(pg_database)
    by_name = Ledger(pg_database.replace("@127.0.0.1:", "@localhost:"))
    assert by_ip.url != by_name.url
    with UploadLock(by_ip, INSTITUTION, "JXC003"):
        with pytest.raises(UploadBusyError):
            UploadLock(by_name, INSTITUTION, "JXC003", wait_seconds=0.2, poll_seconds=0.05).__enter__()
        with UploadLock(by_name, INSTITUTION, "JXC002", wait_seconds=0.2):
            pass  # another transaction is not held up
    with UploadLock(by_name, INSTITUTION, "JXC003", wait_seconds=1):
        pass
    by_ip.dispose()
    by_name.dispose()


def test_sqlite_uri_forms_name_the_file_sqlite_opens():
    from sqlalchemy import make_url

    from cdyb_jxc.ledger.lock import sqlite_file

    assert sqlite_file(make_url("sqlite:///file://localhost/abs/l.db?uri=true")) == "/abs/l.db"
    assert sqlite_file(make_url("sqlite:///file:///abs/l%20b.db?uri=true")) == "/abs/l b.db"
    # without uri=true SQLite reads "file:/abs/l.db" as a relative file name, and so does the lock
    assert sqlite_file(make_url("sqlite:///file:/abs/l.db")) == os.path.realpath("file:/abs/l.db")
    assert sqlite_file(make_url("sqlite:///file://elsewhere/abs/l.db?uri=true")) is None  # SQLite refuses it
    assert sqlite_file(make_url("sqlite:///file:/abs/l.db?mode=memory&uri=true")) is None


# -- a repeated 流水号 fixed at the source: its issue goes once the 流水号 comes back clean ------------------
def test_repeated_serial_issue_is_dropped_once_the_fixed_file_is_accepted(profile, client, ledger, tmp_path):
    rows = [outbound_row("REP1"), outbound_row("REP2"), outbound_row("REP1", quantity="7")]
    bad = write_csv(tmp_path / "bad.csv", rows)
    _uploader(profile, client, ledger, source=file_source(bad)).run([rows])
    (issue,) = _issues(ledger)
    assert (issue["serial_no"], issue["row_key"][:7]) == ("REP1", "REP1#3@")
    # the same repeat in another file keeps the issue (raised again), a file without the 流水号 too
    other = write_csv(tmp_path / "other.csv", [outbound_row("OTHER1")])
    _uploader(profile, client, ledger, source=file_source(other)).run([[outbound_row("OTHER1")]])
    assert [i["serial_no"] for i in _issues(ledger)] == ["REP1"]
    again = write_csv(tmp_path / "again.csv", [*rows, outbound_row("X1")])
    _uploader(profile, client, ledger, source=file_source(again)).run([[*rows, outbound_row("X1")]])
    assert [i["serial_no"] for i in _issues(ledger)] == ["REP1", "REP1"]  # two sources, two issues
    good = write_csv(tmp_path / "good.csv", rows[:2])
    result = _uploader(profile, client, ledger, source=file_source(good)).run([rows[:2]])
    assert result.source_issues == 0
    assert _issues(ledger) == []


# -- the ledger is bound to one environment, atomically ----------------------------------------------------
def test_first_uploads_to_test_and_prod_at_once_bind_one_environment(ledger_url, monkeypatch):
    """Both read "unbound" (the read is slowed to widen the gap), both try to bind: exactly one wins, the
    other is refused and names what the winner bound."""
    import time

    from cdyb_jxc.exceptions import ConnectionConfigError

    Ledger(ledger_url).dispose()
    real = Ledger.milestone

    def slow(self, *args):
        found = real(self, *args)
        time.sleep(0.3)
        return found

    monkeypatch.setattr(Ledger, "milestone", slow)
    outcome: dict[str, str] = {}
    barrier = threading.Barrier(2)

    def bind(environment: str) -> None:
        led = Ledger(ledger_url)
        barrier.wait()
        try:
            led.bind_environment(INSTITUTION, environment)
            outcome[environment] = "bound"
        except ConnectionConfigError as err:
            outcome[environment] = str(err)
        finally:
            led.dispose()

    threads = [threading.Thread(target=bind, args=(env,)) for env in ("test", "prod")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    monkeypatch.setattr(Ledger, "milestone", real)
    led = Ledger(ledger_url)
    winner = led.milestone(INSTITUTION, "environment")["detail"]
    loser = {"test": "prod", "prod": "test"}[winner]
    assert outcome[winner] == "bound"
    assert f"uploads to the {winner!r} environment, but the connection points at {loser!r}" in outcome[loser]
    led.bind_environment(INSTITUTION, winner)  # the winner binds again without complaint
    led.dispose()

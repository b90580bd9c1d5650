"""One upload at a time per (institution, transaction) on a SQLite ledger in a temp dir (the PostgreSQL lock
and locks across processes are in tests/integration/client)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from sqlalchemy import make_url

from cdyb_jxc.exceptions import UploadBusyError
from cdyb_jxc.ledger import Ledger
from cdyb_jxc.ledger.lock import UploadLock, is_sqlite_uri, sqlite_file
from tests.conftest import INSTITUTION, OTHER_INSTITUTION


@pytest.fixture
def ledgers(tmp_path) -> Iterator[tuple[Ledger, Ledger]]:
    """Two handles on one ledger file, as two uploads would open it."""
    first, second = Ledger(f"sqlite:///{tmp_path}/ledger.db"), Ledger(f"sqlite:///{tmp_path}/ledger.db")
    yield first, second
    first.dispose()
    second.dispose()


def test_a_second_upload_of_the_same_transaction_is_refused_once_its_wait_is_over(ledgers):
    first, second = ledgers
    sleeps: list[float] = []

    with UploadLock(first, INSTITUTION, "JXC003"):
        waiting = UploadLock(second, INSTITUTION, "JXC003", wait_seconds=0, sleep=sleeps.append)
        with pytest.raises(UploadBusyError) as info:
            waiting.__enter__()

    assert str(info.value) == (
        f"another upload of JXC003 of {INSTITUTION} is running on ledger {second.url}; "
        "waited 0 s, try again later"
    )
    assert info.value.retryable
    assert sleeps == []


def test_uploads_of_other_transactions_or_institutions_run_beside_it(ledgers):
    first, second = ledgers

    with (
        UploadLock(first, INSTITUTION, "JXC003"),
        UploadLock(second, INSTITUTION, "JXC002", wait_seconds=0),
        UploadLock(second, OTHER_INSTITUTION, "JXC003", wait_seconds=0),
    ):
        pass


def test_a_waiting_upload_gets_the_lock_once_the_other_finishes(ledgers, caplog):
    first, second = ledgers
    holder = UploadLock(first, INSTITUTION, "JXC003").__enter__()
    sleeps: list[float] = []

    def pause(seconds: float) -> None:
        sleeps.append(seconds)
        holder.release()  # the other upload finishes while this one waits

    waiting = UploadLock(second, INSTITUTION, "JXC003", wait_seconds=60, poll_seconds=0.25, sleep=pause)
    with caplog.at_level(logging.INFO, logger="cdyb_jxc.ledger.lock"), waiting:
        pass

    assert sleeps == [0.25]
    assert f"waiting for another upload of JXC003 of {INSTITUTION} to finish" in caplog.text


def test_the_lock_is_free_again_after_the_upload_even_when_it_failed(ledgers):
    first, second = ledgers

    with pytest.raises(RuntimeError), UploadLock(first, INSTITUTION, "JXC003"):
        raise RuntimeError("the upload failed")

    with UploadLock(second, INSTITUTION, "JXC003", wait_seconds=0):
        pass


def test_release_twice_and_check_on_sqlite_never_raise(ledgers):
    lock = UploadLock(ledgers[0], INSTITUTION, "JXC003").__enter__()

    lock.check()
    lock.release()
    lock.release()


def test_a_held_file_lock_keeps_other_uploads_out_until_it_is_released(ledgers):
    lock = UploadLock(ledgers[0], INSTITUTION, "JXC003")
    with lock:
        assert lock.exclusive
    assert not lock.exclusive


def test_the_lock_file_sits_beside_the_ledger_file(ledgers, tmp_path):
    with UploadLock(ledgers[0], INSTITUTION, "JXC003"):
        pass

    (lock_file,) = [p.name for p in tmp_path.iterdir() if p.name.endswith(".lock")]
    assert lock_file.startswith("ledger.db.")


def test_an_in_memory_ledger_needs_no_lock():
    memory = Ledger("sqlite://")

    with (
        UploadLock(memory, INSTITUTION, "JXC003") as one,
        UploadLock(memory, INSTITUTION, "JXC003", wait_seconds=0) as two,
    ):
        # two at once are possible (threads of one process): neither keeps the other's writes out
        assert not one.exclusive
        assert not two.exclusive
    memory.dispose()


def test_a_database_without_a_lock_says_so_and_goes_on(caplog):
    mysql = SimpleNamespace(engine=SimpleNamespace(dialect=SimpleNamespace(name="mysql")), url="mysql://h/db")

    with caplog.at_level(logging.WARNING), UploadLock(mysql, INSTITUTION, "JXC003") as lock:
        assert not lock.exclusive

    assert "no upload lock on a mysql ledger: do not run two uploads of JXC003" in caplog.text


def test_sqlite_file_is_the_real_path_of_the_file(tmp_path, monkeypatch):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "alias").symlink_to(real)
    monkeypatch.chdir(tmp_path)

    assert sqlite_file(make_url("sqlite:///alias/l.db")) == str(real.resolve() / "l.db")
    assert sqlite_file(make_url("sqlite:///real/../real/l.db")) == str(real.resolve() / "l.db")
    assert sqlite_file(make_url(f"sqlite:///file:{real}/l.db?uri=true")) == os.path.realpath(real / "l.db")


@pytest.mark.parametrize(
    "url",
    ["sqlite://", "sqlite:///:memory:", "sqlite:///file:mem?mode=memory&uri=true", "postgresql://h/db"],
)
def test_no_file_for_an_in_memory_database_or_another_dialect(url):
    assert sqlite_file(make_url(url)) is None


def test_a_file_name_is_a_uri_only_with_uri_true():
    assert is_sqlite_uri(make_url("sqlite:///file:l.db?uri=true"))
    assert not is_sqlite_uri(make_url("sqlite:///file:l.db"))
    assert not is_sqlite_uri(make_url("sqlite:///l.db?uri=true"))

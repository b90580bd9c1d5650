"""While an upload writes a SQLite ledger, a thread of its own copies the write-ahead log back into the file,
so the upload's commits do not wait for the disk; it ends with the block, never creates a file, and a
database that is not a SQLite file gets none."""

from __future__ import annotations

import sqlite3
import threading
import time

from cdyb_jxc.ledger import Ledger
from cdyb_jxc.ledger.checkpoint import BackgroundCheckpoints
from tests.unit.ledger.test_store import row


def _wal_frames(path: str) -> tuple[int, int]:
    """(frames in the log, frames copied back) as a no-op checkpoint reports them."""
    with sqlite3.connect(path) as conn:
        _busy, logged, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return logged, copied


def _threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "cdyb-jxc-checkpoint"]


def test_the_log_is_copied_back_while_the_block_runs_and_the_thread_ends_with_it(ledger):
    with ledger.background_checkpoints() as keeper:
        assert _threads() == ["cdyb-jxc-checkpoint"]
        ledger.add_planned([row(f"S{i}") for i in range(200)])
        deadline = time.monotonic() + 10
        while keeper.checkpoints < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert keeper.checkpoints >= 2
    assert _threads() == []
    assert ledger.database_file is not None
    logged, copied = _wal_frames(ledger.database_file)
    assert copied == logged  # nothing the writes left was still waiting for a checkpoint


def test_a_missing_file_is_not_created(tmp_path):
    missing = tmp_path / "gone.db"
    with BackgroundCheckpoints(str(missing), interval=0.01):
        time.sleep(0.05)
    assert not missing.exists()


def test_a_database_that_is_not_a_sqlite_file_gets_no_thread():
    led = Ledger("sqlite://")  # in memory: no log file to copy back
    try:
        with led.background_checkpoints():
            assert _threads() == []
    finally:
        led.dispose()

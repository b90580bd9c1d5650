"""WAL checkpoints of a SQLite ledger on a thread of their own while an upload writes (no Airflow).

SQLite copies its write-ahead log back into the database file (a checkpoint, with an fsync) in whichever
connection commits once the log passes 1000 pages: during an upload that is the uploading thread, which then
waits for the disk (seen: 330 ms for one commit) while the centre's answers wait for it. Here a daemon
thread runs a PASSIVE checkpoint every :data:`INTERVAL` seconds on its own connection: it never blocks
the writer nor waits for it, and it keeps the log short enough that the writer's own checkpoint finds
nothing left to copy. If it falls behind (a slow disk), the writer checkpoints as before, so the log stays
bounded either way.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from types import TracebackType
from urllib.parse import quote

log = logging.getLogger(__name__)

INTERVAL = 0.2  # seconds between checkpoints: the log grows a few hundred pages in that time at most


class BackgroundCheckpoints:
    """Checkpoints the WAL of the SQLite file at ``path`` from a daemon thread while the block runs.

    :param path: the database file
    :param interval: seconds between checkpoints
    """

    def __init__(self, path: str, interval: float = INTERVAL) -> None:
        self.path = path
        self.interval = interval
        self.checkpoints = 0  # how many ran (for tests and logs)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cdyb-jxc-checkpoint", daemon=True)

    def __enter__(self) -> BackgroundCheckpoints:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        try:
            # mode=rw: never creates a file; the ledger made its own
            conn = sqlite3.connect(f"file:{quote(self.path)}?mode=rw", uri=True, timeout=0)
        except sqlite3.Error as err:  # the upload goes on; its commits checkpoint as they always did
            log.debug("no background checkpoints for %s: %s", self.path, err)
            return
        try:
            while not self._stop.wait(self.interval):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.checkpoints += 1
                except sqlite3.Error as err:
                    log.debug("background checkpoint of %s failed: %s", self.path, err)
        finally:
            conn.close()

"""One upload at a time per (institution, transaction) on a ledger (no Airflow).

Two uploads of the same rows at once (a backfill beside the scheduled run, the CLI beside a DAG) would each
see the other's rows as their own and turn the second answer into a false DUPLICATE_CONFLICT. The lock is
held by the process for the whole run and released by the operating system or the database if that process
dies (a SIGKILLed worker leaves nothing behind): an advisory lock on PostgreSQL, an ``flock`` on a file
beside a SQLite ledger. Other databases run without it (a warning says so).

The lock belongs to the database, not to the spelling of its URL: PostgreSQL advisory locks are per database
whatever host name reached it; a SQLite ledger's lock file sits beside the file's real path (symlinks and
relative paths resolved when the :class:`~cdyb_jxc.ledger.Ledger` is created, see :func:`sqlite_file`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Callable
from types import TracebackType
from typing import IO, Any
from urllib.parse import unquote

from sqlalchemy import URL, text

from cdyb_jxc.exceptions import TransportError, UploadBusyError

log = logging.getLogger(__name__)

DEFAULT_WAIT_SECONDS = 300.0


def sqlite_file(url: URL) -> str | None:
    """The real path of a SQLite ledger file (symlinks, ``..`` and the working directory resolved), or
    ``None`` for an in-memory database or another dialect.

    :param url: the ledger's SQLAlchemy URL
    """
    database = url.database
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    if is_sqlite_uri(url):
        if url.query.get("mode") == "memory" or "mode=memory" in database:
            return None
        database = _uri_path(database)
        if not database or database == ":memory:":
            return None
    return os.path.realpath(database)


def is_sqlite_uri(url: URL) -> bool:
    """Whether ``url`` names its SQLite database by a URI filename (``file:…`` with ``?uri=true``); without
    ``uri=true`` SQLite reads ``file:…`` as a plain relative file name."""
    uri = str(url.query.get("uri", "")).strip().lower()
    return bool(url.database and url.database.startswith("file:")) and uri in ("true", "1", "yes", "on")


def _uri_path(uri: str) -> str | None:
    """The file a SQLite URI filename opens, read as SQLite reads it: ``file:`` then an optional
    ``//authority`` (empty or ``localhost``; any other authority SQLite refuses), the path up to ``?`` or
    ``#``, percent-escapes decoded (``file://localhost/abs/l.db`` and ``file:///abs/l.db`` are ``/abs/l.db``).

    :param uri: the URI filename
    """
    rest = re.split(r"[?#]", uri[5:], maxsplit=1)[0]
    if rest.startswith("//"):
        authority, slash, path = rest[2:].partition("/")
        if authority.lower() not in ("", "localhost"):
            return None  # SQLite opens nothing there: no file to lock beside
        rest = slash + path
    return unquote(rest)


class UploadLock:
    """Context manager holding the lock of (institution, transaction) on ``ledger``.

    :param ledger: the ledger (:class:`~cdyb_jxc.ledger.Ledger`)
    :param institution_code: 定点机构编码
    :param transaction_code: e.g. ``JXC003``
    :param wait_seconds: how long to wait for another upload to finish before :class:`UploadBusyError`
    :param poll_seconds: pause between attempts
    """

    def __init__(
        self,
        ledger: Any,
        institution_code: str,
        transaction_code: str,
        *,
        wait_seconds: float = DEFAULT_WAIT_SECONDS,
        poll_seconds: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.ledger = ledger
        self.name = f"cdyb_jxc:{institution_code}:{transaction_code}"
        self.what = f"{transaction_code} of {institution_code}"
        self.wait_seconds = wait_seconds
        self.poll_seconds = poll_seconds
        self.sleep = sleep
        self._conn: Any = None
        self._file: IO[bytes] | None = None
        digest = hashlib.sha256(self.name.encode()).digest()[:8]
        self._key = int.from_bytes(digest, "big", signed=True)  # PostgreSQL advisory lock key
        self._suffix = digest.hex()  # lock file name beside a SQLite ledger

    @property
    def exclusive(self) -> bool:
        """Whether holding it keeps every other upload of these rows out: a PostgreSQL advisory lock or an
        flock is held (a ledger without a lock, or in memory, where two threads could upload at once: no)."""
        return self._conn is not None or self._file is not None

    def __enter__(self) -> UploadLock:
        deadline = time.monotonic() + self.wait_seconds
        waited = False
        while not self._try():
            if time.monotonic() >= deadline:
                raise UploadBusyError(
                    f"another upload of {self.what} is running on ledger {self.ledger.url}; "
                    f"waited {self.wait_seconds:.0f} s, try again later"
                )
            if not waited:
                log.info("waiting for another upload of %s to finish", self.what)
                waited = True
            self.sleep(self.poll_seconds)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def _try(self) -> bool:
        engine = self.ledger.engine
        dialect = engine.dialect.name
        if dialect == "postgresql":
            conn = engine.connect()
            try:
                got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self._key}).scalar())
                conn.commit()
            except BaseException:
                conn.close()
                raise
            if got:
                self._conn = conn
            else:
                conn.close()
            return got
        if dialect == "sqlite":
            # resolved when the ledger was created: a later chdir or another spelling finds the same file
            database = getattr(self.ledger, "database_file", None) or sqlite_file(engine.url)
            if database is None:
                return True  # in memory: one process only
            import fcntl

            handle = open(f"{database}.{self._suffix}.lock", "ab")  # noqa: SIM115 - held until release()
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                return False
            self._file = handle
            return True
        log.warning("no upload lock on a %s ledger: do not run two uploads of %s at once", dialect, self.what)
        return True

    def check(self) -> None:
        """Make sure the lock is still held (a PostgreSQL lock lives as long as its connection, which an
        idle timeout or a network fault can end). Raises :class:`TransportError` when it is gone."""
        if self._conn is None:
            return
        try:
            self._conn.execute(text("SELECT 1")).scalar()
            self._conn.commit()
        except Exception as err:
            raise TransportError(
                f"lost the upload lock of {self.what} (its ledger connection failed: {type(err).__name__});"
                " stopping so that no second upload runs beside this one"
            ) from err

    def release(self) -> None:
        """Give the lock up. Never raises: the run's own outcome matters more than a failed unlock (a
        PostgreSQL lock ends with its connection anyway, an flock with its file)."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
                conn.commit()
            except Exception as err:
                log.warning("could not unlock %s cleanly (%s); closing its connection", self.what, err)
            finally:
                try:
                    conn.close()
                except Exception:
                    log.warning("closing the lock connection of %s failed", self.what)
        if self._file is not None:
            import fcntl

            handle, self._file = self._file, None
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            except OSError as err:
                log.warning("could not unlock %s cleanly (%s)", self.what, err)
            finally:
                handle.close()

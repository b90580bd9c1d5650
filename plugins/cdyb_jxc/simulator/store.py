"""The simulator's persistent store (SQLite): institutions, credentials, the 对码 registry, accepted rows."""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import secrets
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from cdyb_jxc.wire.rules import MappingEntry

SCHEMA = """
CREATE TABLE IF NOT EXISTS institution_credentials (
    institution_code TEXT NOT NULL,
    environment TEXT NOT NULL,
    user TEXT NOT NULL,
    salt TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    PRIMARY KEY (institution_code, environment)
);
CREATE TABLE IF NOT EXISTS mapping (
    institution_code TEXT NOT NULL,
    mapping_serial_no TEXT NOT NULL,
    insurance_item_code TEXT NOT NULL,
    off_hospital_delivery INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (institution_code, mapping_serial_no)
);
CREATE TABLE IF NOT EXISTS accepted_row (
    environment TEXT NOT NULL,
    institution_code TEXT NOT NULL,
    serial_no TEXT NOT NULL,
    transaction_code TEXT NOT NULL,
    mapping_serial_no TEXT NOT NULL,
    payload TEXT NOT NULL,
    accepted_at TEXT NOT NULL,
    PRIMARY KEY (environment, institution_code, serial_no)
);
CREATE INDEX IF NOT EXISTS accepted_row_item
    ON accepted_row (environment, institution_code, transaction_code, mapping_serial_no);
"""

# One encoder for every row (json.dumps with options builds a new one per call).
_PAYLOAD_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _hash_secret(salt: str, secret: str) -> str:
    return hashlib.pbkdf2_hmac("sha256", secret.encode("utf-8"), salt.encode("ascii"), 10_000).hex()


class SimulatorStore:
    """SQLite-backed store. One connection shared by the server's threads behind a lock; every write runs in
    a ``BEGIN IMMEDIATE`` transaction so several processes on one file stay consistent too.

    :param path: database file, or ``":memory:"``
    """

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        self.lock = threading.RLock()
        self.conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        if self.path != ":memory:":
            self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.executescript(SCHEMA)
        self._credential_cache: dict[tuple[str, str, str, str], bool] = {}

    def close(self) -> None:
        with self.lock:
            self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Hold the lock and an IMMEDIATE transaction; commit on success, roll back on error."""
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    # -- seeding ----------------------------------------------------------------------------------------
    def add_institution(
        self, institution_code: str, environment: str, user: str, verification_code: str
    ) -> None:
        salt = secrets.token_hex(8)
        with self.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO institution_credentials VALUES (?, ?, ?, ?, ?)",
                (institution_code, environment, user, salt, _hash_secret(salt, verification_code)),
            )
        self._credential_cache.clear()

    def add_mapping(self, entries: Iterable[tuple[str, str, str, bool]]) -> int:
        rows = [(i, m, c, 1 if off else 0) for i, m, c, off in entries]
        with self.transaction() as conn:
            conn.executemany("INSERT OR REPLACE INTO mapping VALUES (?, ?, ?, ?)", rows)
        return len(rows)

    def seed_csv(self, institutions: TextIO, mapping: TextIO) -> tuple[int, int]:
        """Load the two seed CSVs of SPEC §8. Returns (institutions, mapping entries) loaded."""
        n_inst = 0
        for rec in _read_csv(institutions, ("institution_code", "environment", "user", "verification_code")):
            if rec["environment"] not in ("test", "prod"):
                raise ValueError(
                    f"institutions CSV: environment must be test or prod, not {rec['environment']!r}"
                )
            self.add_institution(
                rec["institution_code"], rec["environment"], rec["user"], rec["verification_code"]
            )
            n_inst += 1
        cols = ("institution_code", "mapping_serial_no", "insurance_item_code", "off_hospital_delivery")
        entries = []
        for rec in _read_csv(mapping, cols):
            flag = (rec["off_hospital_delivery"] or "0").strip()
            if flag not in ("0", "1"):
                raise ValueError(f"mapping CSV: off_hospital_delivery must be 0 or 1, not {flag!r}")
            entries.append(
                (rec["institution_code"], rec["mapping_serial_no"], rec["insurance_item_code"], flag == "1")
            )
        return n_inst, self.add_mapping(entries)

    # -- lookups ----------------------------------------------------------------------------------------
    def institution_known(self, institution_code: str) -> bool:
        with self.lock:
            cur = self.conn.execute(
                "SELECT 1 FROM institution_credentials WHERE institution_code = ? LIMIT 1",
                (institution_code,),
            )
            return cur.fetchone() is not None

    def credentials_ok(self, institution_code: str, environment: str, user: str, secret: str) -> bool:
        key = (institution_code, environment, user, hashlib.sha256(secret.encode("utf-8")).hexdigest())
        cached = self._credential_cache.get(key)
        if cached is not None:
            return cached
        with self.lock:
            row = self.conn.execute(
                "SELECT user, salt, secret_hash FROM institution_credentials WHERE institution_code = ?"
                " AND environment = ?",
                (institution_code, environment),
            ).fetchone()
        ok = bool(row) and row[0] == user and hmac.compare_digest(row[2], _hash_secret(row[1], secret))
        self._credential_cache[key] = ok
        return ok

    def has_mapping(self, institution_code: str) -> bool:
        with self.lock:
            cur = self.conn.execute(
                "SELECT 1 FROM mapping WHERE institution_code = ? LIMIT 1", (institution_code,)
            )
            return cur.fetchone() is not None

    def mapping_for(
        self, conn: sqlite3.Connection, institution_code: str, keys: set[str]
    ) -> dict[str, MappingEntry]:
        found: dict[str, MappingEntry] = {}
        for chunk in _chunks(sorted(keys)):
            marks = ",".join("?" * len(chunk))
            cur = conn.execute(
                "SELECT mapping_serial_no, insurance_item_code, off_hospital_delivery FROM mapping"
                f" WHERE institution_code = ? AND mapping_serial_no IN ({marks})",
                (institution_code, *chunk),
            )
            for key, code, off in cur:
                found[key] = MappingEntry(code, bool(off))
        return found

    def stored_serials(
        self, conn: sqlite3.Connection, environment: str, institution_code: str, serials: set[str]
    ) -> dict[str, tuple[str, str]]:
        """Stored 流水号 among ``serials`` → (transaction code, 医院对码流水号)."""
        found: dict[str, tuple[str, str]] = {}
        for chunk in _chunks(sorted(serials)):
            marks = ",".join("?" * len(chunk))
            cur = conn.execute(
                "SELECT serial_no, transaction_code, mapping_serial_no FROM accepted_row"
                f" WHERE environment = ? AND institution_code = ? AND serial_no IN ({marks})",
                (environment, institution_code, *chunk),
            )
            for serial, txn, item in cur:
                found[serial] = (txn, item)
        return found

    def initialized_items(
        self,
        conn: sqlite3.Connection,
        environment: str,
        institution_code: str,
        txn_code: str,
        items: set[str],
    ) -> set[str]:
        found: set[str] = set()
        for chunk in _chunks(sorted(items)):
            marks = ",".join("?" * len(chunk))
            cur = conn.execute(
                "SELECT DISTINCT mapping_serial_no FROM accepted_row"
                " WHERE environment = ? AND institution_code = ?"
                f" AND transaction_code = ? AND mapping_serial_no IN ({marks})",
                (environment, institution_code, txn_code, *chunk),
            )
            found.update(r[0] for r in cur)
        return found

    def insert_rows(
        self,
        conn: sqlite3.Connection,
        environment: str,
        institution_code: str,
        txn_code: str,
        rows: list[dict[str, str]],
    ) -> None:
        now = datetime.now().isoformat(timespec="seconds")
        conn.executemany(
            "INSERT INTO accepted_row VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    environment,
                    institution_code,
                    row["serial_no"],
                    txn_code,
                    row["mapping_serial_no"],
                    _PAYLOAD_JSON.encode(row),
                    now,
                )
                for row in rows
            ],
        )

    # -- reading back -----------------------------------------------------------------------------------
    def accepted_rows(self, environment: str | None = None) -> Iterator[dict[str, Any]]:
        """Every accepted row as a dict of logical fields plus institution and transaction codes."""
        sql = "SELECT institution_code, transaction_code, payload FROM accepted_row"
        params: tuple[str, ...] = ()
        if environment:
            sql += " WHERE environment = ?"
            params = (environment,)
        sql += " ORDER BY institution_code, transaction_code, serial_no"
        with self.lock:
            records = self.conn.execute(sql, params).fetchall()
        for inst, txn, payload in records:
            yield {"institution_code": inst, "transaction_code": txn, **json.loads(payload)}

    def count_rows(self) -> int:
        with self.lock:
            return int(self.conn.execute("SELECT COUNT(*) FROM accepted_row").fetchone()[0])


def _chunks(items: list[str], size: int = 500) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _read_csv(stream: TextIO, columns: tuple[str, ...]) -> Iterator[dict[str, str]]:
    reader = csv.DictReader(stream)
    missing = [c for c in columns if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"CSV is missing columns: {', '.join(missing)}")
    for rec in reader:
        yield {c: (rec[c] or "").strip() for c in columns}

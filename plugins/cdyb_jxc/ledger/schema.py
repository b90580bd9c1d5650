"""Ledger tables (SQLAlchemy Core). The schema creates itself on first use (:func:`create_tables`)."""

from __future__ import annotations

import hashlib
import logging
import random
import sqlite3
import time
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    inspect,
    text,
)
from sqlalchemy.exc import DBAPIError

from cdyb_jxc.ledger.states import LedgerState

log = logging.getLogger(__name__)

metadata = MetaData()

SERIAL_MAX = 255  # longer 流水号 cannot be keyed; the uploader reports such rows instead of storing them
# the ``state`` column holds a LedgerState; the names below are kept for older imports
PENDING = LedgerState.PENDING
IN_FLIGHT = LedgerState.IN_FLIGHT
ACCEPTED = LedgerState.ACCEPTED
REJECTED = LedgerState.REJECTED
IN_DOUBT = LedgerState.IN_DOUBT
ACCEPTED_RECONCILED = LedgerState.ACCEPTED_RECONCILED
DUPLICATE_CONFLICT = LedgerState.DUPLICATE_CONFLICT

upload_row = Table(
    "cdyb_jxc_upload_row",
    metadata,
    Column("institution_code", String(30), primary_key=True),
    Column("serial_no", String(SERIAL_MAX), primary_key=True),
    Column("transaction_code", String(16), nullable=False),
    Column("business_date", String(10), nullable=False),
    Column("mapping_serial_no", Text),
    Column("item_name", Text),
    Column("payload_hash", String(64), nullable=False),
    # hash of the payload last sent to the centre (reconciliation compares against it)
    Column("sent_hash", String(64)),
    Column("state", String(24), nullable=False),
    Column("category", String(64)),
    Column("field", String(100)),
    Column("detail", Text),
    Column("attempts", Integer, nullable=False, default=0),
    Column("held_back", Integer, nullable=False, default=0),
    Column("first_seen_at", DateTime, nullable=False),
    Column("last_sent_at", DateTime),
    Column("accepted_at", DateTime),
    Column("updated_at", DateTime, nullable=False),
    Column("late_seconds", Float),
    Column("last_batch_id", Integer),
    Column("run_token", String(1000)),
    Column("dag_id", String(250)),
    Column("run_id", String(250)),
    # the row's quantity in packages (拆零 rows: quantity ÷ 包装换算系数), for the 进销存平衡 audit
    Column("quantity_packages", Float(precision=53)),  # double precision on every database (MySQL: DOUBLE)
)
Index("ix_cdyb_jxc_upload_row_day", upload_row.c.business_date, upload_row.c.transaction_code)
# the rows in a state, latest change first (the monitor's queues read the newest of each state)
STATE_INDEX = Index("ix_cdyb_jxc_upload_row_state_time", upload_row.c.state, upload_row.c.updated_at)
# the rows of one DAG run (the monitor's run page)
RUN_INDEX = Index("ix_cdyb_jxc_upload_row_run", upload_row.c.dag_id, upload_row.c.run_id)

upload_batch = Table(
    "cdyb_jxc_upload_batch",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("institution_code", String(30), nullable=False),
    Column("transaction_code", String(16), nullable=False),
    Column("run_token", String(1000)),
    Column("dag_id", String(250)),
    Column("run_id", String(250)),
    Column("task_id", String(250)),
    Column("row_count", Integer, nullable=False),
    Column("started_at", DateTime, nullable=False),
    Column("finished_at", DateTime),
    Column("duration_ms", Float),
    Column("outcome", String(24)),
    Column("retcode", String(8)),
    Column("retmsg", Text),
    Column("succnum", Integer),
    Column("failnum", Integer),
    Column("error", Text),
    Column("request_gz", LargeBinary),
    Column("reply_gz", LargeBinary),
)
Index("ix_cdyb_jxc_upload_batch_run", upload_batch.c.dag_id, upload_batch.c.run_id)

milestone = Table(
    "cdyb_jxc_milestone",
    metadata,
    Column("institution_code", String(30), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("completed_at", DateTime, nullable=False),
    Column("detail", Text),
)

# Source rows the upload could not key by 流水号 or must not send (no 流水号, repeated in the source, 流水号
# already used by another transaction's row, changed after it was accepted): kept so that they show in
# reports and the monitor. One entry per (institution, transaction, business day, row key); a later run of
# the same day replaces the entries it sees again and drops the ones that are gone.
source_issue = Table(
    "cdyb_jxc_source_issue",
    metadata,
    Column("institution_code", String(30), primary_key=True),
    Column("transaction_code", String(16), primary_key=True),
    Column("business_date", String(10), primary_key=True),
    # the 流水号 (cut to 200 characters); for a row it cannot key (none, too long, repeated in the source)
    # "<流水号 or nothing>#<source row number>@<12 hex digits naming the source>"
    # (see cdyb_jxc.upload.source_issues)
    Column("row_key", String(250), primary_key=True),
    Column("serial_no", Text),
    Column("source_row", Integer),
    Column("mapping_serial_no", Text),
    Column("item_name", Text),
    Column("category", String(64)),
    Column("field", String(100)),
    Column("detail", Text, nullable=False),
    Column("run_token", String(1000)),
    Column("dag_id", String(250)),
    Column("run_id", String(250)),
    Column("seen_at", DateTime, nullable=False),
)

# Row counts per (institution, business day, transaction, state, category), kept by every row write in its
# transaction (cdyb_jxc.ledger.rollup): what the monitor's summary, calendar, trend and reject counts read
# instead of scanning the rows. ``late`` and ``same_day`` count the accepted rows past the T+1 deadline and
# accepted on day D itself.
day_count = Table(
    "cdyb_jxc_day_count",
    metadata,
    Column("institution_code", String(30), primary_key=True),
    Column("business_date", String(10), primary_key=True),
    Column("transaction_code", String(16), primary_key=True),
    Column("state", String(24), primary_key=True),
    Column("category", String(64), primary_key=True),  # the rows' category, "" for none
    Column("rows", Integer, nullable=False),
    Column("late", Integer, nullable=False),
    Column("same_day", Integer, nullable=False),
)
Index("ix_cdyb_jxc_day_count_day", day_count.c.business_date, day_count.c.transaction_code)

# The 进销存平衡 audit of a business day (cdyb_jxc.upload.balance), as the daily run last wrote it: one row
# per day, and one per item whose balance is not ok in the accepted rows or in the source's, for the
# monitor. A later audit of the same day replaces both.
balance_day = Table(
    "cdyb_jxc_balance_day",
    metadata,
    Column("institution_code", String(30), primary_key=True),
    Column("business_date", String(10), primary_key=True),
    Column("items", Integer, nullable=False),
    Column("imbalance", Integer, nullable=False),  # items out of balance in the accepted rows
    Column("source_imbalance", Integer, nullable=False),  # … in every row the source gave
    Column("unchecked", Integer, nullable=False),  # items without an opening or a closing stock
    Column("report", Text),  # the report's CSV
    Column("audited_at", DateTime, nullable=False),
)
# no key: an item is whatever the source named it (a source row may carry any text there); the audit wrote
# each (institution, day, item) once, and the next audit of the day deletes them all first
balance_item = Table(
    "cdyb_jxc_balance_item",
    metadata,
    Column("institution_code", String(30), nullable=False),
    Column("business_date", String(10), nullable=False),
    Column("mapping_serial_no", Text),
    Column("opening", Float(precision=53)),
    Column("inbound", Float(precision=53)),
    Column("outbound", Float(precision=53)),
    Column("closing", Float(precision=53)),
    Column("difference", Float(precision=53)),
    Column("status", String(16)),
    Column("source_difference", Float(precision=53)),
    Column("source_status", String(16)),
)
Index("ix_cdyb_jxc_balance_item_day", balance_item.c.institution_code, balance_item.c.business_date)

CREATE_ATTEMPTS = 10
# PostgreSQL advisory lock serialising the creation of the tables (any 64-bit key of our own)
_CREATE_LOCK_KEY = int.from_bytes(hashlib.sha256(b"cdyb_jxc:create_tables").digest()[:8], "big", signed=True)
# what a CREATE says when another process created the same table (or its row type) first
_LOST_RACE = ("already exists", "pg_type_typname_nsp_index", "duplicate key value")


def create_tables(engine: Engine) -> frozenset[str]:
    """Create the ledger tables that are missing. Safe when several processes open a fresh ledger at once
    (two first uploads started together): on PostgreSQL the creators queue on a transaction-level advisory
    lock, on SQLite they take the write lock first (``BEGIN IMMEDIATE``), and on any dialect a CREATE that
    still loses the race ("already exists") is looked at again instead of raised.

    :param engine: the ledger's engine
    :returns: the row columns the ledger still lacks (see :func:`add_missing_columns`)
    """
    if set(metadata.tables) <= set(inspect(engine).get_table_names()):
        add_missing_indexes(engine)
        return add_missing_columns(engine)  # the usual case: no lock (a read-only copy of a ledger opens too)
    for attempt in range(1, CREATE_ATTEMPTS + 1):
        try:
            _create_once(engine)
            break
        except DBAPIError as err:
            if attempt == CREATE_ATTEMPTS or not any(m in str(err.orig).lower() for m in _LOST_RACE):
                raise
            log.info("another process created ledger tables at the same time (%s); checking again", err.orig)
            time.sleep(random.uniform(0.01, 0.05) * attempt)  # jitter: the losers do not collide again
    add_missing_indexes(engine)
    return add_missing_columns(engine)  # a table that was there already may be of an earlier version


# Columns added after a ledger's tables were first created: nullable, so one ALTER TABLE adds each.
ADDED_COLUMNS = ((upload_row, "quantity_packages"),)
_ALREADY = ("duplicate column", "already exists")


# Indexes added after a ledger's tables were first created, and those they replace (dropped once the new
# one is built: every index costs each row write).
ADDED_INDEXES = (STATE_INDEX, RUN_INDEX)
RETIRED_INDEXES: dict[str, str] = {str(STATE_INDEX.name): "ix_cdyb_jxc_upload_row_state"}


def add_missing_indexes(engine: Engine) -> None:
    """Build the :data:`ADDED_INDEXES` a ledger of an earlier version lacks (once; on a large ledger it takes
    a while, logged). A ledger that cannot be altered keeps working without them, only slower to read."""
    for index in ADDED_INDEXES:
        table = index.table
        if table is None or index.name in {ix["name"] for ix in inspect(engine).get_indexes(table.name)}:
            continue
        log.info("ledger upgrade: building index %s on %s", index.name, table.name)
        try:
            index.create(engine)
            retired = RETIRED_INDEXES.get(str(index.name))
            if retired and retired in {ix["name"] for ix in inspect(engine).get_indexes(table.name)}:
                Index(retired, *index.columns).drop(engine)
        except DBAPIError as err:
            if not any(m in str(err.orig).lower() for m in _ALREADY):
                log.warning("ledger index %s is missing and could not be built (%s)", index.name, err.orig)


def add_missing_columns(engine: Engine) -> frozenset[str]:
    """Add the :data:`ADDED_COLUMNS` a ledger created by an earlier version lacks. Two processes adding the
    same column at once is fine (the loser's "already exists" is ignored); a ledger that cannot be altered
    (a read-only copy, a role without ALTER) stays as it is, with a warning: the row columns still missing
    are returned, and the ledger leaves them out of its writes.

    :param engine: the ledger's engine
    """
    inspector = inspect(engine)
    missing: set[str] = set()
    for table, name in ADDED_COLUMNS:
        if name in {c["name"] for c in inspector.get_columns(table.name)}:
            continue
        kind = table.c[name].type.compile(engine.dialect)
        try:
            with engine.begin() as conn:
                conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {name} {kind}")
            log.info("ledger upgraded: column %s.%s added", table.name, name)
        except DBAPIError as err:
            if not any(m in str(err.orig).lower() for m in _ALREADY):
                log.warning(
                    "ledger column %s.%s is missing and could not be added (%s); the ledger's writes leave it"
                    " out, and what reads it (the balance audit) finds nothing",
                    table.name,
                    name,
                    err.orig,
                )
                if table is upload_row:
                    missing.add(name)
    return frozenset(missing)


def _create_once(engine: Engine) -> None:
    with engine.connect() as conn:
        dialect = conn.dialect.name
        if dialect == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _CREATE_LOCK_KEY})
        elif dialect == "sqlite":
            # pysqlite runs DDL outside a transaction unless one is open: make check-and-create one step
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        existing = set(inspect(conn).get_table_names())
        metadata.create_all(conn)
        if upload_row.name in existing and day_count.name not in existing:
            from cdyb_jxc.ledger.rollup import rebuild  # the rows of an earlier version, counted once

            log.info("counting the ledger's rows per day and state for the monitor (once)")
            rebuild(conn)
        conn.commit()


def sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    """Set up a new SQLite connection: wait for locks, write-ahead log.

    :param dbapi_conn: the pysqlite connection
    """
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=30000")
    # switching a fresh file to WAL while other processes open it can answer "locked" at once (SQLite
    # skips the busy wait where waiting could deadlock): try again for as long as the busy timeout
    for attempt in range(300):
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or attempt == 299:
                raise
            time.sleep(0.1)
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()

"""The upload ledger: one row per source row keyed by (institution, 流水号), and an audit row per request.

SQLAlchemy Core only; any SQLAlchemy URL works (SQLite file by default, PostgreSQL in production).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any
from urllib.parse import quote

from sqlalchemy import (
    URL,
    Connection,
    Engine,
    and_,
    create_engine,
    event,
    func,
    insert,
    make_url,
    select,
    union,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.schema import ScalarElementColumnDefault

from cdyb_jxc import config
from cdyb_jxc.exceptions import ConnectionConfigError, SerialTakenError
from cdyb_jxc.ledger import rollup
from cdyb_jxc.ledger.balance_store import BalanceStore
from cdyb_jxc.ledger.batch_store import BatchStore, utcnow
from cdyb_jxc.ledger.checkpoint import BackgroundCheckpoints
from cdyb_jxc.ledger.driver import DriverStatements
from cdyb_jxc.ledger.issue_store import SourceIssueStore
from cdyb_jxc.ledger.known import KnownCounts
from cdyb_jxc.ledger.lock import is_sqlite_uri, sqlite_file
from cdyb_jxc.ledger.schema import (
    create_tables,
    milestone,
    source_issue,
    sqlite_pragmas,
    upload_row,
)
from cdyb_jxc.ledger.states import ACCEPTED_STATES, REVISIT_STATES, LedgerState, of
from cdyb_jxc.ledger.transitions import RowTransitions
from cdyb_jxc.ledger.updates import row_updates
from cdyb_jxc.safety.textcap import column_caps, fit, fit_rows

ENVIRONMENT_MILESTONE = "environment"  # milestone naming the centre environment a ledger belongs to


def default_ledger_url() -> str:
    """``$CDYB_JXC_LEDGER_URL``, else a SQLite file in ``$AIRFLOW_HOME`` (see :mod:`cdyb_jxc.config`)."""
    return config.default_ledger_url()


_LOOKUP_CHUNK = 500
# every text written goes through these (see cdyb_jxc.safety.textcap):
# no hostile or odd value can fail a write
_ROW_CAPS = column_caps(upload_row)
_MILESTONE_CAPS = column_caps(milestone)


def _milestone_row(institution_code: str, name: str, detail: str) -> dict[str, Any]:
    return {
        "institution_code": institution_code,
        "name": name,
        "completed_at": utcnow(),
        "detail": fit(detail, _MILESTONE_CAPS["detail"]),
    }


@dataclass(frozen=True)
class LedgerEntry:
    """What the ledger knows about one 流水号."""

    serial_no: str
    state: LedgerState
    payload_hash: str
    sent_hash: str | None
    category: str | None
    held_back: bool
    run_token: str | None
    last_sent_at: datetime | None = None
    transaction_code: str | None = None


# the scalar Python defaults of the row table (``attempts``, ``held_back``)
_ROW_DEFAULTS = {
    c.key: c.default.arg for c in upload_row.c if isinstance(c.default, ScalarElementColumnDefault)
}
_ENTRY_COLUMNS = tuple(f.name for f in fields(LedgerEntry))  # what lookup() reads of a row


class Ledger(SourceIssueStore, BalanceStore, BatchStore, RowTransitions):
    """Access to the ledger tables.

    :param url: SQLAlchemy URL, e.g. ``sqlite:///ledger.db`` or ``postgresql+psycopg2://…``
    :param engine: an existing engine instead of ``url``

    The upload engine changes row states only through the named transitions of :class:`RowTransitions`;
    :meth:`transaction` groups several of them (and the audit row) into one database transaction.
    """

    def __init__(self, url: str | URL | None = None, *, engine: Engine | None = None) -> None:
        if engine is None:
            parsed = make_url(url or default_ledger_url())
            path = sqlite_file(parsed)
            # the file's real path now: a later chdir, a symlink or a relative spelling reach the same file
            if path and is_sqlite_uri(parsed):  # keep it a URI: its query (mode=rw, cache=…) still applies
                path = "file:" + quote(path)
            # a server's connections can drop while pooled (pinged before use); a SQLite file's cannot, and a
            # ping there is one more statement per transaction, three of them per batch
            ping = parsed.get_backend_name() != "sqlite"
            engine = create_engine(parsed.set(database=path) if path else parsed, pool_pre_ping=ping)
            if engine.dialect.name == "sqlite":
                event.listen(engine, "connect", sqlite_pragmas)
        self.engine = engine
        self.database_file = sqlite_file(engine.url)  # the upload lock's file sits beside it
        self._open = threading.local()  # the transaction this thread's writes join (see transaction())
        self._absent = create_tables(self.engine)  # columns of a later version this ledger could not gain
        self._driver = DriverStatements(self.engine.dialect)

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def dispose(self) -> None:
        self.engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Row and audit writes of this thread inside the block go in one transaction, committed when the
        block ends (rolled back if it raises). Inside another such block it joins that one."""
        if getattr(self._open, "conn", None) is not None:
            yield
            return
        try:
            with self.engine.begin() as conn:
                self._open.conn = conn
                try:
                    yield
                finally:
                    self._open.conn = None
        except BaseException:
            self.forget_written()  # rolled back: the rows hold what they held before, not what was remembered
            raise

    @contextmanager
    def sole_writer(self) -> Iterator[None]:
        """While the block runs, this thread is the only writer of the rows it writes (the upload lock
        keeps other uploads of them out): the counted values it writes are remembered instead of read back
        before its next write of the same rows (see :mod:`cdyb_jxc.ledger.known`). Inside another such
        block it shares that one's knowledge."""
        if self._known() is not None:
            yield
            return
        self._open.known = KnownCounts()
        try:
            yield
        finally:
            self._open.known = None

    def background_checkpoints(self) -> AbstractContextManager[Any]:
        """While the block runs, a SQLite file ledger's write-ahead log is copied back into the file by a
        thread of its own, not by the commits of the writing thread (see :mod:`cdyb_jxc.ledger.checkpoint`);
        nothing for another database."""
        if self.database_file is None:
            return nullcontext()
        return BackgroundCheckpoints(self.database_file)

    def _known(self) -> KnownCounts | None:
        return getattr(self._open, "known", None)

    def forget_written(self) -> None:
        """Read the rows again before each update from now on, inside :meth:`sole_writer` too (the caller
        may no longer be their only writer: its lock is gone)."""
        known = self._known()
        if known is not None:
            known.forget()

    @contextmanager
    def _joined(self, *, write: bool) -> Iterator[Connection]:
        """The connection of this thread's open :meth:`transaction` (its writes are seen), else a
        transaction (``write``) or a connection of its own."""
        conn = getattr(self._open, "conn", None)
        if conn is not None:
            yield conn
        elif write:
            try:
                with self.engine.begin() as conn:
                    yield conn
            except BaseException:
                self.forget_written()
                raise
        else:
            with self.engine.connect() as conn:
                yield conn

    # -- rows -------------------------------------------------------------------------------------------
    def lookup(self, institution_code: str, serials: Sequence[str]) -> dict[str, LedgerEntry]:
        t = upload_row.c
        columns = [getattr(t, name) for name in _ENTRY_COLUMNS]
        found: dict[str, LedgerEntry] = {}
        with self._joined(write=False) as conn:
            for start in range(0, len(serials), _LOOKUP_CHUNK):
                chunk = list(serials[start : start + _LOOKUP_CHUNK])
                query = select(*columns).where(t.institution_code == institution_code, t.serial_no.in_(chunk))
                for r in conn.execute(query):
                    values = {**r._mapping, "state": of(r.state), "held_back": bool(r.held_back)}
                    found[r.serial_no] = LedgerEntry(**values)
        return found

    def insert_rows(self, rows: Sequence[dict[str, Any]]) -> dict[str, LedgerEntry]:
        """Insert rows new to the ledger. A 流水号 that another upload inserted after this one looked it up
        (an upload of another transaction at the same instant) is left out, not raised: returns what the
        ledger holds for those 流水号 now (empty when every row went in)."""
        pending = self._present(fit_rows(_ROW_CAPS, rows))
        taken: dict[str, LedgerEntry] = {}
        while pending:
            try:
                with self.engine.begin() as conn:
                    self._insert_counted(conn, pending)
                self._remember_inserted(pending)
                break
            except IntegrityError:
                self.forget_written()
                now = self.lookup(pending[0]["institution_code"], [r["serial_no"] for r in pending])
                if not now:
                    raise  # not a 流水号 taken meanwhile
                taken.update(now)
                pending = [r for r in pending if r["serial_no"] not in now]
        return taken

    def insert_joined(self, rows: Sequence[dict[str, Any]]) -> None:
        """Insert rows new to the ledger inside this thread's open :meth:`transaction` (or one of their
        own). Raises :class:`SerialTakenError` when a 流水号 is in the ledger already: the transaction then
        only rolls back, so the caller looks the rows up after it."""
        fitted = self._present(fit_rows(_ROW_CAPS, rows))
        if not fitted:
            return
        with self._joined(write=True) as conn:
            try:
                self._insert_counted(conn, fitted)
            except IntegrityError as err:
                raise SerialTakenError("a 流水号 of the batch is in the ledger already") from err
            self._remember_inserted(fitted)

    def _insert_counted(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        """Insert fitted rows and count them in the day counts, in ``conn``'s transaction."""
        self._insert(conn, rows)
        rollup.apply(conn, self._driver, rollup.tally_insert(rows))

    def _remember_inserted(self, rows: list[dict[str, Any]]) -> None:
        known = self._known()
        if known is not None:
            known.remember_rows(rows, rollup.COUNTED)

    def _insert(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        if not self._driver.runs_many(len(rows)):
            conn.execute(insert(upload_row), rows)
            return
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in rows:
            groups.setdefault(tuple(row), []).append(row)
        for keys, group in groups.items():
            # a column's Python default is SQLAlchemy's to fill; given here, the driver gets every value
            defaults = {k: v for k, v in _ROW_DEFAULTS.items() if k not in keys}
            columns = (*keys, *defaults)
            statement = self._driver.get(("insert", columns), lambda: insert(upload_row), columns)
            statement.execute(conn, [{**row, **defaults} for row in group] if defaults else group)

    def _present(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``rows`` without the columns this ledger lacks (:func:`~cdyb_jxc.ledger.schema.create_tables`)."""
        if not self._absent:
            return rows
        return [{k: v for k, v in row.items() if k not in self._absent} for row in rows]

    def update_rows(
        self,
        institution_code: str,
        rows: Sequence[dict[str, Any]],
        *,
        count_attempt: bool = False,
        sent_is_payload: bool = False,
    ) -> None:
        """Update rows by 流水号. Every dict must have the same keys, including ``serial_no``; values the
        rows share are written in one statement (see :mod:`cdyb_jxc.ledger.updates`).

        :param count_attempt: also add one to ``attempts`` (in the same statement)
        :param sent_is_payload: also set ``sent_hash`` to each row's ``payload_hash``
        """
        if not rows:
            return
        fitted = self._present(fit_rows(_ROW_CAPS, rows))
        with self._joined(write=True) as conn:
            counted = rollup.counted_change(fitted)
            before = self._counted_before(conn, institution_code, fitted) if counted else {}
            updates = row_updates(
                institution_code, fitted, count_attempt=count_attempt, sent_is_payload=sent_is_payload
            )
            for stmt, params in updates:
                if self._driver.runs_many(len(params)):
                    self._driver.of(stmt).execute(conn, params)
                else:
                    conn.execute(stmt, params)
            if counted:
                known = self._known()
                after: dict[str, tuple[Any, ...]] | None = {} if known is not None else None
                tally = rollup.tally_update(institution_code, before, fitted, after)
                rollup.apply(conn, self._driver, tally)
                if known is not None and after:
                    known.remember(institution_code, after)

    def _counted_before(
        self, conn: Connection, institution_code: str, rows: Sequence[dict[str, Any]]
    ) -> dict[str, tuple[Any, ...]]:
        """The rows' counted values before the update: as this thread wrote them (:meth:`sole_writer`),
        else read in the update's transaction (the day counts follow)."""
        serials = [r["serial_no"] for r in rows]
        known = self._known()
        before = known.take(institution_code, serials) if known is not None else {}
        if len(before) < len(serials):
            missing = [s for s in serials if s not in before]
            before.update(rollup.current(conn, self._driver, institution_code, missing))
        return before

    def update_grouped(self, institution_code: str, rows: Sequence[dict[str, Any]]) -> None:
        """:meth:`update_rows` for rows with different columns: one statement per set of columns."""
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in rows:
            groups.setdefault(tuple(sorted(row)), []).append(row)
        for group in groups.values():
            self.update_rows(institution_code, group)

    def states(self, institution_code: str, serials: Iterable[str]) -> dict[str, LedgerState]:
        return {s: e.state for s, e in self.lookup(institution_code, list(serials)).items()}

    def count_by_state(self, **filters: str) -> dict[str, int]:
        t = upload_row.c
        query = select(t.state, func.count()).group_by(t.state)
        for key, value in filters.items():
            query = query.where(getattr(t, key) == value)
        with self.engine.connect() as conn:
            return {state: int(n) for state, n in conn.execute(query)}

    def iter_rows(self, *conditions: Any, columns: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
        t = upload_row.c
        cols = [getattr(t, c) for c in columns] if columns else [c for c in t if c.name not in self._absent]
        query = select(*cols).where(and_(True, *conditions)).order_by(t.institution_code, t.serial_no)
        with self.engine.connect() as conn:
            for r in conn.execute(query):
                yield dict(r._mapping)

    def open_dates(self, institution_code: str, transaction_code: str, since: str, before: str) -> list[str]:
        """Business days in [since, before) that still have rows not accepted (rejected or unresolved)
        or source rows with an open issue."""
        t, i = upload_row.c, source_issue.c
        rows = select(t.business_date).where(
            t.institution_code == institution_code,
            t.transaction_code == transaction_code,
            t.business_date >= since,
            t.business_date < before,
            t.state.in_(sorted(REVISIT_STATES)),
        )
        issues = select(i.business_date).where(
            i.institution_code == institution_code,
            i.transaction_code == transaction_code,
            i.business_date >= since,
            i.business_date < before,
        )
        with self.engine.connect() as conn:
            return sorted(r[0] for r in conn.execute(union(rows, issues)))

    def accepted_serials(self, institution_code: str | None = None) -> set[str]:
        t = upload_row.c
        conds: list[Any] = [t.state.in_(sorted(ACCEPTED_STATES))]
        if institution_code:
            conds.append(t.institution_code == institution_code)
        return {r["serial_no"] for r in self.iter_rows(*conds, columns=["serial_no"])}

    # -- environment ------------------------------------------------------------------------------------
    def bind_environment(self, institution_code: str, environment: str) -> None:
        """Tie this ledger to one centre environment (test or prod) per institution, on first use.

        A row accepted by the test centre is not at the production centre: a ledger shared by both would
        skip it as "already accepted". Raises :class:`ConnectionConfigError` on a mismatch.
        """
        bound = self.milestone(institution_code, ENVIRONMENT_MILESTONE)
        if bound is None:
            # insert, never check-then-set: of two first uploads at once (test and prod) exactly one binds;
            # the other's insert hits the primary key, and it compares with what the winner bound
            if self._add_milestone(institution_code, ENVIRONMENT_MILESTONE, environment):
                return
            bound = self.milestone(institution_code, ENVIRONMENT_MILESTONE) or {"detail": "another"}
        if bound["detail"] != environment:
            raise ConnectionConfigError(
                f"ledger {self.url} holds {institution_code}'s uploads to the {bound['detail']!r}"
                f" environment, but the connection points at {environment!r}: give each environment its own"
                " ledger (ledger_url / --ledger / CDYB_JXC_LEDGER_URL)"
            )

    # -- milestones -------------------------------------------------------------------------------------
    def milestone(self, institution_code: str, name: str) -> dict[str, Any] | None:
        query = select(milestone).where(
            milestone.c.institution_code == institution_code, milestone.c.name == name
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
            return dict(row._mapping) if row else None

    def _add_milestone(self, institution_code: str, name: str, detail: str) -> bool:
        """Insert a milestone unless one of that name exists (then ``False``), atomically."""
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(milestone).values(_milestone_row(institution_code, name, detail)))
        except IntegrityError:
            return False
        return True

    def set_milestone(self, institution_code: str, name: str, detail: str = "") -> None:
        with self.engine.begin() as conn:
            conn.execute(
                milestone.delete().where(
                    milestone.c.institution_code == institution_code, milestone.c.name == name
                )
            )
            conn.execute(insert(milestone).values(_milestone_row(institution_code, name, detail)))

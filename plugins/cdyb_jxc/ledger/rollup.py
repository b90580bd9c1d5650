"""Row counts per (institution, business day, transaction, state, category), kept in ``cdyb_jxc_day_count``
by the row writes themselves, in their transaction (SQLAlchemy Core, no Airflow).

The monitor's summary, calendar, trend and reject counts read these few thousand counts instead of
aggregating millions of rows. :class:`Tally` collects what one write changes: an insert adds its rows; an
update that sets the state, the category, the lateness or the day takes the rows' current values (read by
流水号, one indexed read per statement, unless the writer remembers them: :mod:`cdyb_jxc.ledger.known`) and
subtracts them, then adds the values written. :func:`apply` adds
the tally with one upsert per changed count. :func:`rebuild` counts from the rows again (a ledger of an
earlier version, once); the tests compare :func:`stored` with :func:`recounted` after every scenario that
writes a ledger.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache, partial
from typing import Any

from sqlalchemy import Connection, Select, and_, bindparam, case, delete, func, insert, select

from cdyb_jxc.ledger.driver import DriverStatements
from cdyb_jxc.ledger.schema import day_count, upload_row
from cdyb_jxc.ledger.states import ACCEPTED_STATES

SAME_DAY_SECONDS = -86_400  # late_seconds counts from the end of D+1: a day early is on day D itself
# what a count depends on (a row's category is the centre's reason, or the hold-back's)
COUNTED = ("business_date", "transaction_code", "state", "category", "late_seconds")
_IN_CHUNK = 500
_ACCEPTED = frozenset(str(s) for s in ACCEPTED_STATES)
Key = tuple[str, str, str, str, str]  # institution, business day, transaction, state, category ("": none)
_KEY_COLUMNS = ("institution_code", "business_date", "transaction_code", "state", "category")


class Tally:
    """Changes to the counts, by key: ``[rows, late, same_day]``."""

    def __init__(self) -> None:
        self.changes: dict[Key, list[int]] = defaultdict(lambda: [0, 0, 0])

    def add(self, institution_code: str, counted: Sequence[Any], sign: int = 1) -> None:
        """Count ``sign`` rows in (or, negative, out) with ``counted``: their values of :data:`COUNTED`."""
        day, code, state, category, late = counted
        counts = self.changes[(institution_code, day, code, str(state), category or "")]
        counts[0] += sign
        if late is not None and str(state) in _ACCEPTED:
            counts[1] += sign * (late > 0)
            counts[2] += sign * (late <= SAME_DAY_SECONDS)


def counted_change(rows: Sequence[Mapping[str, Any]]) -> bool:
    """Whether an update writing ``rows`` (same keys each) can change a count."""
    return bool(rows) and any(key in rows[0] for key in COUNTED)


def current(
    conn: Connection, driver: DriverStatements, institution_code: str, serials: Sequence[str]
) -> dict[str, tuple[Any, ...]]:
    """What the counts know of these rows now (their values of :data:`COUNTED`), by 流水号; one indexed
    read per 500, compiled once per size."""
    found: dict[str, tuple[Any, ...]] = {}
    for start in range(0, len(serials), _IN_CHUNK):
        chunk = serials[start : start + _IN_CHUNK]
        statement = driver.get(("rollup_current", len(chunk)), partial(_current_statement, len(chunk)))
        params = {"b_institution": institution_code, **{f"s_{i}": s for i, s in enumerate(chunk)}}
        result = statement.execute(conn, [params])
        for record in result or ():
            found[record[0]] = tuple(record[1:])
    return found


@lru_cache(maxsize=64)
def _current_statement(n: int) -> Select[Any]:
    t = upload_row.c
    serials = [bindparam(f"s_{i}", type_=t.serial_no.type) for i in range(n)]
    where = (t.institution_code == bindparam("b_institution"), t.serial_no.in_(serials))
    # locked to the update's end (PostgreSQL, MySQL; SQLite writes one at a time): no other writer can change
    # the rows between this read and the update, so the counts move by exactly what the update changed
    return select(t.serial_no, *[t[c] for c in COUNTED]).where(*where).with_for_update()


def tally_update(
    institution_code: str,
    before: Mapping[str, tuple[Any, ...]],
    rows: Sequence[Mapping[str, Any]],
    after: dict[str, tuple[Any, ...]] | None = None,
) -> Tally:
    """The change of an update writing ``rows`` over the rows as they were (``before``): the rows of a
    batch mostly make one or two moves (PENDING → IN_FLIGHT), counted once each with their number.

    :param after: filled with each updated row's counted values as written, by 流水号
    """
    given = [(i, key) for i, key in enumerate(COUNTED) if rows and key in rows[0]]
    moves: Counter[tuple[tuple[Any, ...], tuple[Any, ...]]] = Counter()
    for row in rows:
        old = before.get(row["serial_no"])
        if old is None:
            continue  # not in the ledger: the update changes nothing
        written = list(old)
        for i, key in given:
            written[i] = row[key]
        new = tuple(written)
        moves[(old, new)] += 1
        if after is not None:
            after[row["serial_no"]] = new
    tally = Tally()
    for (was, now), n in moves.items():
        if was != now:
            tally.add(institution_code, was, -n)
            tally.add(institution_code, now, n)
    return tally


def tally_insert(rows: Iterable[Mapping[str, Any]]) -> Tally:
    # a batch's rows mostly share their counted values: counted once per distinct set
    counted = Counter((row["institution_code"], *map(row.get, COUNTED)) for row in rows)
    tally = Tally()
    for (institution_code, *values), n in counted.items():
        tally.add(institution_code, values, n)
    return tally


def apply(conn: Connection, driver: DriverStatements, tally: Tally) -> None:
    """Add the tally to the counts: one upsert per changed count, in key order (no two writers wait on each
    other's counts in opposite orders)."""
    changed = sorted((k, v) for k, v in tally.changes.items() if any(v))
    if not changed:
        return
    values = [
        dict(zip(_KEY_COLUMNS, key, strict=True), rows=n, late=late, same_day=same)
        for key, (n, late, same) in changed
    ]
    dialect = conn.dialect.name
    if driver.runs_many(len(values)):
        driver.get(("rollup_upsert",), partial(_upsert, dialect)).execute(conn, values)
    else:
        conn.execute(_upsert(dialect), values)


@lru_cache(maxsize=8)
def _upsert(dialect: str) -> Any:
    c = day_count.c
    if dialect in ("mysql", "mariadb"):
        from sqlalchemy.dialects.mysql import insert as mysql_insert

        upsert = mysql_insert(day_count)
        return upsert.on_duplicate_key_update(
            rows=c.rows + upsert.inserted.rows,
            late=c.late + upsert.inserted.late,
            same_day=c.same_day + upsert.inserted.same_day,
        )
    stmt: Any
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt = pg_insert(day_count)
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt = sqlite_insert(day_count)
    else:
        raise NotImplementedError(f"the ledger's day counts need an upsert on {dialect}")
    excluded = stmt.excluded
    return stmt.on_conflict_do_update(
        index_elements=list(_KEY_COLUMNS),
        set_={
            "rows": c.rows + excluded.rows,
            "late": c.late + excluded.late,
            "same_day": c.same_day + excluded.same_day,
        },
    )


def counts_from_rows(*conditions: Any) -> Any:
    """The counts as the rows give them (a grouped read of the rows matching ``conditions``)."""
    t = upload_row.c
    accepted = t.state.in_(sorted(_ACCEPTED))
    late = func.sum(case((and_(accepted, t.late_seconds > 0), 1), else_=0))
    same_day = func.sum(case((and_(accepted, t.late_seconds <= SAME_DAY_SECONDS), 1), else_=0))
    category = func.coalesce(t.category, "").label("category")  # named: the monitor reads it as a table's
    group = (t.institution_code, t.business_date, t.transaction_code, t.state, category)
    counts = (func.count().label("rows"), late.label("late"), same_day.label("same_day"))
    return select(*group, *counts).where(and_(True, *conditions)).group_by(*group)


def rebuild(conn: Connection) -> None:
    """Count the rows again, replacing the counts, in ``conn``'s transaction."""
    conn.execute(delete(day_count))
    conn.execute(
        insert(day_count).from_select([*_KEY_COLUMNS, "rows", "late", "same_day"], counts_from_rows())
    )


def stored(conn: Connection) -> dict[Key, tuple[int, int, int]]:
    """The counts as kept (zero counts left out)."""
    out = {}
    for r in conn.execute(select(day_count)):
        if r.rows or r.late or r.same_day:
            out[(r.institution_code, r.business_date, r.transaction_code, r.state, r.category)] = (
                r.rows,
                r.late,
                r.same_day,
            )
    return out


def recounted(conn: Connection) -> dict[Key, tuple[int, int, int]]:
    """The counts as the rows give them now."""
    return {
        (i, d, t, s, c): (int(n), int(late or 0), int(same or 0))
        for i, d, t, s, c, n, late, same in conn.execute(counts_from_rows())
    }

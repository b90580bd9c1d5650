"""Row counts per (institution, business day, transaction, state), kept in ``cdyb_jxc_day_count`` by the
row writes themselves, in their transaction (SQLAlchemy Core, no Airflow).

The monitor's summary, calendar and trend read these few thousand counts instead of aggregating millions of
rows. :class:`Tally` collects what one write changes: an insert adds its rows; an update that sets the
state, the lateness or the day reads the rows' current values first (one indexed read by 流水号 per
statement) and subtracts them, then adds the values written. :func:`apply` adds the tally with one upsert
per changed count. :func:`rebuild` counts from the rows again (a ledger of an earlier version, once, or to
check the counts: the tests compare both after every scenario).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, and_, case, delete, func, insert, select

from cdyb_jxc.ledger.schema import day_count, upload_row
from cdyb_jxc.ledger.states import ACCEPTED_STATES

SAME_DAY_SECONDS = -86_400  # late_seconds counts from the end of D+1: a day early is on day D itself
COUNTED = ("business_date", "transaction_code", "state", "late_seconds")  # what a count depends on
_IN_CHUNK = 500
_ACCEPTED = frozenset(str(s) for s in ACCEPTED_STATES)
Key = tuple[str, str, str, str]  # institution, business day, transaction, state


class Tally:
    """Changes to the counts, by key: ``[rows, late, same_day]``."""

    def __init__(self) -> None:
        self.changes: dict[Key, list[int]] = defaultdict(lambda: [0, 0, 0])

    def add(self, institution_code: str, values: Mapping[str, Any], sign: int = 1) -> None:
        """Count one row with ``values`` (its day, transaction, state and lateness) in or (``-1``) out."""
        state = str(values["state"])
        key = (institution_code, values["business_date"], values["transaction_code"], state)
        late = values.get("late_seconds") if state in _ACCEPTED else None
        counts = self.changes[key]
        counts[0] += sign
        if late is not None:
            counts[1] += sign * (late > 0)
            counts[2] += sign * (late <= SAME_DAY_SECONDS)

    def __bool__(self) -> bool:
        return any(any(c) for c in self.changes.values())


def counted_change(rows: Sequence[Mapping[str, Any]]) -> bool:
    """Whether an update writing ``rows`` (same keys each) can change a count."""
    return bool(rows) and any(key in rows[0] for key in COUNTED)


def current(conn: Connection, institution_code: str, serials: Iterable[str]) -> dict[str, dict[str, Any]]:
    """What the counts know of these rows now, by 流水号."""
    t = upload_row.c
    columns = [t.serial_no, *[t[c] for c in COUNTED]]
    wanted = list(dict.fromkeys(serials))
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(wanted), _IN_CHUNK):
        chunk = wanted[start : start + _IN_CHUNK]
        query = select(*columns).where(t.institution_code == institution_code, t.serial_no.in_(chunk))
        for r in conn.execute(query):
            found[r.serial_no] = dict(r._mapping)
    return found


def tally_update(
    institution_code: str, before: Mapping[str, Mapping[str, Any]], rows: Sequence[Mapping[str, Any]]
) -> Tally:
    """The change of an update writing ``rows`` over the rows as they were (``before``)."""
    tally = Tally()
    for row in rows:
        old = before.get(row["serial_no"])
        if old is None:
            continue  # not in the ledger: the update changes nothing
        tally.add(institution_code, old, -1)
        tally.add(institution_code, {**old, **{k: row[k] for k in COUNTED if k in row}})
    return tally


def tally_insert(rows: Iterable[Mapping[str, Any]]) -> Tally:
    tally = Tally()
    for row in rows:
        tally.add(row["institution_code"], row)
    return tally


def apply(conn: Connection, tally: Tally) -> None:
    """Add the tally to the counts: one upsert per changed count, in key order (no two writers wait on each
    other's counts in opposite orders)."""
    changed = sorted((k, v) for k, v in tally.changes.items() if any(v))
    if not changed:
        return
    values = [
        dict(zip(_KEY_COLUMNS, key, strict=True), rows=n, late=late, same_day=same)
        for key, (n, late, same) in changed
    ]
    conn.execute(_upsert(conn.dialect.name), values)


_KEY_COLUMNS = ("institution_code", "business_date", "transaction_code", "state")


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
    group = (t.institution_code, t.business_date, t.transaction_code, t.state)
    counts = (func.count().label("rows"), late.label("late"), same_day.label("same_day"))
    return select(*group, *counts).where(and_(True, *conditions)).group_by(*group)


def rebuild(conn: Connection, institution_code: str | None = None) -> None:
    """Count the rows again (one institution's, or all), replacing the counts, in ``conn``'s transaction."""
    t, c = upload_row.c, day_count.c
    if institution_code is None:
        conn.execute(delete(day_count))
        query = counts_from_rows()
    else:
        conn.execute(delete(day_count).where(c.institution_code == institution_code))
        query = counts_from_rows(t.institution_code == institution_code)
    conn.execute(insert(day_count).from_select([*_KEY_COLUMNS, "rows", "late", "same_day"], query))


def stored(conn: Connection) -> dict[Key, tuple[int, int, int]]:
    """The counts as kept (zero counts left out)."""
    out = {}
    for r in conn.execute(select(day_count)):
        if r.rows or r.late or r.same_day:
            out[(r.institution_code, r.business_date, r.transaction_code, r.state)] = (
                r.rows,
                r.late,
                r.same_day,
            )
    return out


def recounted(conn: Connection) -> dict[Key, tuple[int, int, int]]:
    """The counts as the rows give them now."""
    return {
        (i, d, t, s): (int(n), int(late or 0), int(same or 0))
        for i, d, t, s, n, late, same in conn.execute(counts_from_rows())
    }

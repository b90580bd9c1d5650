"""The monitor's reject list: the rejected and conflicting rows with their reasons, filtered by day,
transaction, category and item, one page at a time or all of them for the export (reads only)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, and_, func, select

from cdyb_jxc.ledger.schema import upload_row
from cdyb_jxc.ledger.states import ATTENTION_STATES
from cdyb_jxc.ui.queries import REJECT_COLUMNS, Scope, counts_source, jsonable, within

t = upload_row.c


def rejects_query(
    *,
    day: str | None = None,
    transaction: str | None = None,
    category: str | None = None,
    item: str | None = None,
    institutions: Scope = None,
) -> Any:
    conds = _reject_conditions(
        t, day=day, transaction=transaction, category=category, institutions=institutions
    )
    if item:
        # the filter is a plain substring: % and _ typed by a user match themselves, not any text
        escaped = item.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        like = f"%{escaped}%"
        conds.append(
            t.mapping_serial_no.like(like, escape="\\")
            | t.item_name.like(like, escape="\\")
            | t.serial_no.like(like, escape="\\")
        )
    return and_(*conds)


def _reject_conditions(
    columns: Any, *, day: str | None, transaction: str | None, category: str | None, institutions: Scope
) -> list[Any]:
    """The reject filters on ``columns`` (the rows', or the day counts': they share these names)."""
    conds: list[Any] = [columns.state.in_(sorted(ATTENTION_STATES)), *within(columns, institutions)]
    if day:
        conds.append(columns.business_date == day)
    if transaction:
        conds.append(columns.transaction_code == transaction)
    if category:
        conds.append(columns.category == category)
    return conds


def rejects(
    engine: Engine, *, limit: int = 200, offset: int = 0, institutions: Scope = None, **filters: str | None
) -> dict[str, Any]:
    """A page of the rejected and conflicting rows (latest day first), their total and their categories.
    Without an ``item`` filter the day counts give the total, the categories and the days the page lies
    in, so only those days' rows are read; an ``item`` (a substring) is searched in the rows.

    :param institutions: only these institutions' rows (``None``: every institution's)
    """
    if filters.get("item"):
        return _rejects_from_rows(engine, limit, offset, institutions=institutions, **filters)
    c = counts_source(engine).c
    narrowed = _reject_conditions(
        c,
        day=filters.get("day"),
        transaction=filters.get("transaction"),
        category=filters.get("category"),
        institutions=institutions,
    )
    with engine.connect() as conn:
        per_day = conn.execute(
            select(c.business_date, func.sum(c.rows))
            .where(*narrowed)
            .group_by(c.business_date)
            .order_by(c.business_date.desc())
        ).all()
        found = [(day, int(n)) for day, n in per_day if n]
        categories = conn.execute(select(c.category).where(*narrowed, c.rows > 0).distinct()).scalars().all()
        days, skip = _page_days(found, offset, limit)
        rows: Sequence[Any] = []
        if days:
            rows = conn.execute(
                select(*[getattr(t, col) for col in REJECT_COLUMNS])
                .where(rejects_query(institutions=institutions, **filters), t.business_date.in_(days))
                .order_by(t.business_date.desc(), t.serial_no)
                .limit(limit)
                .offset(skip)
            ).all()
    return {
        "total": sum(n for _, n in found),
        "rows": [jsonable(dict(r._mapping)) for r in rows],
        "categories": sorted({cat for cat in categories if cat}),
    }


def _page_days(per_day: list[tuple[str, int]], offset: int, limit: int) -> tuple[list[str], int]:
    """The days (latest first, with their counts) holding rows ``[offset, offset + limit)``, and how many
    rows of the first of them come before the page."""
    days: list[str] = []
    before = seen = 0
    for day, n in per_day:
        if seen + n > offset and seen < offset + limit:
            if not days:
                before = seen
            days.append(day)
        seen += n
    return days, offset - before


def _rejects_from_rows(
    engine: Engine, limit: int, offset: int, *, institutions: Scope = None, **filters: str | None
) -> dict[str, Any]:
    cond = rejects_query(institutions=institutions, **filters)
    cols = [getattr(t, c) for c in REJECT_COLUMNS]
    with engine.connect() as conn:
        total = conn.execute(select(func.count()).where(cond)).scalar() or 0
        rows = conn.execute(
            select(*cols)
            .where(cond)
            .order_by(t.business_date.desc(), t.serial_no)
            .limit(limit)
            .offset(offset)
        ).all()
        categories = [c for (c,) in conn.execute(select(t.category).where(cond).distinct()) if c]
    return {
        "total": int(total),
        "rows": [jsonable(dict(r._mapping)) for r in rows],
        "categories": sorted(categories),
    }


def all_rejects(engine: Engine, *, institutions: Scope = None, **filters: str | None) -> list[dict[str, Any]]:
    cols = [getattr(t, c) for c in REJECT_COLUMNS]
    with engine.connect() as conn:
        rows = conn.execute(
            select(*cols)
            .where(rejects_query(institutions=institutions, **filters))
            .order_by(t.business_date, t.serial_no)
        )
        return [dict(r._mapping) for r in rows]

"""One business day × transaction of the monitor's calendar, opened: its counts per state and category (the
ledger's day counts), the rows that need a person (rejects with their reasons, rows in doubt, source issues),
the day's 进销存平衡 items and the DAG runs that wrote its rows. Reads only; every list is capped."""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from typing import Any

from sqlalchemy import Engine, func, select

from cdyb_jxc.ledger.schema import source_issue, upload_row
from cdyb_jxc.ledger.states import ATTENTION_STATES
from cdyb_jxc.ui import queries, rejects
from cdyb_jxc.ui.queries import Scope, within

t, si = upload_row.c, source_issue.c
LIST_MAX = 200  # rows per list (the reject list and its export page through the rest)
DOUBT_COLUMNS = (
    "institution_code",
    "serial_no",
    "mapping_serial_no",
    "item_name",
    "state",
    "detail",
    "attempts",
    "last_sent_at",
)
ISSUE_COLUMNS = (
    "institution_code",
    "serial_no",
    "source_row",
    "mapping_serial_no",
    "item_name",
    "category",
    "field",
    "detail",
)


def day_detail(
    engine: Engine, day: date, transaction_code: str, *, institutions: Scope = None
) -> dict[str, Any]:
    """Everything the monitor shows of ``day`` × ``transaction_code``.

    :param institutions: only these institutions' rows (``None``: every institution's)
    """
    on_day = day.isoformat()
    mine = within(t, institutions)
    states, categories = _counts(engine, on_day, transaction_code, institutions)
    with engine.connect() as conn:
        in_doubt = conn.execute(
            select(*[t[c] for c in DOUBT_COLUMNS])
            .where(
                t.business_date == on_day,
                t.transaction_code == transaction_code,
                t.state.in_(queries.OPEN_STATES),
                *mine,
            )
            .order_by(t.serial_no)
            .limit(LIST_MAX)
        ).all()
        runs = conn.execute(
            select(t.dag_id, t.run_id, func.count())
            .where(
                t.business_date == on_day,
                t.transaction_code == transaction_code,
                t.run_id.is_not(None),
                *mine,
            )
            .group_by(t.dag_id, t.run_id)
            .order_by(t.run_id)
            .limit(LIST_MAX)
        ).all()
        issues = _issues(engine, conn, on_day, transaction_code, institutions)
    found = rejects.rejects(
        engine, limit=LIST_MAX, day=on_day, transaction=transaction_code, institutions=institutions
    )
    return {
        "business_date": on_day,
        "transaction_code": transaction_code,
        "rows": sum(states.values()),
        "states": states,
        "categories": categories,
        "rejects": found,
        "in_doubt": [queries.jsonable(dict(r._mapping)) for r in in_doubt],
        "source_issues": issues,
        "balance": queries.balance(engine, day, institutions=institutions),
        "runs": [{"dag_id": d, "run_id": r, "rows": int(n)} for d, r, n in runs],
    }


def _counts(
    engine: Engine, day: str, code: str, institutions: Scope
) -> tuple[dict[str, int], dict[str, int]]:
    """Rows per state, and the rejected and conflicting rows per category, from the day counts."""
    c = queries.counts_source(engine).c
    query = (
        select(c.state, c.category, func.sum(c.rows))
        .where(c.business_date == day, c.transaction_code == code, *within(c, institutions))
        .group_by(c.state, c.category)
    )
    states: dict[str, int] = defaultdict(int)
    categories: dict[str, int] = defaultdict(int)
    with engine.connect() as conn:
        for state, category, n in conn.execute(query):
            if not n:
                continue
            states[state] += int(n)
            if state in ATTENTION_STATES and category:
                categories[category] += int(n)
    return dict(states), dict(categories)


def _issues(engine: Engine, conn: Any, day: str, code: str, institutions: Scope) -> list[dict[str, Any]]:
    if not queries.has_issues_table(engine):
        return []
    rows = conn.execute(
        select(*[si[c] for c in ISSUE_COLUMNS])
        .where(si.business_date == day, si.transaction_code == code, *within(si, institutions))
        .order_by(si.source_row)
        .limit(LIST_MAX)
    ).all()
    return [queries.jsonable(dict(r._mapping)) for r in rows]

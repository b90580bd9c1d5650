"""Read-only questions the upload monitor asks the ledger (SQLAlchemy Core; no Airflow, no writes)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, case, func, inspect, select

from cdyb_jxc.ledger.balance_store import DAY_COUNTS, balance_days, balance_items
from cdyb_jxc.ledger.rollup import counts_from_rows
from cdyb_jxc.ledger.schema import balance_day, day_count, source_issue, upload_batch, upload_row
from cdyb_jxc.ledger.states import ACCEPTED_STATES, ATTENTION_STATES, UNRESOLVED_STATES, LedgerState
from cdyb_jxc.wire.profile import DAILY_TRANSACTIONS

if TYPE_CHECKING:
    from cdyb_jxc.wire.profile import Profile

SHORT_NAMES = {"init": "初始化", "inbound": "入库", "outbound": "出库", "stock": "库存"}
OPEN_STATES = tuple(sorted(UNRESOLVED_STATES))  # the "in doubt" queue
STATUS_LABELS = {
    "complete": "完成",
    "partial": "部分被拒",
    "failed": "未完成",
    "late": "迟报",
    "missing": "缺报",
}
t = upload_row.c
si = source_issue.c
Scope = Sequence[str] | None  # the institutions a question is about (``None``: every institution)


def within(columns: Any, institutions: Scope) -> list[Any]:
    """The condition keeping ``columns``' rows to ``institutions`` (none for ``None``)."""
    return [] if institutions is None else [columns.institution_code.in_(list(institutions))]


def institution_codes(engine: Engine) -> list[str]:
    """The institutions the ledger holds anything of: counted rows, source issues or balance audits."""
    c = counts_source(engine).c
    queries = [select(c.institution_code).distinct()]
    if has_issues_table(engine):
        queries.append(select(si.institution_code).distinct())
    if inspect(engine).has_table(balance_day.name):
        queries.append(select(balance_day.c.institution_code).distinct())
    found: set[str] = set()
    with engine.connect() as conn:
        for query in queries:
            found.update(conn.execute(query).scalars())
    return sorted(found)


def _chosen(profile: Profile | None) -> Profile:
    """``profile``, else the one ``$CDYB_JXC_PROFILE`` names, else the packaged one. The monitor passes the
    profile of the uploads' centre connection (see :func:`cdyb_jxc.ui.app.profile`)."""
    from cdyb_jxc.wire.profile import load_profile

    return profile if profile is not None else load_profile()


def transaction_names(profile: Profile | None = None) -> dict[str, str]:
    """Wire code → short Chinese name, from the profile (a deployment may use other codes)."""
    chosen = _chosen(profile)
    return {chosen.transaction(key).code: name for key, name in SHORT_NAMES.items()}


def daily_codes(profile: Profile | None = None) -> list[str]:
    chosen = _chosen(profile)
    return [chosen.transaction(key).code for key in DAILY_TRANSACTIONS]


def has_issues_table(engine: Engine) -> bool:
    return bool(inspect(engine).has_table(source_issue.name))


def local_today(profile: Profile | None = None) -> date:
    """Today in the centre's time zone (business days are Asia/Shanghai days)."""
    offset = int(_chosen(profile).service["timezone_offset_hours"])
    return (datetime.now(UTC) + timedelta(hours=offset)).date()


def counts_source(engine: Engine) -> Any:
    """The rows counted per (institution, day, transaction, state): the ledger's day counts, or for a
    ledger of an earlier version (the monitor never writes one) the same counts read from its rows."""
    if inspect(engine).has_table(day_count.name):
        return day_count
    return counts_from_rows().subquery()


def ledger_ready(engine: Engine) -> bool:
    """True when the ledger tables exist (the monitor never creates them)."""
    return bool(inspect(engine).has_table(upload_row.name))


def _status(states: dict[str, int], late: int, issues: int = 0) -> str:
    if any(states.get(s) for s in (*OPEN_STATES, LedgerState.DUPLICATE_CONFLICT)) or (issues and not states):
        return "failed"
    if states.get(LedgerState.REJECTED) or issues:
        return "partial"
    return "late" if late else "complete"


def calendar(
    engine: Engine,
    days: int = 31,
    today: date | None = None,
    *,
    profile: Profile | None = None,
    institutions: Scope = None,
) -> dict[str, Any]:
    """Business days × transaction with a status: complete, partial, failed, late or missing."""
    today = today or local_today(profile)
    end = today - timedelta(days=1)
    start = end - timedelta(days=days - 1)
    codes, names = daily_codes(profile), transaction_names(profile)
    cells, first = _calendar_cells(engine, start, end, codes, institutions)
    audits = balance_days(engine, start.isoformat(), end.isoformat(), institutions)
    rows = []
    for n in range(days):
        day = (start + timedelta(days=n)).isoformat()
        if not first or day < first:
            continue  # before the first daily upload there is nothing to report
        balance = _balance_cell(audits.get(day))
        rows.append(
            {
                "business_date": day,
                "transactions": _calendar_day(day, codes, cells, first),
                "balance": balance,
            }
        )
    return {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "columns": [
            {"code": code, "label": names.get(code, code), "key": key}
            for key, code in zip(DAILY_TRANSACTIONS, codes, strict=True)
        ],
        "names": names,
        "days": rows,
        "labels": STATUS_LABELS,
    }


def _balance_cell(audit: dict[str, Any] | None) -> dict[str, Any]:
    """The day's 进销存平衡 status: ``none`` (not audited), ``imbalance`` (the accepted rows do not add up),
    ``source_imbalance`` (the source's rows do not: the HIS itself), ``unchecked`` (items without an opening
    or closing stock) or ``ok``."""
    if audit is None:
        return {"status": "none", **dict.fromkeys(DAY_COUNTS, 0)}
    status = next((key for key in DAY_COUNTS[1:] if audit[key]), "ok")
    return {"status": status, **audit}


def balance(engine: Engine, day: date, *, institutions: Scope = None) -> dict[str, Any]:
    """The items of ``day``'s audit that were not ok (the day's list beside the calendar)."""
    on_day = day.isoformat()
    audit = balance_days(engine, on_day, on_day, institutions).get(on_day)
    return {
        "business_date": on_day,
        **_balance_cell(audit),
        "rows": balance_items(engine, on_day, institutions),
    }


def _calendar_cells(
    engine: Engine, start: date, end: date, codes: list[str], institutions: Scope
) -> tuple[dict[tuple[str, str], dict[str, Any]], str | None]:
    """Row counts per (day, code, state), late rows and source issues of ``[start, end]``; and the first
    business day with a daily upload."""
    c = counts_source(engine).c
    query = (
        select(c.business_date, c.transaction_code, c.state, func.sum(c.rows), func.sum(c.late))
        .where(
            c.business_date >= start.isoformat(),
            c.business_date <= end.isoformat(),
            *within(c, institutions),
        )
        .group_by(c.business_date, c.transaction_code, c.state)
    )
    cells: dict[tuple[str, str], dict[str, Any]] = defaultdict(
        lambda: {"states": {}, "late": 0, "source_issues": 0}
    )
    with engine.connect() as conn:
        for day, code, state, count, late in conn.execute(query):
            if not count:
                continue  # every row of that state moved on
            acc = cells[(day, code)]
            acc["states"][state] = int(count)
            acc["late"] += int(late or 0)
        if has_issues_table(engine):
            issues = (
                select(si.business_date, si.transaction_code, func.count())
                .where(
                    si.business_date >= start.isoformat(),
                    si.business_date <= end.isoformat(),
                    *within(si, institutions),
                )
                .group_by(si.business_date, si.transaction_code)
            )
            for day, code, count in conn.execute(issues):
                cells[(day, code)]["source_issues"] = int(count)
        first = conn.execute(
            select(func.min(c.business_date)).where(
                c.transaction_code.in_(codes), c.rows > 0, *within(c, institutions)
            )
        ).scalar()
    return cells, first


def _calendar_day(
    day: str, codes: list[str], cells: dict[tuple[str, str], dict[str, Any]], first: str | None
) -> dict[str, Any]:
    """One calendar row: each transaction's status and counts on ``day``."""
    transactions: dict[str, Any] = {}
    for code in codes:
        cell: dict[str, Any] | None = cells.get((day, code))
        if cell is None:
            status = "missing" if first and day >= first else "none"
            transactions[code] = {"status": status, "rows": 0, "states": {}, "source_issues": 0}
        else:
            status = _status(cell["states"], cell["late"], cell["source_issues"])
            total = sum(cell["states"].values())
            transactions[code] = {
                "status": status,
                "rows": total,
                "states": cell["states"],
                "late": cell["late"],
                "source_issues": cell["source_issues"],
            }
    return transactions


def summary(
    engine: Engine, today: date | None = None, *, profile: Profile | None = None, institutions: Scope = None
) -> dict[str, Any]:
    """Counts per state, T+1 compliance rate, rows overdue against T+1 and the size of the queues."""
    today = today or local_today(profile)
    # day D is due by the end of D+1: rows of days up to today-2 that are still not accepted are overdue
    due_by = (today - timedelta(days=2)).isoformat()
    c = counts_source(engine).c
    accepted_states = sorted(ACCEPTED_STATES)
    mine = within(c, institutions)
    with engine.connect() as conn:
        overdue = conn.execute(
            select(func.sum(c.rows)).where(
                *mine,
                c.transaction_code.in_(daily_codes(profile)),
                c.business_date <= due_by,
                c.state.not_in(accepted_states),
            )
        ).scalar()
        by_state = conn.execute(select(c.state, func.sum(c.rows)).where(*mine).group_by(c.state))
        states = {s: int(n) for s, n in by_state if n}
        accepted = conn.execute(
            select(func.sum(c.rows), func.sum(c.late), func.sum(c.same_day)).where(
                *mine, c.state.in_(accepted_states)
            )
        ).one()
        last = conn.execute(select(func.max(c.business_date)).where(*mine, c.rows > 0)).scalar()
        issues = (
            int(
                conn.execute(
                    select(func.count()).select_from(source_issue).where(*within(si, institutions))
                ).scalar()
                or 0
            )
            if has_issues_table(engine)
            else 0
        )
    total_accepted, late, same_day = (int(n or 0) for n in accepted)
    rate = round((total_accepted - late) / total_accepted, 4) if total_accepted else None
    t0_rate = round(same_day / total_accepted, 4) if total_accepted else None
    return {
        "states": states,
        "rows": sum(states.values()),
        "accepted": total_accepted,
        "late": late,
        "t1_compliance_rate": rate,
        "same_day": same_day,
        "t0_rate": t0_rate,
        "overdue": int(overdue or 0),
        "in_doubt": sum(states.get(s, 0) for s in OPEN_STATES),
        "conflicts": states.get(LedgerState.DUPLICATE_CONFLICT, 0),
        "source_issues": issues,
        "last_business_date": last,
    }


def trend(
    engine: Engine,
    days: int = 31,
    today: date | None = None,
    *,
    profile: Profile | None = None,
    institutions: Scope = None,
) -> dict[str, Any]:
    """Rows per business day, reject rate and T+1 lateness (accepted rows that came late), per
    transaction."""
    today = today or local_today(profile)
    start = (today - timedelta(days=days)).isoformat()
    c = counts_source(engine).c
    rejected = func.sum(case((c.state.in_(sorted(ATTENTION_STATES)), c.rows), else_=0))
    accepted = c.state.in_(sorted(ACCEPTED_STATES))
    late = func.sum(case((accepted, c.late), else_=0))
    on_time = func.sum(case((accepted, c.rows), else_=0))
    query = (
        select(c.business_date, c.transaction_code, func.sum(c.rows), rejected, late, on_time)
        .where(c.business_date >= start, *within(c, institutions))
        .group_by(c.business_date, c.transaction_code)
        .order_by(c.business_date, c.transaction_code)
    )
    points = []
    with engine.connect() as conn:
        for day, code, count, bad, came_late, accepted_rows in conn.execute(query):
            if not count:
                continue
            late_rows, taken = int(came_late or 0), int(accepted_rows or 0)
            points.append(
                {
                    "business_date": day,
                    "transaction_code": code,
                    "rows": int(count),
                    "rejected": int(bad or 0),
                    "reject_rate": round(int(bad or 0) / int(count), 4),
                    "late": late_rows,
                    "late_rate": round(late_rows / taken, 4) if taken else None,
                }
            )
    return {"points": points}


REJECT_COLUMNS = (
    "institution_code",
    "serial_no",
    "transaction_code",
    "business_date",
    "mapping_serial_no",
    "item_name",
    "field",
    "category",
    "detail",
    "state",
    "held_back",
    "attempts",
    "updated_at",
)


def queues(engine: Engine, limit: int = 200, *, institutions: Scope = None) -> dict[str, Any]:
    """Rows needing a person: in doubt (sent, outcome unknown), duplicate conflicts, and source rows that
    could not be sent (no 流水号, repeated, used by another transaction, changed after acceptance)."""
    cols = [
        t.institution_code,
        t.serial_no,
        t.transaction_code,
        t.business_date,
        t.mapping_serial_no,
        t.item_name,
        t.state,
        t.detail,
        t.attempts,
        t.last_sent_at,
        t.updated_at,
    ]
    out: dict[str, Any] = {}
    with engine.connect() as conn:
        for name, states in (("in_doubt", OPEN_STATES), ("conflicts", (LedgerState.DUPLICATE_CONFLICT,))):
            # the newest of each state by its index (state, updated_at), merged: one query over all of the
            # states would sort every row they hold
            found = [
                r
                for state in states
                for r in conn.execute(
                    select(*cols)
                    .where(t.state == state, *within(t, institutions))
                    .order_by(t.updated_at.desc())
                    .limit(limit)
                )
            ]
            found.sort(key=lambda r: r.updated_at, reverse=True)
            out[name] = [jsonable(dict(r._mapping)) for r in found[:limit]]
        out["source_issues"] = []
        if has_issues_table(engine):
            issue_cols = [
                si.institution_code,
                si.transaction_code,
                si.business_date,
                si.source_row,
                si.serial_no,
                si.mapping_serial_no,
                si.item_name,
                si.category,
                si.detail,
                si.seen_at,
            ]
            rows = conn.execute(
                select(*issue_cols)
                .where(*within(si, institutions))
                .order_by(si.business_date.desc(), si.source_row)
                .limit(limit)
            ).all()
            out["source_issues"] = [jsonable(dict(r._mapping)) for r in rows]
    return out


BATCH_COLUMNS = (
    "id",
    "transaction_code",
    "task_id",
    "row_count",
    "outcome",
    "retcode",
    "retmsg",
    "succnum",
    "failnum",
    "started_at",
    "duration_ms",
    "error",
)


def run_view(engine: Engine, dag_id: str, run_id: str) -> dict[str, Any]:
    """What one DAG run uploaded: states per transaction, its requests, its rejects."""
    b = upload_batch.c
    with engine.connect() as conn:
        per_txn: dict[str, dict[str, int]] = defaultdict(dict)
        query = (
            select(t.transaction_code, t.state, func.count())
            .where(t.dag_id == dag_id, t.run_id == run_id)
            .group_by(t.transaction_code, t.state)
        )
        for code, state, count in conn.execute(query):
            per_txn[code][state] = int(count)
        batches = conn.execute(
            select(*[getattr(b, c) for c in BATCH_COLUMNS])
            .where(b.dag_id == dag_id, b.run_id == run_id)
            .order_by(b.id)
        ).all()
        rows = conn.execute(
            select(*[getattr(t, c) for c in REJECT_COLUMNS])
            .where(t.dag_id == dag_id, t.run_id == run_id, t.state.in_(sorted(ATTENTION_STATES)))
            .order_by(t.serial_no)
            .limit(500)
        ).all()
    return {
        "dag_id": dag_id,
        "run_id": run_id,
        "transactions": dict(per_txn),
        "batches": [jsonable(dict(r._mapping)) for r in batches],
        "rejects": [jsonable(dict(r._mapping)) for r in rows],
    }


def jsonable(record: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (v.isoformat(sep=" ", timespec="seconds") if hasattr(v, "isoformat") else v)
        for k, v in record.items()
    }

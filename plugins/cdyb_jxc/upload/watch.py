"""The T+1 watch: what of day D is still not accepted at the deadline, routed to who can fix it (no Airflow).

The bureau's rule is T+1: day D's rows at the centre by the end of D+1. At the deadline (default D+1 18:00
Asia/Shanghai) the watch reads the ledger once, grouped by transaction, state and category, and splits
what is missing into two routes:

* **data**: rows the centre (or the hold-back) refused for their content — 字段校验失败, 未对码,
  对码信息不一致, 字符集错误 — and source issues (no 流水号, repeated, …): the pharmacy or the data owner;
* **operations**: rows still in doubt, pending or in flight, rows refused for anything else (credentials,
  limits, a return's original outbound), and a day without its stock upload: whoever runs the uploads.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import func, select

from cdyb_jxc.ledger import ACCEPTED_STATES, Ledger
from cdyb_jxc.ledger.schema import source_issue, upload_row
from cdyb_jxc.wire.profile import Profile

DATA_CATEGORIES = ("field_invalid", "unmapped", "mapping_mismatch", "charset")
SOURCE_ISSUE = "源数据问题"
DAILY_CODES = ("JXC002", "JXC003", "JXC004")
STOCK = "JXC004"


@dataclass
class Findings:
    """What of one day is not accepted: (transaction, what) → rows, per route."""

    data: Counter[tuple[str, str]] = field(default_factory=Counter)
    ops: Counter[tuple[str, str]] = field(default_factory=Counter)
    accepted: int = 0

    @property
    def complete(self) -> bool:
        return not (self.data or self.ops)


def t1_findings(ledger: Ledger, profile: Profile, institution_code: str, day: str) -> Findings:
    """Day ``day``'s rows not accepted, routed (two grouped queries: the rows, the source issues).

    :param ledger: the ledger
    :param profile: the interface profile (the category texts)
    :param institution_code: 定点机构编码
    :param day: the business day (``YYYY-MM-DD``)
    """
    data_texts = {profile.category(key) for key in DATA_CATEGORIES}
    found = Findings()
    t = upload_row.c
    rows = (
        select(t.transaction_code, t.state, t.category, func.count())
        .where(
            t.institution_code == institution_code,
            t.business_date == day,
            t.transaction_code.in_(DAILY_CODES),
        )
        .group_by(t.transaction_code, t.state, t.category)
    )
    i = source_issue.c
    issues = (
        select(i.transaction_code, func.count())
        .where(i.institution_code == institution_code, i.business_date == day)
        .group_by(i.transaction_code)
    )
    uploaded: set[str] = set()
    with ledger.engine.connect() as conn:
        for txn, state, category, n in conn.execute(rows):
            uploaded.add(txn)
            if state in ACCEPTED_STATES:
                found.accepted += n
            elif category in data_texts:
                found.data[(txn, category)] += n
            else:
                found.ops[(txn, category or str(state))] += n
        for txn, n in conn.execute(issues):
            found.data[(txn, SOURCE_ISSUE)] += n
    if STOCK not in uploaded:
        found.ops[(STOCK, "库存未上传 no stock rows for the day")] += 1
    return found


def message(
    institution_code: str, day: str, deadline: str, lines: Counter[tuple[str, str]], route: str
) -> str:
    """The notification of one route: what is missing, by transaction and category."""
    parts = "; ".join(f"{txn} {what}: {n} 条" for (txn, what), n in sorted(lines.items()))
    return f"医保进销存 T+1 {institution_code} 业务日期 {day} 截至 {deadline} 仍未完成 ({route}): {parts}"

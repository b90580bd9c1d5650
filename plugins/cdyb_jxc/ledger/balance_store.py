"""The ledger's record of the 进销存平衡 audits (see :mod:`cdyb_jxc.upload.balance`): per business day, how
many items were audited and how many did not balance, and the items that did not. A part of
:class:`~cdyb_jxc.ledger.Ledger` (SQLAlchemy Core, no Airflow)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, delete, insert, inspect, select

from cdyb_jxc.ledger.schema import balance_day, balance_item
from cdyb_jxc.safety.textcap import column_caps, fit_values

_DAY_CAPS, _ITEM_CAPS = column_caps(balance_day), column_caps(balance_item)
DAY_COUNTS = ("items", "imbalance", "source_imbalance", "unchecked")
ITEM_COLUMNS = tuple(c.name for c in balance_item.c if c.name not in ("institution_code", "business_date"))


class BalanceStore:
    """Reads and writes ``cdyb_jxc_balance_day`` and ``cdyb_jxc_balance_item`` through :attr:`engine`."""

    engine: Engine

    def record_balance(
        self,
        institution_code: str,
        business_date: str,
        summary: dict[str, Any],
        items: Sequence[dict[str, Any]],
    ) -> None:
        """Replace the day's audit: ``summary`` (:data:`DAY_COUNTS` and ``report``)
        and the items that are not ok (values by :data:`ITEM_COLUMNS`), in one transaction."""
        key = {"institution_code": institution_code, "business_date": business_date}
        day = fit_values(_DAY_CAPS, {**key, **summary, "audited_at": datetime.now(UTC).replace(tzinfo=None)})
        rows = [fit_values(_ITEM_CAPS, {**key, **item}) for item in items]
        d, i = balance_day.c, balance_item.c
        with self.engine.begin() as conn:
            conn.execute(
                delete(balance_item).where(
                    i.institution_code == institution_code, i.business_date == business_date
                )
            )
            conn.execute(
                delete(balance_day).where(
                    d.institution_code == institution_code, d.business_date == business_date
                )
            )
            conn.execute(insert(balance_day).values(day))
            if rows:
                conn.execute(insert(balance_item), rows)

    def balance_days(
        self, first: str, last: str, institution_code: str | None = None
    ) -> dict[str, dict[str, Any]]:
        return balance_days(self.engine, first, last, _only(institution_code))

    def balance_items(self, business_date: str, institution_code: str | None = None) -> list[dict[str, Any]]:
        return balance_items(self.engine, business_date, _only(institution_code))


def _only(institution_code: str | None) -> tuple[str, ...] | None:
    return (institution_code,) if institution_code else None


def balance_days(
    engine: Engine, first: str, last: str, institutions: Sequence[str] | None = None
) -> dict[str, dict[str, Any]]:
    """The audits of ``[first, last]`` by business day (several institutions' counts added up); none when
    the ledger predates the audit's tables.

    :param institutions: only these institutions' audits (``None``: every institution's)
    """
    if not inspect(engine).has_table(balance_day.name):
        return {}
    d = balance_day.c
    query = select(d.business_date, *[d[k] for k in DAY_COUNTS]).where(
        d.business_date >= first, d.business_date <= last
    )
    if institutions is not None:
        query = query.where(d.institution_code.in_(list(institutions)))
    out: dict[str, dict[str, Any]] = {}
    with engine.connect() as conn:
        for day, *counts in conn.execute(query):
            acc = out.setdefault(day, dict.fromkeys(DAY_COUNTS, 0))
            for key, n in zip(DAY_COUNTS, counts, strict=True):
                acc[key] += n
    return out


def balance_items(
    engine: Engine, business_date: str, institutions: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """The items of a day's audit that were not ok, by institution and item."""
    if not inspect(engine).has_table(balance_item.name):
        return []
    i = balance_item.c
    query = select(i.institution_code, *[i[c] for c in ITEM_COLUMNS]).where(i.business_date == business_date)
    if institutions is not None:
        query = query.where(i.institution_code.in_(list(institutions)))
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(i.institution_code, i.mapping_serial_no))
        return [dict(r._mapping) for r in rows]

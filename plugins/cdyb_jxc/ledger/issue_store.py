"""The ledger's source issues (see :mod:`cdyb_jxc.upload.source_issues`): source rows an upload
could not send,
kept visible. A part of :class:`~cdyb_jxc.ledger.Ledger` (SQLAlchemy Core, no Airflow)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from sqlalchemy import Engine, and_, bindparam, delete, insert, select

from cdyb_jxc.ledger.schema import source_issue
from cdyb_jxc.safety.textcap import column_caps, fit_values

_DELETE_CHUNK = 500
ROW_KEY_MAX = 200  # characters of a 流水号 in a row key (cdyb_jxc.upload.source_issues)
# every text written goes through these (see cdyb_jxc.safety.textcap):
# no hostile or odd value can fail a write
_ISSUE_CAPS = column_caps(source_issue)


class SourceIssueStore:
    """Reads and writes ``cdyb_jxc_source_issue`` through :attr:`engine`."""

    engine: Engine

    def record_source_issues(self, issues: Sequence[dict[str, Any]]) -> None:
        """Insert or replace issues by (institution, transaction, business day, row key)."""
        if not issues:
            return
        issues = [fit_values(_ISSUE_CAPS, x) for x in issues]
        i = source_issue.c
        stmt = delete(source_issue).where(
            i.institution_code == bindparam("k_institution"),
            i.transaction_code == bindparam("k_transaction"),
            i.business_date == bindparam("k_date"),
            i.row_key == bindparam("k_row"),
        )
        keys = [
            {
                "k_institution": x["institution_code"],
                "k_transaction": x["transaction_code"],
                "k_date": x["business_date"],
                "k_row": x["row_key"],
            }
            for x in issues
        ]
        with self.engine.begin() as conn:
            conn.execute(stmt, keys)
            conn.execute(insert(source_issue), list(issues))

    def has_source_issues(self, institution_code: str, transaction_code: str) -> bool:
        i = source_issue.c
        query = (
            select(i.row_key)
            .where(i.institution_code == institution_code, i.transaction_code == transaction_code)
            .limit(1)
        )
        with self.engine.connect() as conn:
            return conn.execute(query).first() is not None

    def drop_source_issues(
        self, institution_code: str, transaction_code: str, row_keys: Sequence[str], run_token: str
    ) -> int:
        """Drop issues with these row keys that the run ``run_token`` did not record."""
        return self._drop_issues(institution_code, transaction_code, "row_key", row_keys, run_token)

    def drop_resolved_issues(
        self, institution_code: str, transaction_code: str, serials: Sequence[str], run_token: str
    ) -> int:
        """Drop issues of these 流水号 that the run ``run_token`` did not record: keyed by the 流水号, or
        naming it as ``serial_no`` (a repeat's key also names its row and source)."""
        keys = [s[:ROW_KEY_MAX] for s in serials]
        dropped = self._drop_issues(institution_code, transaction_code, "row_key", keys, run_token)
        return dropped + self._drop_issues(
            institution_code, transaction_code, "serial_no", serials, run_token
        )

    def clear_source_issues(
        self, institution_code: str, transaction_code: str, business_dates: Iterable[str], run_token: str
    ) -> int:
        """Drop issues of ``business_dates`` that the run ``run_token`` did not see again (fixed at the
        source). Returns how many were dropped."""
        dates = sorted(set(business_dates))
        return self._drop_issues(institution_code, transaction_code, "business_date", dates, run_token)

    def _drop_issues(
        self, institution_code: str, transaction_code: str, column: str, values: Sequence[str], run_token: str
    ) -> int:
        """Delete the transaction's issues whose ``column`` is one of ``values``, except those of
        ``run_token``; returns how many."""
        i = source_issue.c
        dropped = 0
        with self.engine.begin() as conn:
            for start in range(0, len(values), _DELETE_CHUNK):
                result = conn.execute(
                    delete(source_issue).where(
                        i.institution_code == institution_code,
                        i.transaction_code == transaction_code,
                        getattr(i, column).in_(values[start : start + _DELETE_CHUNK]),
                        i.run_token != run_token,
                    )
                )
                dropped += int(result.rowcount or 0)
        return dropped

    def iter_source_issues(self, *conditions: Any) -> Iterator[dict[str, Any]]:
        i = source_issue.c
        query = (
            select(source_issue)
            .where(and_(True, *conditions))
            .order_by(i.business_date, i.transaction_code, i.source_row, i.row_key)
        )
        with self.engine.connect() as conn:
            for r in conn.execute(query):
                yield dict(r._mapping)

"""The ledger's audit row of every request (``cdyb_jxc_upload_batch``): opened with the request as it went
out (验证码 redacted) before it leaves, closed with the outcome and the reply. A part of
:class:`~cdyb_jxc.ledger.Ledger` (SQLAlchemy Core, no Airflow); the ledger's time base and text compression
live here too.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from functools import partial
from typing import Any

from sqlalchemy import Connection, Engine, and_, bindparam, insert, select, update
from sqlalchemy.sql.dml import Update

from cdyb_jxc.ledger.driver import DriverStatements
from cdyb_jxc.ledger.schema import upload_batch
from cdyb_jxc.safety.textcap import REPLY_MAX, column_caps, encoded, fit_values

_BATCH_CAPS = column_caps(upload_batch)  # every text written is fitted: no hostile value can fail a write


def _finish_statement(keys: tuple[str, ...]) -> Update:
    """``UPDATE`` of an audit row's ``keys`` (parameters ``v_<key>``) by id (``b_id``)."""
    values = {k: bindparam(f"v_{k}", type_=upload_batch.c[k].type) for k in keys}
    return update(upload_batch).where(upload_batch.c.id == bindparam("b_id")).values(values)


def utcnow() -> datetime:
    """Naive UTC now, the ledger's time base."""
    return datetime.now(UTC).replace(tzinfo=None)


def compress(text: str | None, limit: int = REPLY_MAX) -> bytes | None:
    """``text`` capped at ``limit`` characters (cdyb_jxc.safety.textcap marker) and zlib-compressed.

    Level 3: a request compresses ~3× faster than at zlib's default and only ~15% larger (two of these
    per batch are a measurable share of an upload's time)."""
    return None if text is None else zlib.compress(encoded(text, limit), 3)


def decompress(blob: bytes | None) -> str | None:
    return None if blob is None else zlib.decompress(blob).decode("utf-8")


class BatchStore:
    """Opens, closes and reads the audit rows through :attr:`engine` (joining the open transaction)."""

    engine: Engine
    _driver: DriverStatements

    _joined: Callable[..., AbstractContextManager[Connection]]  # the Ledger's

    # -- batches (audit) --------------------------------------------------------------------------------
    def start_batch(self, *, started_at: datetime | None = None, **values: Any) -> int:
        """Open the audit row of a request; returns its id.

        :param started_at: when the request started (default now)
        """
        with self._joined(write=True) as conn:
            fitted = {"started_at": started_at or utcnow(), **fit_values(_BATCH_CAPS, values)}
            if self._driver.has_lastrowid:
                keys = tuple(fitted)
                statement = self._driver.get(("start_batch", keys), partial(insert, upload_batch), keys)
                result = statement.execute(conn, [fitted])
                if result is not None and result.lastrowid:
                    return int(result.lastrowid)
                raise RuntimeError("ledger did not return the batch id")
            pk = conn.execute(insert(upload_batch).values(**fitted)).inserted_primary_key
            if pk is None:  # pragma: no cover - every supported dialect returns it
                raise RuntimeError("ledger did not return the batch id")
            return int(pk[0])

    def finish_batch(
        self,
        batch_id: int,
        *,
        started_at: datetime | None = None,
        finished_at: datetime | None = None,
        **values: Any,
    ) -> None:
        """Close the audit row of a request with its outcome.

        :param started_at: the row's ``started_at``, when the caller knows it (else it is read)
        :param finished_at: when the call ended (default now): its answer may be recorded later
        """
        now = finished_at or utcnow()
        with self._joined(write=True) as conn:
            started = started_at
            if started is None:
                query = select(upload_batch.c.started_at).where(upload_batch.c.id == batch_id)
                started = conn.execute(query).scalar()
            duration = (now - started).total_seconds() * 1000 if started else None
            fitted = {"finished_at": now, "duration_ms": duration, **fit_values(_BATCH_CAPS, values)}
            statement = self._driver.get(
                ("finish_batch", tuple(fitted)), partial(_finish_statement, tuple(fitted))
            )
            statement.execute(conn, [{"b_id": batch_id, **{f"v_{k}": v for k, v in fitted.items()}}])

    def abandon_open_batches(self, institution_code: str, transaction_code: str, run_token: str) -> int:
        """Close audit rows of earlier runs that never recorded a reply (their worker died)."""
        b = upload_batch.c
        with self.engine.begin() as conn:
            result = conn.execute(
                update(upload_batch)
                .where(
                    b.institution_code == institution_code,
                    b.transaction_code == transaction_code,
                    b.finished_at.is_(None),
                    b.run_token != run_token,
                )
                .values(
                    finished_at=utcnow(),
                    outcome="abandoned",
                    error="the worker stopped before the reply was recorded; rows treated as in doubt",
                )
            )
            return int(result.rowcount or 0)

    def batches(self, *conditions: Any) -> list[dict[str, Any]]:
        query = select(upload_batch).where(and_(True, *conditions)).order_by(upload_batch.c.id)
        with self.engine.connect() as conn:
            out = []
            for r in conn.execute(query):
                rec = dict(r._mapping)
                rec["request"] = decompress(rec.pop("request_gz"))
                rec["reply"] = decompress(rec.pop("reply_gz"))
                out.append(rec)
            return out

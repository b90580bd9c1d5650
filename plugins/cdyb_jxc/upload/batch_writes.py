"""The ledger writes of one batch (no Airflow): before its request leaves, the audit row and the rows
IN_FLIGHT, in one transaction; after, what its answer or its failure means for each row, with the audit row
closed, in one transaction. :class:`~cdyb_jxc.upload.sender.BatchSender` decides when and what comes next;
this module writes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cdyb_jxc.exceptions import CallRejectedError, CdybJxcError, InDoubtError, TransportError
from cdyb_jxc.ledger import Ledger
from cdyb_jxc.ledger.batch_store import compress, utcnow
from cdyb_jxc.upload.batches import Exchange, Flight, Planned, ReplyRecorder, answer_audit
from cdyb_jxc.upload.result import RunInfo
from cdyb_jxc.upload.unwritten import Unwritten


class BatchWrites:
    """The writes of each batch of one upload.

    :param ledger: the ledger
    :param institution_code: 定点机构编码
    :param txn_code: the transaction's code (JXC003, …)
    :param run: who is uploading
    :param replies: records what a reply says of each row
    :param unwritten: rows new to the ledger, written as their batch leaves
    """

    def __init__(
        self,
        *,
        ledger: Ledger,
        institution_code: str,
        txn_code: str,
        run: RunInfo,
        replies: ReplyRecorder,
        unwritten: Unwritten,
    ) -> None:
        self.ledger = ledger
        self.institution = institution_code
        self.txn_code = txn_code
        self.run = run
        self.replies = replies
        self.unwritten = unwritten

    # -- before the request leaves ---------------------------------------------------------------------------
    def launch(self, flight: Flight, now: datetime) -> None:
        """The audit row (with the request) and the rows IN_FLIGHT, committed. Raises
        :class:`~cdyb_jxc.exceptions.SerialTakenError` (nothing written) when another upload inserted a new
        row of the batch meanwhile."""
        with self.ledger.transaction():
            flight.batch_id = self._open_audit(flight, now)
            new = self._in_flight(flight.batch, flight.batch_id, now)
        self.unwritten.written(new)

    def _open_audit(self, flight: Flight, now: datetime) -> int:
        return self.ledger.start_batch(
            started_at=now,
            institution_code=self.institution,
            transaction_code=self.txn_code,
            run_token=self.run.token,
            dag_id=self.run.dag_id,
            run_id=self.run.run_id,
            task_id=self.run.task_id,
            row_count=len(flight.batch),
            request_gz=flight.request_gz,
        )

    def _in_flight(self, batch: list[Planned], batch_id: int, now: datetime) -> list[str]:
        """The batch's rows IN_FLIGHT: inserted so when new to the ledger, else updated. Returns the 流水号
        inserted."""
        new = self.unwritten.of(batch)
        inserted = [r["serial_no"] for r in new]
        if new:
            self.ledger.add_in_flight(new, batch_id, now)
        if len(new) < len(batch):
            skip = set(inserted)
            # None: the payload sent is the row's own (its hash is in the ledger already)
            sent = [
                (p.serial, None if p.sent_hash == p.hash else p.sent_hash)
                for p in batch
                if p.serial not in skip
            ]
            self.ledger.mark_in_flight(self.institution, sent, batch_id, now)
        return inserted

    # -- after ---------------------------------------------------------------------------------------------
    def failed(self, flight: Flight, err: CdybJxcError) -> None:
        """What a failed call means for the rows, and the audit row closed."""
        batch = flight.batch
        with self.ledger.transaction():
            if isinstance(err, TransportError):
                self._not_sent(batch, f"未发送: {err}")
                self._close(flight, outcome="not_sent", error=str(err))
            elif isinstance(err, InDoubtError):
                serials = [p.serial for p in batch]
                self.ledger.mark_in_doubt(self.institution, serials, f"应答丢失: {err}", utcnow())
                reply_gz = compress(err.reply_text)
                self._close(flight, outcome="in_doubt", error=str(err), reply_gz=reply_gz)
            elif isinstance(err, CallRejectedError):
                self._not_sent(batch, f"整批被拒: {err}")
                self._close(flight, outcome="rejected", error=str(err))

    def call_rejected(self, flight: Flight, exchange: Exchange) -> None:
        """A reply that rejects the whole call: nothing was stored."""
        audit = answer_audit(flight, exchange)
        with self.ledger.transaction():
            self._not_sent(flight.batch, f"整批被拒: {exchange.reply.retmsg}")
            self._close(flight, outcome="rejected", **audit)

    def answered(self, flight: Flight, exchange: Exchange) -> list[Planned]:
        """Each row's answer and the audit row closed; returns the rows a self-contradicting reply left in
        doubt."""
        reply, audit = exchange.reply, answer_audit(flight, exchange)
        with self.ledger.transaction():
            doubtful, contradiction = self.replies.record(flight.batch, reply)
            outcome = "in_doubt" if contradiction else reply.status
            self._close(flight, outcome=outcome, error=contradiction, **audit)
        return doubtful

    def _close(self, flight: Flight, **values: Any) -> None:
        """Close the batch's audit row with its outcome (and, answered, the reply)."""
        self.ledger.finish_batch(
            flight.batch_id, started_at=flight.started_at, finished_at=flight.finished_at, **values
        )

    def _not_sent(self, batch: list[Planned], detail: str) -> None:
        """Nothing was stored: rows go back to PENDING, or stay IN_DOUBT if an earlier send was in doubt."""
        rows = [(p.serial, p.sent_before) for p in batch]
        self.ledger.mark_not_sent(self.institution, rows, detail, utcnow())

"""Rows new to the ledger that go in as their batch leaves (no Airflow).

A row sent for the first time is written once, IN_FLIGHT, in the transaction that opens its request's audit
row (:meth:`~cdyb_jxc.ledger.Ledger.add_in_flight`), not inserted PENDING while planning and updated as it
leaves. Until then its planned values wait in :class:`Unwritten`, but never while the upload waits: before
the sender waits for the centre, and when sending stops (an error, a refused call, a lost lock), every row
still waiting is written as planned, PENDING. So a process killed while it waits for the centre leaves all
its planned rows in the ledger, as it always did; only the rows planned since it last waited (the batches
it is busy launching) are left to its next run, which reads them from the source again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from cdyb_jxc.ledger import Ledger, LedgerEntry
from cdyb_jxc.upload.batches import Planned

log = logging.getLogger(__name__)


class Unwritten:
    """The planned values of rows new to the ledger, by 流水号, until their batch leaves.

    :param ledger: the ledger
    :param institution_code: 定点机构编码
    """

    def __init__(self, ledger: Ledger, institution_code: str) -> None:
        self.ledger = ledger
        self.institution = institution_code
        self._rows: dict[str, dict[str, Any]] = {}
        self._gone: dict[str, LedgerEntry] = {}  # written by another upload first (see write_planned)

    def __contains__(self, serial: object) -> bool:
        return serial in self._rows

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, row: dict[str, Any]) -> None:
        """A row planned to send (the values :meth:`~cdyb_jxc.ledger.Ledger.add_planned` takes)."""
        self._rows[row["serial_no"]] = row

    def of(self, batch: Sequence[Planned]) -> list[dict[str, Any]]:
        """The planned values of the rows of ``batch`` still waiting here."""
        rows = self._rows
        return [rows[p.serial] for p in batch if p.serial in rows]

    def written(self, serials: Iterable[str]) -> None:
        """These rows are in the ledger now (committed)."""
        for serial in serials:
            self._rows.pop(serial, None)

    def taken(self, batch: Sequence[Planned]) -> dict[str, LedgerEntry]:
        """The rows of ``batch`` another upload inserted since they were planned (what the ledger holds of
        them): found when this upload wrote them, or looked up now. They are no longer waiting, and are not
        sent."""
        found = {p.serial: self._gone.pop(p.serial) for p in batch if p.serial in self._gone}
        if found or not self._rows:
            return found
        found = self.ledger.lookup(self.institution, [r["serial_no"] for r in self.of(batch)])
        self.written(found)
        return found

    def has_gone(self, batch: Sequence[Planned]) -> bool:
        """Whether another upload inserted a row of ``batch`` before :meth:`write_planned` could."""
        gone = self._gone
        return bool(gone) and any(p.serial in gone for p in batch)

    def write_planned(self) -> None:
        """Write every row still waiting as planned (PENDING), in one transaction: the sender is about to
        wait for the centre. A row another upload inserted meanwhile is kept aside for :meth:`taken`."""
        if self._rows:
            self._gone.update(self.ledger.add_planned(list(self._rows.values())))
            self._rows = {}  # only once they are in: a failed write leaves them for keep_as_planned

    def keep_as_planned(self) -> None:
        """:meth:`write_planned` as sending stops: logs, and does not raise, when the ledger cannot take the
        rows (the error that stopped the run is the one to see)."""
        try:
            self.write_planned()
        except Exception:
            log.exception(
                "%d planned rows that were not sent could not be written to the ledger; the next run reads "
                "them from the source again",
                len(self._rows),
            )
            self._rows = {}  # once: sending has stopped, nothing would write them later
        for serial in self._gone:
            log.warning(
                "流水号 %s was inserted by another upload meanwhile; this run did not send it", serial
            )
        self._gone.clear()

"""Rows new to the ledger that go in as their batch leaves (no Airflow).

A row sent for the first time is written once, IN_FLIGHT, in the transaction that opens its request's audit
row (:meth:`~cdyb_jxc.ledger.Ledger.add_in_flight`), not inserted PENDING while planning and updated as it
leaves. Until then its planned values wait in :class:`Unwritten`, but not while the upload itself waits:
once the sender has waited a moment for the centre, before it sleeps to resend, and when sending stops (an
error, a refused call, a lost lock), every row still waiting is written as planned, PENDING. What a process
killed outright can leave out of the ledger is what it planned since it last waited (at most a chunk and
the batches built ahead of a free slot); its next run reads those rows from the source again, as new.

A 流水号 another upload (of another transaction) inserts before this one writes it is reported at once,
whichever write finds it, and its batch goes without it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from cdyb_jxc.ledger import Ledger, LedgerEntry
from cdyb_jxc.upload.batches import Planned

log = logging.getLogger(__name__)

_Waiting = tuple[Planned, dict[str, Any]]  # a row and its planned ledger values


class Unwritten:
    """The planned values of rows new to the ledger, by 流水号, until their batch leaves.

    :param ledger: the ledger
    :param institution_code: 定点机构编码
    :param taken: told of each row another upload inserted first (it is not sent)
    """

    def __init__(
        self, ledger: Ledger, institution_code: str, taken: Callable[[Planned, LedgerEntry], None]
    ) -> None:
        self.ledger = ledger
        self.institution = institution_code
        self._taken = taken
        self._rows: dict[str, _Waiting] = {}
        self._gone: set[str] = set()  # taken and reported while their batch still waits (see write_planned)

    def __contains__(self, serial: object) -> bool:
        return serial in self._rows

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, plan: Planned, row: dict[str, Any]) -> None:
        """A row planned to send, with the values :meth:`~cdyb_jxc.ledger.Ledger.add_planned` takes."""
        self._rows[plan.serial] = (plan, row)

    def of(self, batch: Sequence[Planned]) -> list[dict[str, Any]]:
        """The planned values of the rows of ``batch`` still waiting here."""
        rows = self._rows
        return [rows[p.serial][1] for p in batch if p.serial in rows]

    def written(self, serials: Iterable[str]) -> None:
        """These rows are in the ledger now (committed)."""
        for serial in serials:
            self._rows.pop(serial, None)

    def has_gone(self, batch: Sequence[Planned]) -> bool:
        """Whether a row of ``batch`` was found taken (and reported) when it was written as planned."""
        gone = self._gone
        return bool(gone) and any(p.serial in gone for p in batch)

    def taken(self, batch: Sequence[Planned]) -> set[str]:
        """The 流水号 of ``batch`` another upload inserted first: found (and reported) when written as
        planned, else looked up and reported now. None of them is sent."""
        found = {p.serial for p in batch if p.serial in self._gone}
        if found:
            self._gone -= found
            return found
        entries = self.ledger.lookup(self.institution, [r["serial_no"] for r in self.of(batch)])
        self._report(entries, dict(self._rows))
        return set(entries)

    def write_planned(self) -> None:
        """Write every row still waiting as planned (PENDING), in one transaction."""
        if not self._rows:
            return
        rows = self._rows
        taken = self.ledger.add_planned([row for _, row in rows.values()])
        self._rows = {}  # only once they are in: a failed write leaves them for keep_as_planned
        self._gone.update(taken)
        self._report(taken, rows)

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

    def _report(self, entries: dict[str, LedgerEntry], rows: dict[str, _Waiting]) -> None:
        for serial, entry in entries.items():
            self._rows.pop(serial, None)
            self._taken(rows[serial][0], entry)

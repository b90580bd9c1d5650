"""What an upload's own writes left in the ledger's counted columns, so its next write of the same rows need
not read them back (no Airflow, no SQL).

The day counts (:mod:`cdyb_jxc.ledger.rollup`) move by each update's change, so an update needs the rows'
counted values as they are. An upload is the only writer of its rows while it holds the upload lock: what it
wrote is what they hold. :class:`KnownCounts` keeps those values (as written, after the text caps) for the
rows still to be written again in the run (PENDING, IN_FLIGHT, IN_DOUBT: at most a chunk and the batches
out); a row it does not know is read as before, so a miss costs a read, never a wrong count. Any write that
fails forgets everything: a rolled-back write leaves the rows as they were, not as remembered.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cdyb_jxc.ledger.states import UNRESOLVED_STATES

_UNSETTLED = frozenset(str(s) for s in UNRESOLVED_STATES)
_STATE = 2  # the state's place in rollup.COUNTED
# far above what a run keeps (a chunk plus the batches out); only a bound against a caller that never settles
MAX_KNOWN = 50_000


class KnownCounts:
    """The counted values (:data:`cdyb_jxc.ledger.rollup.COUNTED`) of unsettled rows, as this writer last
    wrote them, by (institution, 流水号)."""

    def __init__(self) -> None:
        self._values: dict[tuple[str, str], tuple[Any, ...]] = {}

    def __len__(self) -> int:
        return len(self._values)

    def take(self, institution_code: str, serials: Sequence[str]) -> dict[str, tuple[Any, ...]]:
        """The values known of ``serials`` (those the update is about to replace), by 流水号."""
        values = self._values
        found = {}
        for serial in serials:
            value = values.pop((institution_code, serial), None)
            if value is not None:
                found[serial] = value
        return found

    def remember(self, institution_code: str, written: Mapping[str, tuple[Any, ...]]) -> None:
        """The values just written, by 流水号; a settled row (accepted, refused) is not written again."""
        values = self._values
        for serial, value in written.items():
            if str(value[_STATE]) in _UNSETTLED:
                values[(institution_code, serial)] = value
            else:
                values.pop((institution_code, serial), None)
        while len(values) > MAX_KNOWN:
            del values[next(iter(values))]  # the oldest: a miss is read back, never miscounted

    def remember_rows(self, rows: Iterable[Mapping[str, Any]], counted: Sequence[str]) -> None:
        """Rows just inserted (each with its ``institution_code``)."""
        by_institution: dict[str, dict[str, tuple[Any, ...]]] = {}
        for row in rows:
            values = tuple(map(row.get, counted))
            by_institution.setdefault(row["institution_code"], {})[row["serial_no"]] = values
        for institution_code, written in by_institution.items():
            self.remember(institution_code, written)

    def forget(self) -> None:
        self._values.clear()

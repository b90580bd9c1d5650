"""Where a ledger row changes state: the named transitions of :data:`~cdyb_jxc.ledger.states.TRANSITIONS`
(SQLAlchemy Core, no Airflow). A part of :class:`~cdyb_jxc.ledger.Ledger`.

Planning a chunk writes each row's new state together with what the source says of it: the planner takes
the state's values from :func:`to_send`, :func:`held_back` or :func:`kept_in_doubt` and writes the chunk
with :meth:`RowTransitions.add_planned` and :meth:`RowTransitions.replan`. Sending moves a whole batch
(:meth:`~RowTransitions.mark_in_flight`, :meth:`~RowTransitions.mark_not_sent`,
:meth:`~RowTransitions.mark_in_doubt`), and a reply's answers are collected row by row in :class:`ReplyFates`
and written by :meth:`~RowTransitions.record_fates`. Every write is one statement per batch (or chunk) and
kind of change, whatever the number of rows; the sender groups a batch's writes with its audit row in one
:meth:`~cdyb_jxc.ledger.Ledger.transaction` before the request leaves and one after the answer.

Each transition declares its moves (:data:`MOVES`), checked against the table when this module loads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from cdyb_jxc.ledger.states import DOUBT_STATES, LedgerState, check_edges

if TYPE_CHECKING:
    from cdyb_jxc.ledger.store import LedgerEntry

_S = LedgerState
Move = tuple[LedgerState | None, LedgerState]
MOVES: dict[str, frozenset[Move]] = {}  # transition name → the (from, to) it performs
# a row's values in a state where the centre's reasons no longer apply
_CLEAR = {"category": None, "field": None, "detail": None}


def _moves(name: str, moves: Iterable[Move]) -> None:
    MOVES[name] = frozenset(moves)
    check_edges(name, MOVES[name])


# -- planning: the state part of a row's values --------------------------------------------------------------
def to_send(prior: LedgerState | None) -> dict[str, Any]:
    """A row to send: PENDING, or still in doubt when sent before (its duplicate answer then reconciles it).

    :param prior: the row's state in the ledger (``None``: new)
    """
    state = prior if prior in DOUBT_STATES else _S.PENDING
    return {"state": state, **_CLEAR, "held_back": 0}


_moves(
    "to_send",
    [(None, _S.PENDING), (_S.PENDING, _S.PENDING), (_S.REJECTED, _S.PENDING)]
    + [(s, s) for s in DOUBT_STATES],
)


def held_back(category: str | None, field: str | None, detail: str) -> dict[str, Any]:
    """A row that would certainly be refused: REJECTED without being sent (``held_back``)."""
    return {"state": _S.REJECTED, "category": category, "field": field, "detail": detail, "held_back": 1}


_moves("held_back", [(s, _S.REJECTED) for s in (None, _S.PENDING, _S.REJECTED)])


def kept_in_doubt(category: str | None, field: str | None, detail: str) -> dict[str, Any]:
    """A row sent before whose source can no longer be written: not sent, IN_DOUBT (the centre may hold
    the version sent before; REJECTED would turn its later duplicate answer into a false conflict)."""
    return {"state": _S.IN_DOUBT, "category": category, "field": field, "detail": detail, "held_back": 0}


_moves("kept_in_doubt", [(s, _S.IN_DOUBT) for s in DOUBT_STATES])


class ReplyFates:
    """What one reply says of the rows of its batch (all IN_FLIGHT), collected row by row; written by
    :meth:`RowTransitions.record_fates` in one statement for the saved rows and one for the refused.

    :param now: the time of the answer (``accepted_at``, ``updated_at``)
    """

    CONFLICT_FIELD = "serial_no"  # what a DUPLICATE_CONFLICT row names as its field

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.saved: list[dict[str, Any]] = []
        self.refused: list[dict[str, Any]] = []

    def accepted(self, serial: str, late_seconds: float | None, *, reconciled: bool = False) -> LedgerState:
        """Saved by the centre (ACCEPTED), or answered 重复上传 for the payload sent before in doubt
        (ACCEPTED_RECONCILED). Returns the state."""
        state = _S.ACCEPTED_RECONCILED if reconciled else _S.ACCEPTED
        self.saved.append(
            {
                "serial_no": serial,
                "state": state,
                **_CLEAR,
                "accepted_at": self.now,
                "late_seconds": late_seconds,
                "updated_at": self.now,
            }
        )
        return state

    def rejected(self, serial: str, category: str | None, field: str | None, detail: str) -> LedgerState:
        """Refused by the centre with its reason: REJECTED (returned)."""
        return self._refused(serial, _S.REJECTED, category, field, detail)

    def conflict(self, serial: str, category: str | None, detail: str) -> LedgerState:
        """Answered 重复上传 for a payload this client did not send: DUPLICATE_CONFLICT (returned)."""
        return self._refused(serial, _S.DUPLICATE_CONFLICT, category, self.CONFLICT_FIELD, detail)

    def _refused(
        self, serial: str, state: LedgerState, category: str | None, field: str | None, detail: str
    ) -> LedgerState:
        self.refused.append(
            {
                "serial_no": serial,
                "state": state,
                "category": category,
                "field": field,
                "detail": detail,
                "updated_at": self.now,
            }
        )
        return state


_moves(
    "record_fates",
    [
        (_S.IN_FLIGHT, _S.ACCEPTED),
        (_S.IN_FLIGHT, _S.ACCEPTED_RECONCILED),
        (_S.IN_FLIGHT, _S.REJECTED),
        (_S.IN_FLIGHT, _S.DUPLICATE_CONFLICT),
    ],
)


class _RowWriter(Protocol):
    """What the transitions need of the ledger (:class:`~cdyb_jxc.ledger.store.Ledger`)."""

    def insert_rows(self, rows: Sequence[dict[str, Any]]) -> dict[str, LedgerEntry]: ...

    def update_rows(
        self,
        institution_code: str,
        rows: Sequence[dict[str, Any]],
        *,
        count_attempt: bool = False,
        sent_is_payload: bool = False,
    ) -> None: ...

    def update_grouped(self, institution_code: str, rows: Sequence[dict[str, Any]]) -> None: ...

    def insert_joined(self, rows: Sequence[dict[str, Any]]) -> None: ...


class RowTransitions:
    """The named transitions of :class:`~cdyb_jxc.ledger.Ledger` (see the module)."""

    # -- planning --------------------------------------------------------------------------------------------
    def add_planned(self: _RowWriter, rows: Sequence[dict[str, Any]]) -> dict[str, LedgerEntry]:
        """Insert rows new to the ledger, each with the values of :func:`to_send` or :func:`held_back`.
        Returns what the ledger holds for 流水号 another upload inserted meanwhile (those rows are left
        out; see :meth:`~cdyb_jxc.ledger.Ledger.insert_rows`)."""
        return self.insert_rows(rows)

    def replan(self: _RowWriter, institution_code: str, rows: Sequence[dict[str, Any]]) -> None:
        """Update rows the ledger knows, each with the values of :func:`to_send`, :func:`held_back` or
        :func:`kept_in_doubt` (one statement for rows with the same columns)."""
        self.update_grouped(institution_code, rows)

    def mark_seen(self: _RowWriter, institution_code: str, serials: Sequence[str], run_token: str) -> None:
        """Rows whose ledger answer stands (no state change): stamped with the run that saw them, so that a
        repeat in a later chunk of the run counts as repeated in the source."""
        self.update_rows(institution_code, [{"serial_no": s, "run_token": run_token} for s in serials])

    # -- sending ---------------------------------------------------------------------------------------------
    def mark_in_flight(
        self: _RowWriter,
        institution_code: str,
        sent: Sequence[tuple[str, str | None]],
        batch_id: int,
        now: datetime,
    ) -> None:
        """IN_FLIGHT, committed before the request leaves; counts an attempt.

        :param sent: (流水号, hash of the payload the centre may hold: an earlier in-doubt send's, else this
            one's; ``None``: this one's, the row's ``payload_hash``)
        :param batch_id: the audit row of the request
        """
        values = _sent(batch_id, now)
        # a row sent for the first time: the ledger copies its own payload_hash (one value fewer to pass)
        own = [{"serial_no": serial, **values} for serial, sent_hash in sent if sent_hash is None]
        earlier = [{"serial_no": s, **values, "sent_hash": h} for s, h in sent if h is not None]
        if own:
            self.update_rows(institution_code, own, count_attempt=True, sent_is_payload=True)
        if earlier:
            self.update_rows(institution_code, earlier, count_attempt=True)

    def add_in_flight(self: _RowWriter, rows: Sequence[dict[str, Any]], batch_id: int, now: datetime) -> None:
        """Rows new to the ledger, planned with the values of :func:`to_send`, inserted IN_FLIGHT as their
        request is about to leave (in the transaction of its audit row): a first send is one write, not an
        insert and an update. Counts the attempt. Raises
        :class:`~cdyb_jxc.exceptions.SerialTakenError` when another upload inserted one of them meanwhile.

        :param rows: the planned values of each row (as :meth:`add_planned` takes them)
        :param batch_id: the audit row of the request
        """
        sent = _sent(batch_id, now)
        self.insert_joined([{**row, **sent, "sent_hash": row["payload_hash"], "attempts": 1} for row in rows])

    def mark_not_sent(
        self: _RowWriter, institution_code: str, rows: Sequence[tuple[str, bool]], detail: str, now: datetime
    ) -> None:
        """Nothing was stored (not sent, or the whole call refused): PENDING, or IN_DOUBT for a row an earlier
        send left in doubt.

        :param rows: (流水号, whether it was in doubt before this send)
        """
        values = [
            {
                "serial_no": serial,
                "state": _S.IN_DOUBT if was_in_doubt else _S.PENDING,
                "detail": detail,
                "updated_at": now,
            }
            for serial, was_in_doubt in rows
        ]
        self.update_rows(institution_code, values)

    def mark_in_doubt(
        self: _RowWriter,
        institution_code: str,
        serials: Sequence[str],
        detail: str,
        now: datetime,
        said: Mapping[str, str] | None = None,
    ) -> None:
        """The rows may or may not be stored (reply lost, or contradicting itself): IN_DOUBT with ``detail``
        plus what the reply said of a row (``said``: 流水号 → text)."""
        said = said or {}
        values = [
            {"serial_no": s, "state": _S.IN_DOUBT, "detail": detail + said.get(s, ""), "updated_at": now}
            for s in serials
        ]
        self.update_rows(institution_code, values)

    def record_fates(self: _RowWriter, institution_code: str, fates: ReplyFates) -> None:
        """Write what a reply said of its rows (see :class:`ReplyFates`)."""
        self.update_grouped(institution_code, fates.saved)
        self.update_grouped(institution_code, fates.refused)


def _sent(batch_id: int, now: datetime) -> dict[str, Any]:
    """The values of a row whose request ``batch_id`` leaves at ``now`` (IN_FLIGHT)."""
    return {"state": _S.IN_FLIGHT, "last_sent_at": now, "last_batch_id": batch_id, "updated_at": now}


# a row sent again: planned PENDING, or left in doubt (IN_FLIGHT: by a run that died)
_moves("mark_in_flight", [(s, _S.IN_FLIGHT) for s in (_S.PENDING, *DOUBT_STATES)])
_moves("add_in_flight", [(None, _S.IN_FLIGHT)])
_moves("mark_not_sent", [(_S.IN_FLIGHT, _S.PENDING), (_S.IN_FLIGHT, _S.IN_DOUBT)])
_moves("mark_in_doubt", [(_S.IN_FLIGHT, _S.IN_DOUBT)])

"""The states of a ledger row, their groupings and the transitions between them (no Airflow, no SQL).

The README's state diagram, as a table: :data:`TRANSITIONS` maps each state (``None``: a row not in the
ledger yet) to the states a row may move to from it; :mod:`cdyb_jxc.ledger.transitions` performs the moves.

The stored values are the members' names and never change (ledgers of earlier versions hold them).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping


class LedgerState(enum.StrEnum):
    """The state of one source row in the ledger (the ``state`` column)."""

    PENDING = "PENDING"  # recorded, not sent yet (or certainly not received)
    IN_FLIGHT = "IN_FLIGHT"  # committed just before its request leaves
    ACCEPTED = "ACCEPTED"  # the centre saved it
    REJECTED = "REJECTED"  # the centre refused it, or it was held back (category, field, detail)
    IN_DOUBT = "IN_DOUBT"  # sent, fate unknown (reply lost or contradicting itself)
    ACCEPTED_RECONCILED = "ACCEPTED_RECONCILED"  # in doubt, then answered 重复上传 for the payload sent
    DUPLICATE_CONFLICT = "DUPLICATE_CONFLICT"  # answered 重复上传 for a payload this client did not send


STATES: tuple[LedgerState, ...] = tuple(LedgerState)  # in the order reports print them
ACCEPTED_STATES = frozenset({LedgerState.ACCEPTED, LedgerState.ACCEPTED_RECONCILED})
# not settled yet: the next run sends them (the monitor's "in doubt" queue)
UNRESOLVED_STATES = frozenset({LedgerState.PENDING, LedgerState.IN_FLIGHT, LedgerState.IN_DOUBT})
# sent at least once without a trusted answer: the centre may hold them, so a duplicate answer reconciles
DOUBT_STATES = frozenset({LedgerState.IN_FLIGHT, LedgerState.IN_DOUBT})
# refused for good unless someone acts (reject report, monitor, the run's rejected count)
ATTENTION_STATES = frozenset({LedgerState.REJECTED, LedgerState.DUPLICATE_CONFLICT})
# rows that make their business day worth uploading again (a fixed source row goes out again)
REVISIT_STATES = UNRESOLVED_STATES | {LedgerState.REJECTED}

_S = LedgerState
TRANSITIONS: Mapping[LedgerState | None, frozenset[LedgerState]] = {
    # planned: to send (written as its request leaves, or left as planned when the run stops before), or
    # held back because it would certainly be refused
    None: frozenset({_S.PENDING, _S.REJECTED, _S.IN_FLIGHT}),
    # planned again (to send or held back), or sent
    _S.PENDING: frozenset({_S.PENDING, _S.REJECTED, _S.IN_FLIGHT}),
    # changed at the source, or refused for a reason that can clear (未对码…) a while ago: planned again
    _S.REJECTED: frozenset({_S.PENDING, _S.REJECTED}),
    # the reply: saved, refused, 重复上传 (reconciled only for the payload sent before in doubt);
    # not sent (PENDING, or IN_DOUBT when it was sent before); reply lost or contradicting itself (IN_DOUBT);
    # a row a dead run left in flight is planned as it is and sent again
    _S.IN_FLIGHT: frozenset(
        {
            _S.ACCEPTED,
            _S.REJECTED,
            _S.DUPLICATE_CONFLICT,
            _S.ACCEPTED_RECONCILED,
            _S.PENDING,
            _S.IN_DOUBT,
            _S.IN_FLIGHT,
        }
    ),
    # planned again as it is (also when its source can no longer be written), sent again
    _S.IN_DOUBT: frozenset({_S.IN_DOUBT, _S.IN_FLIGHT}),
    _S.ACCEPTED: frozenset(),
    _S.ACCEPTED_RECONCILED: frozenset(),
    _S.DUPLICATE_CONFLICT: frozenset(),
}
# no way out: the ledger's answer stands for every later run
FINAL_STATES = frozenset(s for s in LedgerState if not TRANSITIONS[s])


def of(value: str) -> LedgerState:
    """The state stored as ``value`` (a dictionary look-up: it runs once per row read from the ledger).

    :raises ValueError: ``value`` is no ledger state
    """
    return _BY_VALUE.get(value) or LedgerState(value)


_BY_VALUE: dict[str, LedgerState] = {s.value: s for s in LedgerState}


def check_edges(name: str, moves: Iterable[tuple[LedgerState | None, LedgerState]]) -> None:
    """Fail unless every ``(from, to)`` of ``moves`` is in :data:`TRANSITIONS`. Each named transition of
    :mod:`cdyb_jxc.ledger.transitions` declares its moves through this when it is defined, so the table and
    the code cannot drift apart at no cost per row (a row's state is known only as far as it was looked up).

    :param name: the transition, for the message
    :raises RuntimeError: a move the table does not allow (a programming error)
    """
    bad = [f"{source or '(new)'} → {target}" for source, target in moves if target not in TRANSITIONS[source]]
    if bad:
        raise RuntimeError(f"ledger transition {name} is not in the state table: {', '.join(bad)}")

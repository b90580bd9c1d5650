"""The ledger's state machine: stored values, groupings, and a transition table that matches what the engine
does (every state change the engine makes is in the table, and every move in the table happens)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

import cdyb_jxc.ledger as ledger_pkg
from cdyb_jxc.exceptions import InDoubtError, TransportError
from cdyb_jxc.ledger import Ledger
from cdyb_jxc.ledger.states import (
    ACCEPTED_STATES,
    ATTENTION_STATES,
    DOUBT_STATES,
    FINAL_STATES,
    REVISIT_STATES,
    STATES,
    TRANSITIONS,
    UNRESOLVED_STATES,
    LedgerState,
    check_edges,
    of,
)
from cdyb_jxc.ledger.transitions import MOVES
from tests.conftest import make_uploader, outbound_row
from tests.unit.upload.fake_centre import FakeCentre, WorkerKilled

S = LedgerState
TABLE_MOVES = {(source, target) for source, targets in TRANSITIONS.items() for target in targets}


def test_stored_values_are_those_of_earlier_versions_in_the_same_order():
    assert [s.value for s in STATES] == [
        "PENDING",
        "IN_FLIGHT",
        "ACCEPTED",
        "REJECTED",
        "IN_DOUBT",
        "ACCEPTED_RECONCILED",
        "DUPLICATE_CONFLICT",
    ]
    assert all(s == s.name and str(s) == s.name and f"{s}" == s.name for s in LedgerState)


def test_old_constants_stay_importable_and_are_the_enum_members():
    assert ledger_pkg.ACCEPTED is S.ACCEPTED
    assert ledger_pkg.DUPLICATE_CONFLICT is S.DUPLICATE_CONFLICT
    assert ledger_pkg.STATES == STATES
    assert {"ACCEPTED", "ACCEPTED_RECONCILED"} == ledger_pkg.ACCEPTED_STATES
    assert {"PENDING", "IN_FLIGHT", "IN_DOUBT"} == ledger_pkg.UNRESOLVED_STATES


def test_groupings():
    assert {"IN_FLIGHT", "IN_DOUBT"} == DOUBT_STATES
    assert {"REJECTED", "DUPLICATE_CONFLICT"} == ATTENTION_STATES
    assert {"PENDING", "IN_FLIGHT", "IN_DOUBT", "REJECTED"} == REVISIT_STATES
    assert ACCEPTED_STATES | {S.DUPLICATE_CONFLICT} == FINAL_STATES
    assert DOUBT_STATES <= UNRESOLVED_STATES
    assert not ATTENTION_STATES & UNRESOLVED_STATES


def test_a_state_read_from_the_ledger_is_the_enum_member():
    assert of("IN_DOUBT") is S.IN_DOUBT
    with pytest.raises(ValueError, match="'DONE' is not a valid LedgerState"):
        of("DONE")


def test_the_table_names_every_state_and_only_final_states_have_no_way_out():
    assert set(TRANSITIONS) == {None, *LedgerState}
    assert {s for s in LedgerState if not TRANSITIONS[s]} == FINAL_STATES
    assert not any(S.PENDING in TRANSITIONS[s] for s in FINAL_STATES)


def test_the_named_transitions_perform_exactly_the_moves_of_the_table():
    declared = set().union(*MOVES.values())
    assert declared == TABLE_MOVES
    assert set(MOVES) == {
        "to_send",
        "held_back",
        "kept_in_doubt",
        "add_in_flight",
        "mark_in_flight",
        "mark_not_sent",
        "mark_in_doubt",
        "record_fates",
    }


def test_a_move_the_table_lacks_is_refused():
    with pytest.raises(
        RuntimeError, match=r"ledger transition oops is not in the state table: ACCEPTED → PENDING"
    ):
        check_edges("oops", [(S.ACCEPTED, S.PENDING), (S.PENDING, S.IN_FLIGHT)])
    with pytest.raises(RuntimeError, match=r"\(new\) → ACCEPTED"):
        check_edges("oops", [(None, S.ACCEPTED)])


class WatchedLedger(Ledger):
    """A ledger that records every state it writes, as (state before, state after) per row."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.moves: set[tuple[LedgerState | None, LedgerState]] = set()

    def insert_rows(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        taken = super().insert_rows(rows)
        self.moves |= {(None, of(r["state"])) for r in rows if r["serial_no"] not in taken}
        return taken

    def insert_joined(self, rows: Sequence[dict[str, Any]]) -> None:
        super().insert_joined(rows)
        self.moves |= {(None, of(r["state"])) for r in rows}

    def update_rows(self, institution_code: str, rows: Sequence[dict[str, Any]], **kw: Any) -> None:
        serials = [r["serial_no"] for r in rows if "state" in r]
        before = self.states(institution_code, serials)
        super().update_rows(institution_code, rows, **kw)
        after = self.states(institution_code, serials)
        self.moves |= {(before[s], after[s]) for s in serials}


def test_every_state_change_the_engine_makes_is_in_the_table_and_every_move_of_the_table_happens(
    profile, tmp_path
):
    ledger = WatchedLedger(f"sqlite:///{tmp_path}/ledger.db")
    centre = FakeCentre(profile)

    def run(*rows, faults=(), raises=None, **kw):
        centre.faults = list(faults)
        uploader = make_uploader(profile, centre, ledger, **kw)
        if raises is None:
            return uploader.run([list(rows)])
        with pytest.raises(raises):
            uploader.run([list(rows)])
        return None

    bad_number = {"quantity": "abc"}  # held back (R1)
    unwritable = {"hospital_item_name": "坏\x01名"}  # held back, and cannot go as XML at all
    run(outbound_row("A"))  # accepted
    centre.refuse["R"] = "【字段校验失败】出库数量(akc226)超出库存"
    run(outbound_row("R"))  # refused by the centre
    centre.stored["C"] = {}
    run(outbound_row("C"))  # a duplicate this client never sent: conflict
    for _ in range(2):
        run(outbound_row("H", **bad_number))  # held back, then held back again
    run(outbound_row("H"))  # fixed at the source: planned again and accepted
    run(outbound_row("T"), outbound_row("T2"), faults=["transport"], raises=TransportError)  # not sent
    run(outbound_row("T", **bad_number))  # the pending row now fails: held back
    run(outbound_row("T2"))  # the pending row planned again and sent
    one_by_one = {"batch_limit": 1, "max_in_flight": 1}
    run(outbound_row("W1"), outbound_row("W2"), faults=["transport"], raises=TransportError, **one_by_one)
    # W2 waited for the slot W1 held when the run stopped: written as planned
    run(outbound_row("D"), outbound_row("DT"), outbound_row("DU"), faults=["lose_reply"], raises=InDoubtError)
    run(outbound_row("D"))  # planned again as it is, sent, reconciled
    run(outbound_row("DT"), faults=["transport"], raises=TransportError)  # not sent, still in doubt
    run(outbound_row("DU", **unwritable))  # in doubt, its source can no longer be written
    run(outbound_row("K"), outbound_row("KU"), faults=["kill"], raises=WorkerKilled)  # left in flight
    run(outbound_row("K"))  # planned and sent again as it is, reconciled
    run(outbound_row("KU", **unwritable))  # left in flight, its source can no longer be written

    assert ledger.moves <= TABLE_MOVES, ledger.moves - TABLE_MOVES
    assert ledger.moves == TABLE_MOVES, TABLE_MOVES - ledger.moves
    assert ledger.states("H51010400001", ["D", "DT", "DU", "K", "KU", "H", "T", "W1", "W2"]) == {
        "D": S.ACCEPTED_RECONCILED,
        "DT": S.IN_DOUBT,
        "DU": S.IN_DOUBT,
        "K": S.ACCEPTED_RECONCILED,
        "KU": S.IN_DOUBT,
        "H": S.ACCEPTED,
        "T": S.REJECTED,
        "W1": S.PENDING,
        "W2": S.PENDING,
    }

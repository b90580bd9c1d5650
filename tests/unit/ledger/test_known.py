"""An upload that is its rows' only writer does not read back what it wrote before each update, and its day
counts stay those of its rows: after a rollback, after a cap, with rows it did not write."""

from __future__ import annotations

from datetime import datetime

import pytest

from cdyb_jxc.ledger import Ledger, LedgerState
from cdyb_jxc.ledger import known as known_module
from cdyb_jxc.ledger.known import KnownCounts
from cdyb_jxc.ledger.transitions import ReplyFates
from tests.conftest import INSTITUTION, exact_day_counts, row_table_reads
from tests.unit.ledger.test_store import row

NOW = datetime(2026, 11, 30, 12)


@pytest.fixture
def row_reads(ledger) -> list[str]:
    """The statements that read rows of the row table (the day counts' before-values among them)."""
    return row_table_reads(ledger.engine)


def _exact(ledger: Ledger) -> dict:
    return exact_day_counts(ledger.engine)


def _send_and_accept(ledger: Ledger, serials: list[str], batch_id: int) -> None:
    with ledger.transaction():
        ledger.mark_in_flight(INSTITUTION, [(s, f"hash-{s}") for s in serials], batch_id, NOW)
    fates = ReplyFates(NOW)
    for serial in serials:
        fates.accepted(serial, -3600.0)
    with ledger.transaction():
        ledger.record_fates(INSTITUTION, fates)


def test_a_sole_writer_updates_what_it_inserted_without_reading_it_back(ledger, row_reads):
    with ledger.sole_writer():
        ledger.add_planned([row(f"S{i}") for i in range(5)])
        _send_and_accept(ledger, [f"S{i}" for i in range(5)], 1)
    assert row_reads == []
    assert _exact(ledger) == {(INSTITUTION, "2026-11-20", "JXC003", "ACCEPTED", ""): (5, 0, 0)}


def test_outside_a_sole_writer_every_update_reads_the_rows_first(ledger, row_reads):
    ledger.add_planned([row(f"S{i}") for i in range(3)])
    _send_and_accept(ledger, ["S0", "S1", "S2"], 1)
    assert len(row_reads) == 2  # in flight, then the answer
    _exact(ledger)


def test_rows_written_by_an_earlier_run_are_read_and_counted_exactly(ledger, row_reads):
    ledger.add_planned([row("OLD", state=LedgerState.REJECTED, category="未对码")])
    with ledger.sole_writer():
        ledger.add_planned([row("NEW")])
        ledger.replan(INSTITUTION, [{"serial_no": "OLD", "state": LedgerState.PENDING, "category": None}])
        _send_and_accept(ledger, ["OLD", "NEW"], 1)
    assert len(row_reads) == 1  # OLD's replan: what the run wrote after that is known
    assert _exact(ledger) == {(INSTITUTION, "2026-11-20", "JXC003", "ACCEPTED", ""): (2, 0, 0)}


def _fail_after_marking(ledger: Ledger, serials: list[str]) -> None:
    with ledger.transaction():
        ledger.mark_in_flight(INSTITUTION, [(s, "h") for s in serials], 1, NOW)
        raise RuntimeError("the launch failed after the rows were written")


def test_a_rolled_back_write_is_forgotten_so_the_next_update_reads_the_truth(ledger, row_reads):
    with ledger.sole_writer():
        ledger.add_planned([row("S1"), row("S2")])
        with pytest.raises(RuntimeError):
            _fail_after_marking(ledger, ["S1", "S2"])
        assert row_reads == []
        _send_and_accept(ledger, ["S1", "S2"], 2)  # the rows are PENDING again, as the database says
    assert len(row_reads) == 1
    assert _exact(ledger) == {(INSTITUTION, "2026-11-20", "JXC003", "ACCEPTED", ""): (2, 0, 0)}


def test_settled_rows_are_not_kept_and_the_cap_bounds_the_rest(monkeypatch):
    known = KnownCounts()
    known.remember(INSTITUTION, {"A": ("d", "JXC003", "ACCEPTED", None, 1.0)})
    known.remember(INSTITUTION, {"R": ("d", "JXC003", "REJECTED", "x", None)})
    assert len(known) == 0
    monkeypatch.setattr(known_module, "MAX_KNOWN", 3)
    known.remember(INSTITUTION, {f"P{i}": ("d", "JXC003", "PENDING", None, None) for i in range(5)})
    assert len(known) == 3
    assert known.take(INSTITUTION, ["P0", "P1", "P4"]) == {"P4": ("d", "JXC003", "PENDING", None, None)}


def test_the_knowledge_ends_with_the_block(ledger, row_reads):
    with ledger.sole_writer():
        ledger.add_planned([row("S1")])
    _send_and_accept(ledger, ["S1"], 1)
    assert len(row_reads) == 2
    _exact(ledger)

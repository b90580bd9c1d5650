"""Rows new to the ledger go in IN_FLIGHT as their batch leaves: what the ledger holds while the request is
out, what it holds when the run stops with batches still waiting, a 流水号 another upload takes in
between, and a repeat in a later chunk while the first row still waits."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from cdyb_jxc.exceptions import TransportError
from cdyb_jxc.ledger import Ledger, LedgerState
from cdyb_jxc.upload.engine import Uploader
from cdyb_jxc.wire.client import Exchange
from tests.conftest import INSTITUTION, RacingLedger, inbound_row, make_uploader, outbound_row
from tests.unit.upload.fake_centre import FakeCentre

S = LedgerState
ONE_BY_ONE = {"batch_limit": 1, "max_in_flight": 1}


class HookedCentre(FakeCentre):
    """Runs ``before`` (with the 流水号 of the call) before answering each call."""

    def __init__(self, profile: Any, before: Any) -> None:
        super().__init__(profile)
        self.before = before

    def send(self, txn_key: str, rows: Sequence[Mapping[str, str | None]]) -> Exchange:
        self.before([str(r["serial_no"]) for r in rows])
        return super().send(txn_key, rows)


def test_a_new_row_is_in_the_ledger_in_flight_while_its_request_is_out(profile, ledger):
    seen: list[dict[str, Any]] = []

    def before(serials: list[str]) -> None:
        seen.extend(r for r in ledger.iter_rows() if r["serial_no"] in serials)

    centre = HookedCentre(profile, before)
    result = make_uploader(profile, centre, ledger).run([[outbound_row("N1"), outbound_row("N2")]])

    assert result.states == {S.ACCEPTED: 2}
    assert [(r["serial_no"], r["state"], r["attempts"]) for r in seen] == [
        ("N1", S.IN_FLIGHT, 1),
        ("N2", S.IN_FLIGHT, 1),
    ]
    assert all(r["sent_hash"] == r["payload_hash"] and r["last_batch_id"] for r in seen)
    (batch,) = ledger.batches()
    assert seen[0]["last_batch_id"] == batch["id"]


def test_rows_still_waiting_when_the_run_stops_are_written_as_planned(profile, ledger):
    centre = FakeCentre(profile)
    centre.faults = ["transport"]
    rows = [outbound_row(f"W{i}") for i in range(4)]
    with pytest.raises(TransportError):
        make_uploader(profile, centre, ledger, **ONE_BY_ONE).run([rows[:2], rows[2:]])

    got = {r["serial_no"]: (r["state"], r["attempts"], r["payload_hash"]) for r in ledger.iter_rows()}
    assert centre.requests == [["W0"]]
    assert got == {  # W0 was sent (not stored); W1 waited for its slot: nothing is lost
        "W0": (S.PENDING, 1, got["W0"][2]),
        "W1": (S.PENDING, 0, got["W1"][2]),
    }
    assert ledger.count_by_state() == {S.PENDING: 2}


def test_rows_written_as_planned_go_out_on_the_next_run(profile, ledger):
    centre = FakeCentre(profile)
    centre.faults = ["transport"]
    rows = [outbound_row(f"W{i}") for i in range(3)]
    with pytest.raises(TransportError):
        make_uploader(profile, centre, ledger, **ONE_BY_ONE).run([rows])

    result = make_uploader(profile, centre, ledger).run([rows])

    assert result.states == {S.ACCEPTED: 3}
    assert sorted(centre.stored) == ["W0", "W1", "W2"]


@pytest.mark.parametrize(
    "claimed",
    [
        pytest.param("R1", id="as-its-batch-leaves"),  # the insert IN_FLIGHT finds it
        pytest.param("R2", id="as-the-upload-writes-it-before-waiting"),  # the PENDING insert finds it
    ],
)
def test_a_serial_another_upload_inserts_before_it_is_written_is_a_source_issue(profile, tmp_path, claimed):
    url = f"sqlite:///{tmp_path}/racing.db"
    ledger, other = RacingLedger(url), Ledger(url)
    ledger.competitor = lambda: make_uploader(profile, FakeCentre(profile), other, "inbound").run(
        [[inbound_row(claimed)]]
    )
    # each call takes a while, so the upload waits for the first with R2 and R3 still to go
    centre = HookedCentre(profile, lambda serials: time.sleep(0.2))
    rows = [outbound_row("R1"), outbound_row("R2"), outbound_row("R3")]
    result = make_uploader(profile, centre, ledger, **ONE_BY_ONE).run([rows])

    assert centre.requests == [[s] for s in ("R1", "R2", "R3") if s != claimed]
    assert result.states == {S.ACCEPTED: 2}
    assert result.source_issues == 1
    owners = {r["serial_no"]: (r["transaction_code"], r["state"]) for r in ledger.iter_rows()}
    assert owners == {s: ("JXC002" if s == claimed else "JXC003", S.ACCEPTED) for s in ("R1", "R2", "R3")}
    (issue,) = ledger.iter_source_issues()
    assert (issue["row_key"], issue["transaction_code"]) == (claimed, "JXC003")
    assert issue["detail"].startswith("流水号已用于JXC002的记录")
    ledger.dispose()
    other.dispose()


class GatedLookups(Ledger):
    """Opens ``gate`` once it has answered ``after`` lookups."""

    def __init__(self, url: Any, gate: threading.Event, after: int) -> None:
        super().__init__(url)
        self.gate, self.after = gate, after

    def lookup(self, institution_code: str, serials: Sequence[str]) -> Any:
        found = super().lookup(institution_code, serials)
        self.after -= 1
        if self.after == 0:
            self.gate.set()
        return found


def test_a_repeat_in_a_later_chunk_while_the_first_row_still_waits_is_sent_once(profile, tmp_path):
    gate = threading.Event()
    ledger = GatedLookups(f"sqlite:///{tmp_path}/gated.db", gate, after=2)
    # the first call is held until the second chunk is looked up: R2's batch still waits for its slot
    centre = HookedCentre(profile, lambda serials: gate.wait(10) or pytest.fail("gate never opened"))
    first, repeat = [outbound_row("R1"), outbound_row("R2")], [outbound_row("R2", quantity="5")]
    result = make_uploader(profile, centre, ledger, **ONE_BY_ONE).run([first, repeat])

    assert centre.requests == [["R1"], ["R2"]]
    assert result.states == {S.ACCEPTED: 2}
    assert result.duplicate_in_source == 1
    (issue,) = ledger.iter_source_issues()
    assert (issue["serial_no"], issue["source_row"]) == ("R2", 3)
    (r2,) = (r for r in ledger.iter_rows() if r["serial_no"] == "R2")
    assert (r2["attempts"], centre.stored["R2"]["quantity"]) == (1, "2")  # the first row, sent once
    ledger.dispose()


def test_every_planned_row_is_written_once_whatever_the_batches(profile, ledger):
    rows = [outbound_row(f"B{i:03d}") for i in range(250)]
    result = make_uploader(profile, FakeCentre(profile), ledger, batch_limit=7, max_in_flight=3).run(
        [rows[:120], rows[120:]]
    )
    assert result.states == {S.ACCEPTED: 250}
    assert ledger.count_by_state(institution_code=INSTITUTION) == {S.ACCEPTED: 250}
    assert {r["attempts"] for r in ledger.iter_rows()} == {1}


class FailingPlannedWrites(Ledger):
    """A ledger whose PENDING inserts fail (a full disk, say); everything else works."""

    def add_planned(self, rows: Sequence[dict[str, Any]]) -> Any:
        if rows:
            raise OSError("disk full")
        return super().add_planned(rows)


@pytest.mark.timeout(60)
def test_a_failed_write_while_waiting_stops_the_run_and_the_batch_out_is_still_recorded(profile, tmp_path):
    ledger = FailingPlannedWrites(f"sqlite:///{tmp_path}/failing.db")
    centre = HookedCentre(profile, lambda serials: time.sleep(0.2))  # the upload waits for R1 with R2 to go
    rows = [outbound_row("R1"), outbound_row("R2")]
    with pytest.raises(OSError, match="disk full"):
        make_uploader(profile, centre, ledger, **ONE_BY_ONE).run([rows])

    assert centre.requests == [["R1"]]
    assert {r["serial_no"]: r["state"] for r in ledger.iter_rows()} == {"R1": S.ACCEPTED}
    ledger.dispose()


def test_a_serial_found_taken_while_waiting_is_reported_though_the_run_stops_first(profile, tmp_path):
    url = f"sqlite:///{tmp_path}/racing.db"
    ledger, other = RacingLedger(url), Ledger(url)
    ledger.competitor = lambda: make_uploader(profile, FakeCentre(profile), other, "inbound").run(
        [[inbound_row("R2")]]
    )
    centre = HookedCentre(profile, lambda serials: time.sleep(0.2))
    centre.faults = ["transport"]  # R1 never arrives: the run stops before R2's batch leaves
    rows = [outbound_row("R1"), outbound_row("R2"), outbound_row("R3")]
    with pytest.raises(TransportError):
        make_uploader(profile, centre, ledger, **ONE_BY_ONE).run([rows])

    assert centre.requests == [["R1"]]
    owners = {r["serial_no"]: (r["transaction_code"], r["state"]) for r in ledger.iter_rows()}
    assert owners == {"R1": ("JXC003", S.PENDING), "R2": ("JXC002", S.ACCEPTED), "R3": ("JXC003", S.PENDING)}
    (issue,) = ledger.iter_source_issues()
    assert (issue["row_key"], issue["transaction_code"]) == ("R2", "JXC003")
    ledger.dispose()
    other.dispose()


def test_rows_still_to_go_are_in_the_ledger_while_the_upload_sleeps_before_a_resend(profile, ledger):
    seen: list[dict[str, str]] = []

    def sleep(seconds: float) -> None:
        seen.append({r["serial_no"]: r["state"] for r in ledger.iter_rows()})

    centre = FakeCentre(profile)
    centre.faults = ["transport"]
    uploader = Uploader(
        profile=profile, txn_key="outbound", institution_code=INSTITUTION, sender=centre, ledger=ledger,
        sleep=sleep, resend_attempts=1, **ONE_BY_ONE,
    )  # fmt: skip
    result = uploader.run([[outbound_row("S1"), outbound_row("S2"), outbound_row("S3")]])

    assert seen == [{"S1": S.PENDING, "S2": S.PENDING, "S3": S.PENDING}]  # S1 not stored, the others to go
    assert result.states == {S.ACCEPTED: 3}

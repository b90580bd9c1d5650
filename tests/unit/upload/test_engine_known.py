"""An upload that holds its lock does not read its rows back before each batch's updates, one without a real
lock does, and either way the day counts are those of the rows."""

from __future__ import annotations

import threading

import pytest

from cdyb_jxc.exceptions import TransportError
from cdyb_jxc.ledger import Ledger, LedgerState
from cdyb_jxc.ledger.lock import UploadLock
from cdyb_jxc.upload.sender import BatchSender
from tests.conftest import exact_day_counts, make_uploader, outbound_row, row_table_reads
from tests.unit.upload.fake_centre import FakeCentre


@pytest.fixture
def count_reads(ledger) -> list[str]:
    """The reads of rows' counted values before an update (the lookup reads other columns)."""
    return row_table_reads(ledger.engine, "cdyb_jxc_upload_row.late_seconds")


def _counts_exact(ledger: Ledger) -> dict:
    return exact_day_counts(ledger.engine)


def test_an_upload_holding_its_lock_reads_nothing_back(profile, ledger, count_reads):
    result = make_uploader(profile, FakeCentre(profile), ledger, batch_limit=3).run(
        [[outbound_row(f"A{i}") for i in range(10)]]
    )
    assert result.states == {LedgerState.ACCEPTED: 10}
    assert count_reads == []
    assert sum(v[0] for v in _counts_exact(ledger).values()) == 10


def test_an_upload_without_a_real_lock_reads_the_rows_before_each_update(
    profile, ledger, count_reads, monkeypatch
):
    monkeypatch.setattr(UploadLock, "exclusive", property(lambda self: False))
    make_uploader(profile, FakeCentre(profile), ledger, batch_limit=5).run(
        [[outbound_row(f"A{i}") for i in range(10)]]
    )
    # two batches of new rows, inserted IN_FLIGHT as they leave: each answer reads its rows first
    assert len(count_reads) == 2
    assert sum(v[0] for v in _counts_exact(ledger).values()) == 10


def test_a_lost_lock_makes_the_rest_of_the_run_read_the_rows_again(profile, ledger, count_reads, monkeypatch):
    checks = {"n": 0}

    def check(self) -> None:
        checks["n"] += 1
        if checks["n"] == 2:
            raise TransportError("lost the upload lock")

    monkeypatch.setattr(UploadLock, "check", check)
    second_built = threading.Event()
    build = BatchSender._flight

    def flight(self, batch, attempt=0):
        built = build(self, batch, attempt)
        if batch[0].serial == "A2":
            second_built.set()
        return built

    class AnswersOnceTheNextWaits(FakeCentre):
        def send(self, txn_key, rows):
            second_built.wait(10)  # the first answer comes back while the second batch waits to go
            return super().send(txn_key, rows)

    monkeypatch.setattr(BatchSender, "_flight", flight)
    centre = AnswersOnceTheNextWaits(profile)
    uploader = make_uploader(profile, centre, ledger, batch_limit=2, max_in_flight=1)
    with pytest.raises(TransportError):
        uploader.run([[outbound_row(f"A{i}") for i in range(4)]])
    assert len(count_reads) == 1  # the answer recorded after the lock was lost read its rows first
    states = {r["serial_no"]: r["state"] for r in ledger.iter_rows()}
    assert states == {"A0": "ACCEPTED", "A1": "ACCEPTED", "A2": "PENDING", "A3": "PENDING"}
    _counts_exact(ledger)

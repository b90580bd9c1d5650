"""Soak: 20,000 outbound rows through the real operator inside dag.test(), under every simulator fault.

A seeded schedule of every fault of :mod:`cdyb_jxc.simulator.faults` hits the served simulator while
``CdybJxcOutboundOperator`` uploads a CSV in batches of 100 (≥ 200 requests), one request at a time and
four at once (``max_in_flight``). In-try resends and Airflow
task retries (``retry_delay`` 0) absorb the faults; afterwards the centre and the ledger must agree row for
row: nothing lost, nothing stored twice, nothing left unresolved.
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta

import pytest

from cdyb_jxc.ledger import (
    ACCEPTED,
    ACCEPTED_RECONCILED,
    DUPLICATE_CONFLICT,
    IN_DOUBT,
    IN_FLIGHT,
    PENDING,
    REJECTED,
    Ledger,
)
from cdyb_jxc.simulator.faults import FAULTS
from tests.conftest import INSTITUTION, outbound_row, write_csv
from tests.dag_factory import upload_task

ROWS = 20_000
BATCH = 100
SEED = 20261125
# Every fault, each likely enough to fire several times in ~250 calls, rare enough that three faults in a
# row (which exhausts the in-try resends and fails the try) happens only a handful of times per run.
FAULT_SPEC = ",".join(
    [
        "latency=0-0.005",
        "drop_before_store=0.03",
        "drop_after_store=0.03",
        "soap_fault=0.03",
        "html_500=0.03",
        "empty_200=0.03",
        "malformed_inner=0.03",
        "missing_output=0.03",
        "no_dataset=0.03",
        "gbk_envelope=0.05",
    ]
)
MAX_TRIES = 60


def _source_rows() -> tuple[list[dict[str, str]], set[str], set[str]]:
    """20,000 rows with unique 流水号; every 1,000th is bad (held back locally, or rejected by the centre)."""
    rows, held_back, server_rejected = [], set(), set()
    for n in range(ROWS):
        serial = f"CK20261120-{n:06d}"
        if n % 1000 == 500:
            # R1, caught by the local pre-check: REJECTED without being sent
            rows.append(outbound_row(serial, n % 20 + 1, quantity="0"))
            held_back.add(serial)
        elif n % 1000 == 700:
            # R3 未对码: sent (no local mapping copy), rejected by the centre
            rows.append(outbound_row(serial, n % 20 + 1, mapping_serial_no="M9999"))
            server_rejected.add(serial)
        else:
            rows.append(outbound_row(serial, n % 20 + 1, quantity=str(n % 7 + 1)))
    return rows, held_back, server_rejected


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("k", [pytest.param(1, id="K1"), pytest.param(4, id="K4")])
def test_soak_every_fault_through_the_operator_with_retries(
    run_dag, centre_conn, simulator, store, tmp_path, pytestconfig, k
):
    rows, held_back, server_rejected = _source_rows()
    src = write_csv(tmp_path / "outbound.csv", rows)
    ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    simulator.set_faults(FAULT_SPEC, SEED)

    started = time.perf_counter()
    # dag.test() runs the task's Airflow retries itself (retry_delay 0): one call absorbs every failed try.
    dr = run_dag(
        upload_task(
            "outbound",
            task_id="outbound",
            source_file=src,
            ledger_url=ledger_url,
            chunk_size=2000,
            resend_attempts=1,
            resend_backoff=0.0,
            retries=MAX_TRIES - 1,
            retry_delay=timedelta(seconds=0),
            max_in_flight=k,
        )
    )
    seconds = time.perf_counter() - started
    (ti,) = dr.get_task_instances()
    assert dr.state == "success", f"task {ti.state} after {ti.try_number} tries"
    assert ti.state == "success"
    assert ti.try_number > 1, "the schedule should have made at least one try fail and be retried"

    stats = simulator.faults.stats()
    fired: dict[str, int] = stats["fired"]  # type: ignore[assignment]
    assert set(fired) == set(FAULTS)
    assert all(fired[name] >= 1 for name in FAULTS), fired
    assert simulator.requests >= ROWS // BATCH

    # the centre stored each 流水号 exactly once
    stored = [r["serial_no"] for r in store.accepted_rows()]
    duplicates = [s for s, n in Counter(stored).items() if n > 1]
    assert not duplicates, duplicates[:10]
    assert store.count_rows() == len(stored)

    led = Ledger(ledger_url)
    try:
        states = led.count_by_state()
        ledger_rows = {r["serial_no"]: r for r in led.iter_rows(columns=["serial_no", "state", "category"])}
        accepted = led.accepted_serials(INSTITUTION)
        batches = len(led.batches())
    finally:
        led.dispose()

    summary = (
        f"soak K={k}: requests={simulator.requests} rows={ROWS} tries={ti.try_number} batches={batches} "
        f"seconds={seconds:.1f} faults fired={fired} states={dict(sorted(states.items()))}"
    )
    print(summary)
    # Straight to the terminal as well, so CI logs show it without -s. This is what capsys.disabled() does,
    # but requesting the capsys fixture would swap sys.stdout for a per-test stream while dag.test() runs;
    # Airflow's log handlers keep that stream, and once it is closed every later log record in the session
    # (the simulator's threads in the next tests) fails with "Logging error: I/O operation on closed file".
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print(f"\n{summary}", flush=True)

    # every source row is in the ledger, none unresolved
    source_serials = {r["serial_no"] for r in rows}
    assert set(ledger_rows) == source_serials
    assert sum(states.values()) == ROWS
    assert not {PENDING, IN_FLIGHT, IN_DOUBT, DUPLICATE_CONFLICT} & set(states), states
    # the ledger's accepted set is exactly the centre's stored set
    assert accepted == set(stored)
    assert accepted == source_serials - held_back - server_rejected
    rejected = {s for s, r in ledger_rows.items() if r["state"] == REJECTED}
    assert rejected == held_back | server_rejected
    assert {ledger_rows[s]["category"] for s in server_rejected} == {"未对码"}
    assert {ledger_rows[s]["category"] for s in held_back} == {"字段校验失败"}
    # lost replies after storing were reconciled, and the rest accepted plainly
    assert states[ACCEPTED_RECONCILED] > 0
    assert states[ACCEPTED] + states[ACCEPTED_RECONCILED] == len(accepted)

"""The ledger's reads and writes on a SQLite file in a temp dir: rows, audit batches, milestones and the
environment a ledger is bound to."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError

from cdyb_jxc.exceptions import ConnectionConfigError
from cdyb_jxc.ledger import Ledger, LedgerState
from cdyb_jxc.ledger.batch_store import compress, decompress
from cdyb_jxc.ledger.schema import upload_batch, upload_row
from cdyb_jxc.safety.textcap import MARKER, REPLY_MAX, TEXT_MAX
from tests.conftest import INSTITUTION, OTHER_INSTITUTION, assert_day_counts_match_rows

S = LedgerState
NOW = datetime(2026, 11, 21, 12, 0, 0)


@pytest.fixture
def ledger(tmp_path) -> Iterator[Ledger]:
    led = Ledger(f"sqlite:///{tmp_path}/ledger.db")
    yield led
    assert_day_counts_match_rows(led.engine)
    led.dispose()


def row(serial: str, **over: Any) -> dict[str, Any]:
    """A ledger row as the upload engine inserts it (PENDING, never sent); every row has the same keys, as
    the engine's do (one insert statement takes the columns of its first row)."""
    values: dict[str, Any] = {
        "institution_code": INSTITUTION,
        "serial_no": serial,
        "transaction_code": "JXC003",
        "business_date": "2026-11-20",
        "payload_hash": f"hash-{serial}",
        "state": S.PENDING,
        "category": None,
        "field": None,
        "detail": None,
        "attempts": 0,
        "held_back": 0,
        "first_seen_at": NOW,
        "updated_at": NOW,
        "run_token": "run-1",
    }
    values.update(over)
    return values


def stored(ledger: Ledger, serial: str) -> dict[str, Any]:
    (found,) = ledger.iter_rows(upload_row.c.serial_no == serial)
    return found


def test_inserted_rows_are_found_by_lookup_with_what_the_engine_needs(ledger):
    ledger.insert_rows([row("A1"), row("A2", state=S.REJECTED, category="未对码", held_back=1)])

    found = ledger.lookup(INSTITUTION, ["A1", "A2", "NOT-THERE"])

    assert set(found) == {"A1", "A2"}
    a1, a2 = found["A1"], found["A2"]
    assert (a1.state, a1.payload_hash, a1.sent_hash, a1.held_back, a1.run_token) == (
        S.PENDING,
        "hash-A1",
        None,
        False,
        "run-1",
    )
    assert a1.state is S.PENDING  # the enum member, not the stored text
    assert (a2.state, a2.category, a2.held_back, a2.transaction_code) == (
        S.REJECTED,
        "未对码",
        True,
        "JXC003",
    )


def test_lookup_sees_only_the_rows_of_its_institution(ledger):
    ledger.insert_rows([row("A1"), row("A1", institution_code=OTHER_INSTITUTION, payload_hash="other")])

    assert ledger.lookup(INSTITUTION, ["A1"])["A1"].payload_hash == "hash-A1"
    assert ledger.lookup(OTHER_INSTITUTION, ["A1"])["A1"].payload_hash == "other"
    assert ledger.lookup("H51019999999", ["A1"]) == {}


def test_lookup_of_more_serials_than_one_query_holds_finds_every_row(ledger):
    serials = [f"S{i:05d}" for i in range(1234)]
    ledger.insert_rows([row(s) for s in serials])

    assert set(ledger.lookup(INSTITUTION, serials)) == set(serials)
    assert ledger.states(INSTITUTION, serials[-3:]) == dict.fromkeys(serials[-3:], S.PENDING)


def test_update_rows_changes_the_named_rows_only_and_counts_an_attempt_when_asked(ledger):
    ledger.insert_rows([row("A1"), row("A2"), row("A3")])

    ledger.update_rows(
        INSTITUTION,
        [{"serial_no": "A1", "state": S.IN_FLIGHT}, {"serial_no": "A2", "state": S.IN_FLIGHT}],
        count_attempt=True,
    )
    ledger.update_rows(INSTITUTION, [{"serial_no": "A1", "state": S.ACCEPTED}])

    assert (stored(ledger, "A1")["state"], stored(ledger, "A1")["attempts"]) == ("ACCEPTED", 1)
    assert (stored(ledger, "A2")["state"], stored(ledger, "A2")["attempts"]) == ("IN_FLIGHT", 1)
    assert (stored(ledger, "A3")["state"], stored(ledger, "A3")["attempts"]) == ("PENDING", 0)


def test_update_rows_of_one_institution_leaves_the_same_serial_of_another_alone(ledger):
    ledger.insert_rows([row("A1"), row("A1", institution_code=OTHER_INSTITUTION)])

    ledger.update_rows(INSTITUTION, [{"serial_no": "A1", "state": S.ACCEPTED}])

    assert ledger.states(INSTITUTION, ["A1"]) == {"A1": S.ACCEPTED}
    assert ledger.states(OTHER_INSTITUTION, ["A1"]) == {"A1": S.PENDING}


def _statements(ledger: Ledger) -> list[tuple[str, int]]:
    """(UPDATE statement, number of parameter sets) of each update the ledger runs from now on."""
    seen: list[tuple[str, int]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("UPDATE"):
            seen.append((statement, len(parameters) if executemany else 1))

    event.listen(ledger.engine, "before_cursor_execute", record)
    return seen


def test_rows_that_share_their_values_are_updated_in_one_statement(ledger):
    ledger.insert_rows([row(f"A{n}") for n in range(1200)])
    statements = _statements(ledger)
    at = datetime(2026, 11, 21, 13, 0, 0)

    ledger.update_rows(
        INSTITUTION,
        [{"serial_no": f"A{n}", "state": S.ACCEPTED, "accepted_at": at} for n in range(1100)],
        count_attempt=True,
    )

    assert [(sql.count(" IN ("), n) for sql, n in statements] == [(1, 1)] * 3  # 500 流水号 per IN list
    rows = {r["serial_no"]: r for r in ledger.iter_rows()}
    changed = {f"A{n}" for n in range(1100)}
    assert all(
        (r["state"], r["accepted_at"], r["attempts"]) == ("ACCEPTED", at, 1)
        for s, r in rows.items()
        if s in changed
    )
    assert {(r["state"], r["attempts"]) for s, r in rows.items() if s not in changed} == {("PENDING", 0)}


def test_a_text_that_differs_per_row_is_written_with_its_own_row(ledger):
    ledger.insert_rows([row(f"A{n}") for n in range(5)] + [row("B1")])
    statements = _statements(ledger)

    ledger.update_rows(
        INSTITUTION,
        [{"serial_no": f"A{n}", "state": S.IN_FLIGHT, "sent_hash": f"sent-{n}"} for n in range(5)],
    )

    assert [(sql.count("CASE"), n) for sql, n in statements] == [(1, 1)]
    rows = {r["serial_no"]: r for r in ledger.iter_rows()}
    assert {s: (r["state"], r["sent_hash"]) for s, r in rows.items()} == {
        **{f"A{n}": ("IN_FLIGHT", f"sent-{n}") for n in range(5)},
        "B1": ("PENDING", None),
    }


def test_rows_in_a_few_groups_of_values_take_one_statement_per_group(ledger):
    ledger.insert_rows([row(f"A{n}") for n in range(6)])
    statements = _statements(ledger)

    ledger.update_rows(
        INSTITUTION,
        [{"serial_no": f"A{n}", "state": S.ACCEPTED, "late_seconds": float(n % 2)} for n in range(6)],
    )

    assert [n for _, n in statements] == [1, 1]
    rows = {r["serial_no"]: r for r in ledger.iter_rows()}
    assert {s: r["late_seconds"] for s, r in rows.items()} == {f"A{n}": float(n % 2) for n in range(6)}


def test_rows_that_differ_in_many_ways_are_updated_row_by_row_in_one_statement(ledger):
    ledger.insert_rows([row(f"A{n}") for n in range(8)])
    statements = _statements(ledger)

    ledger.update_rows(
        INSTITUTION,
        [{"serial_no": f"A{n}", "payload_hash": f"h{n}", "late_seconds": float(n)} for n in range(8)],
    )

    assert [n for _, n in statements] == [8]  # executemany: one parameter set per row
    rows = {r["serial_no"]: r for r in ledger.iter_rows()}
    assert {s: (r["payload_hash"], r["late_seconds"]) for s, r in rows.items()} == {
        f"A{n}": (f"h{n}", float(n)) for n in range(8)
    }


def test_writes_inside_a_transaction_commit_together_and_are_seen_by_its_reads(ledger, tmp_path):
    ledger.insert_rows([row("T1"), row("T2")])
    other = Ledger(f"sqlite:///{tmp_path}/ledger.db")
    try:
        with ledger.transaction():
            ledger.update_rows(INSTITUTION, [{"serial_no": "T1", "state": S.IN_FLIGHT}])
            batch_id = ledger.start_batch(
                institution_code=INSTITUTION, transaction_code="JXC003", row_count=1
            )
            assert ledger.states(INSTITUTION, ["T1"]) == {"T1": S.IN_FLIGHT}  # its own writes
            assert other.states(INSTITUTION, ["T1"]) == {"T1": S.PENDING}  # not committed yet
            assert other.batches() == []
        assert other.states(INSTITUTION, ["T1"]) == {"T1": S.IN_FLIGHT}
        assert [b["id"] for b in other.batches()] == [batch_id]

        def fails_in_a_transaction() -> None:
            with ledger.transaction():
                ledger.update_rows(INSTITUTION, [{"serial_no": "T2", "state": S.IN_FLIGHT}])
                raise RuntimeError("the batch never went out")

        with pytest.raises(RuntimeError):
            fails_in_a_transaction()
        assert other.states(INSTITUTION, ["T2"]) == {"T2": S.PENDING}  # rolled back
    finally:
        other.dispose()


def test_update_grouped_writes_rows_that_set_different_columns(ledger):
    ledger.insert_rows([row("A1"), row("A2")])

    ledger.update_grouped(
        INSTITUTION,
        [
            {"serial_no": "A1", "state": S.REJECTED, "category": "字段校验失败", "detail": "出库数量"},
            {"serial_no": "A2", "state": S.ACCEPTED},
        ],
    )

    a1, a2 = stored(ledger, "A1"), stored(ledger, "A2")
    assert (a1["state"], a1["category"], a1["detail"]) == ("REJECTED", "字段校验失败", "出库数量")
    assert (a2["state"], a2["category"], a2["detail"]) == ("ACCEPTED", None, None)


def test_serial_another_upload_inserted_meanwhile_is_reported_as_taken_and_the_rest_go_in(ledger):
    # an upload of another transaction inserted S1 after this one looked it up
    ledger.insert_rows([row("S1", transaction_code="JXC002", payload_hash="inbound")])

    taken = ledger.insert_rows([row("S1"), row("S2")])

    assert set(taken) == {"S1"}
    assert (taken["S1"].transaction_code, taken["S1"].payload_hash) == ("JXC002", "inbound")
    assert stored(ledger, "S1")["transaction_code"] == "JXC002"  # the other upload's row is kept
    assert stored(ledger, "S2")["transaction_code"] == "JXC003"


def test_insert_of_new_rows_reports_nothing_taken(ledger):
    assert ledger.insert_rows([row("N1"), row("N2")]) == {}
    assert set(ledger.lookup(INSTITUTION, ["N1", "N2"])) == {"N1", "N2"}


def test_insert_failing_for_another_reason_than_a_taken_serial_raises_and_writes_nothing(ledger):
    with pytest.raises(IntegrityError):  # the same 流水号 twice in one insert: a bug, not a race
        ledger.insert_rows([row("D1"), row("D2"), row("D1")])

    assert ledger.lookup(INSTITUTION, ["D1", "D2"]) == {}


def test_texts_longer_than_their_column_are_cut_with_the_marker(ledger):
    detail = "原因" * 3000
    ledger.insert_rows([row("L1", category="类" * 100, detail=detail, run_token="r" * 1500)])

    kept = stored(ledger, "L1")
    assert len(kept["category"]) == upload_row.c.category.type.length
    assert len(kept["run_token"]) == upload_row.c.run_token.type.length
    assert len(kept["detail"]) == TEXT_MAX
    assert kept["detail"].startswith("原因原因")  # the head, where the reason stands, survives
    assert kept["detail"].endswith(MARKER.format(n=len(detail)))


def test_update_fits_texts_the_same_way_as_insert(ledger):
    ledger.insert_rows([row("L1")])

    ledger.update_rows(INSTITUTION, [{"serial_no": "L1", "detail": "x" * 10_000, "field": "f" * 500}])

    kept = stored(ledger, "L1")
    assert len(kept["detail"]) == TEXT_MAX
    assert kept["detail"].endswith(MARKER.format(n=10_000))
    assert len(kept["field"]) == upload_row.c.field.type.length


def test_characters_no_database_stores_are_written_as_escapes(ledger):
    ledger.insert_rows([row("U1", detail="before\x00after \ud800 end")])

    assert stored(ledger, "U1")["detail"] == "before\\x00after \\ud800 end"


def test_long_serials_are_never_cut_so_two_of_them_stay_two_rows(ledger):
    head = "流" * 300
    ledger.insert_rows([row(head + "1"), row(head + "2")])

    assert set(ledger.lookup(INSTITUTION, [head + "1", head + "2"])) == {head + "1", head + "2"}


def test_count_by_state_counts_rows_matching_the_filters(ledger):
    ledger.insert_rows(
        [
            row("A1"),
            row("A2", state=S.ACCEPTED),
            row("A3", state=S.ACCEPTED),
            row("I1", transaction_code="JXC002", state=S.ACCEPTED),
        ]
    )

    assert ledger.count_by_state() == {"PENDING": 1, "ACCEPTED": 3}
    assert ledger.count_by_state(transaction_code="JXC003") == {"PENDING": 1, "ACCEPTED": 2}
    assert ledger.count_by_state(institution_code=OTHER_INSTITUTION) == {}


def test_accepted_serials_include_reconciled_rows_of_the_institution_only(ledger):
    ledger.insert_rows(
        [
            row("A1", state=S.ACCEPTED),
            row("A2", state=S.ACCEPTED_RECONCILED),
            row("R1", state=S.REJECTED),
            row("P1"),
            row("X1", institution_code=OTHER_INSTITUTION, state=S.ACCEPTED),
        ]
    )

    assert ledger.accepted_serials(INSTITUTION) == {"A1", "A2"}
    assert ledger.accepted_serials() == {"A1", "A2", "X1"}


def test_open_dates_are_the_days_with_unsettled_rows_or_source_issues(ledger):
    ledger.insert_rows(
        [
            row("D1", business_date="2026-11-01", state=S.ACCEPTED),
            row("D2", business_date="2026-11-02", state=S.REJECTED),
            row("D3", business_date="2026-11-03", state=S.IN_DOUBT),
            row("D4", business_date="2026-11-04", state=S.DUPLICATE_CONFLICT),  # final: nothing to redo
            row("D6", business_date="2026-11-06"),  # outside [since, before)
            row("D7", business_date="2026-11-02", transaction_code="JXC002", state=S.PENDING),
        ]
    )
    ledger.record_source_issues(
        [
            {
                "institution_code": INSTITUTION,
                "transaction_code": "JXC003",
                "business_date": "2026-11-05",
                "row_key": "#3@0123456789ab",
                "detail": "流水号为空",
                "seen_at": NOW,
            }
        ]
    )

    assert ledger.open_dates(INSTITUTION, "JXC003", "2026-11-01", "2026-11-06") == [
        "2026-11-02",
        "2026-11-03",
        "2026-11-05",
    ]
    assert ledger.open_dates(INSTITUTION, "JXC002", "2026-11-01", "2026-11-06") == ["2026-11-02"]


def test_batch_audit_keeps_request_and_reply_and_times_the_call(ledger):
    batch_id = ledger.start_batch(
        institution_code=INSTITUTION,
        transaction_code="JXC003",
        run_token="run-1",
        row_count=2,
        request_gz=compress("<request/>"),
    )

    ledger.finish_batch(batch_id, outcome="success", retcode="1", reply_gz=compress("<return>1</return>"))

    (batch,) = ledger.batches()
    assert batch["id"] == batch_id
    assert (batch["outcome"], batch["retcode"], batch["row_count"]) == ("success", "1", 2)
    assert (batch["request"], batch["reply"]) == ("<request/>", "<return>1</return>")
    assert batch["finished_at"] >= batch["started_at"]
    assert batch["duration_ms"] >= 0


def test_batch_audit_fits_hostile_texts_and_counts(ledger):
    batch_id = ledger.start_batch(institution_code=INSTITUTION, transaction_code="JXC003", row_count=1)

    ledger.finish_batch(batch_id, outcome="partial", retmsg="错" * 5000, succnum=10**30, retcode="1" * 50)

    (batch,) = ledger.batches()
    assert len(batch["retmsg"]) == TEXT_MAX
    assert batch["succnum"] is None  # no column holds it: stored as unknown, the write still succeeds
    assert len(batch["retcode"]) == upload_batch.c.retcode.type.length


def test_a_reply_of_megabytes_is_stored_capped_with_the_marker():
    reply = "<x>" + "y" * (REPLY_MAX * 2) + "</x>"

    kept = decompress(compress(reply))

    assert kept is not None
    assert len(kept) == REPLY_MAX
    assert kept.startswith("<x>yyy")
    assert kept.endswith(MARKER.format(n=len(reply)))
    assert compress(None) is None
    assert decompress(None) is None


def test_open_batches_of_earlier_runs_are_abandoned_and_the_current_runs_kept(ledger):
    def start(run_token: str, **over: Any) -> int:
        values = {"institution_code": INSTITUTION, "transaction_code": "JXC003", "row_count": 1}
        return ledger.start_batch(run_token=run_token, **{**values, **over})

    dead = start("dead-run")
    finished = start("dead-run")
    ledger.finish_batch(finished, outcome="success")
    mine = start("this-run")
    other_txn = start("dead-run", transaction_code="JXC002")
    other_institution = start("dead-run", institution_code=OTHER_INSTITUTION)

    assert ledger.abandon_open_batches(INSTITUTION, "JXC003", "this-run") == 1

    outcome = {b["id"]: (b["outcome"], b["finished_at"] is not None) for b in ledger.batches()}
    assert outcome == {
        dead: ("abandoned", True),
        finished: ("success", True),
        mine: (None, False),
        other_txn: (None, False),
        other_institution: (None, False),
    }
    assert "in doubt" in ledger.batches(upload_batch.c.id == dead)[0]["error"]
    assert ledger.abandon_open_batches(INSTITUTION, "JXC003", "this-run") == 0


def test_ledger_is_bound_to_the_first_environment_it_uploads_to(ledger):
    ledger.bind_environment(INSTITUTION, "test")
    ledger.bind_environment(INSTITUTION, "test")  # the same environment again is fine

    with pytest.raises(ConnectionConfigError, match=r"'test' environment.*'prod'"):
        ledger.bind_environment(INSTITUTION, "prod")
    ledger.bind_environment(OTHER_INSTITUTION, "prod")  # each institution binds on its own
    assert ledger.milestone(INSTITUTION, "environment")["detail"] == "test"


def test_set_milestone_replaces_the_earlier_one(ledger):
    assert ledger.milestone(INSTITUTION, "init_done") is None

    ledger.set_milestone(INSTITUTION, "init_done", "first")
    ledger.set_milestone(INSTITUTION, "init_done", "second")

    found = ledger.milestone(INSTITUTION, "init_done")
    assert found is not None
    assert found["detail"] == "second"


def test_relative_sqlite_path_keeps_naming_the_same_file_after_a_chdir(tmp_path, monkeypatch):
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path)
    led = Ledger("sqlite:///relative.db")
    monkeypatch.chdir(tmp_path / "elsewhere")

    led.insert_rows([row("C1")])

    again = Ledger(f"sqlite:///{tmp_path}/relative.db")
    assert set(again.lookup(INSTITUTION, ["C1"])) == {"C1"}
    assert not (tmp_path / "elsewhere" / "relative.db").exists()
    assert led.database_file == str(tmp_path.resolve() / "relative.db")
    led.dispose()
    again.dispose()

"""The day counts the monitor reads follow every row write, in its transaction, and a ledger of an earlier
version gets them counted once when it is opened."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import pytest
from sqlalchemy import text

from cdyb_jxc.ledger import Ledger, LedgerState, rollup
from cdyb_jxc.ledger.transitions import ReplyFates, held_back, to_send
from tests.conftest import INSTITUTION
from tests.unit.ledger.test_store import row

S = LedgerState
NOW = datetime(2026, 11, 30, 12)
D1, D2 = "2026-11-20", "2026-11-21"


@pytest.fixture
def ledger(tmp_path) -> Iterator[Ledger]:
    led = Ledger(f"sqlite:///{tmp_path}/ledger.db")
    yield led
    led.dispose()


def _counts(ledger: Ledger) -> dict[tuple[str, str, str], tuple[int, int, int]]:
    """The counts by (day, transaction, state), categories added up."""
    with ledger.engine.connect() as conn:
        kept, recount = rollup.stored(conn), rollup.recounted(conn)
    assert kept == recount  # the counts kept are the counts of the rows
    out: dict[tuple[str, str, str], tuple[int, int, int]] = {}
    for (_, day, code, state, _category), v in kept.items():
        was = out.get((day, code, state), (0, 0, 0))
        out[(day, code, state)] = tuple(a + b for a, b in zip(was, v, strict=True))  # type: ignore[assignment]
    return out


def _categories(ledger: Ledger) -> dict[tuple[str, str], int]:
    with ledger.engine.connect() as conn:
        return {(state, category): v[0] for (_, _, _, state, category), v in rollup.stored(conn).items()}


def test_counts_follow_a_batch_from_planning_to_its_answer(ledger):
    ledger.add_planned([row(f"S{i}") for i in range(4)] + [row("H1", **held_back("未对码", "m", "x"))])
    assert _counts(ledger) == {(D1, "JXC003", "PENDING"): (4, 0, 0), (D1, "JXC003", "REJECTED"): (1, 0, 0)}

    with ledger.transaction():
        ledger.mark_in_flight(INSTITUTION, [(f"S{i}", "h") for i in range(4)], 7, NOW)
    assert _counts(ledger) == {(D1, "JXC003", "IN_FLIGHT"): (4, 0, 0), (D1, "JXC003", "REJECTED"): (1, 0, 0)}

    fates = ReplyFates(NOW)
    fates.accepted("S0", 120.0)  # past the T+1 deadline
    fates.accepted("S1", -90_000.0)  # on day D itself
    fates.rejected("S2", "字段校验失败", "quantity", "数量")
    fates.conflict("S3", "重复上传", "别人的")
    ledger.record_fates(INSTITUTION, fates)
    assert _counts(ledger) == {
        (D1, "JXC003", "ACCEPTED"): (2, 1, 1),
        (D1, "JXC003", "REJECTED"): (2, 0, 0),
        (D1, "JXC003", "DUPLICATE_CONFLICT"): (1, 0, 0),
    }
    assert _categories(ledger) == {
        ("ACCEPTED", ""): 2,
        ("REJECTED", "未对码"): 1,
        ("REJECTED", "字段校验失败"): 1,
        ("DUPLICATE_CONFLICT", "重复上传"): 1,
    }


def test_a_row_planned_again_on_another_day_moves_its_count(ledger):
    ledger.add_planned([row("S1", state=S.REJECTED, held_back=1)])
    ledger.replan(INSTITUTION, [{"serial_no": "S1", "business_date": D2, **to_send(S.REJECTED)}])
    assert _counts(ledger) == {(D2, "JXC003", "PENDING"): (1, 0, 0)}


def test_calls_that_fail_or_lose_their_reply_are_counted_where_the_rows_go(ledger):
    ledger.add_planned([row("A"), row("B")])
    ledger.mark_in_flight(INSTITUTION, [("A", "h"), ("B", "h")], 1, NOW)
    ledger.mark_not_sent(INSTITUTION, [("A", False)], "未发送", NOW)
    ledger.mark_in_doubt(INSTITUTION, ["B"], "应答丢失", NOW)
    assert _counts(ledger) == {(D1, "JXC003", "PENDING"): (1, 0, 0), (D1, "JXC003", "IN_DOUBT"): (1, 0, 0)}


def test_a_serial_another_upload_took_is_counted_once(ledger):
    ledger.insert_rows([row("S1", transaction_code="JXC002")])
    ledger.insert_rows([row("S1"), row("S2")])
    assert _counts(ledger) == {(D1, "JXC002", "PENDING"): (1, 0, 0), (D1, "JXC003", "PENDING"): (1, 0, 0)}


def test_an_update_that_changes_no_count_reads_nothing_more(ledger):
    ledger.add_planned([row("S1")])
    ledger.mark_seen(INSTITUTION, ["S1"], "run-2")
    assert _counts(ledger) == {(D1, "JXC003", "PENDING"): (1, 0, 0)}
    assert not rollup.counted_change([{"serial_no": "S1", "run_token": "run-2"}])


def test_a_ledger_of_an_earlier_version_is_counted_once_when_opened(tmp_path):
    url = f"sqlite:///{tmp_path}/old.db"
    ledger = Ledger(url)
    ledger.add_planned([row("S1"), row("S2", business_date=D2)])
    with ledger.engine.begin() as conn:
        conn.execute(text("DROP TABLE cdyb_jxc_day_count"))
    ledger.dispose()
    reopened = Ledger(url)
    assert _counts(reopened) == {(D1, "JXC003", "PENDING"): (1, 0, 0), (D2, "JXC003", "PENDING"): (1, 0, 0)}
    reopened.dispose()

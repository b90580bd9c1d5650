"""The T+1 watch: day D's rows not accepted at the deadline, split into the data and the operations route."""

from __future__ import annotations

from datetime import datetime

import pytest

from cdyb_jxc.ledger import Ledger
from cdyb_jxc.upload.watch import SOURCE_ISSUE, t1_findings

H, DAY = "H51010400001", "2026-11-20"
NOW = datetime(2026, 11, 21, 10)


@pytest.fixture
def ledger(tmp_path):
    led = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    yield led
    led.dispose()


def _rows(ledger: Ledger, *rows: tuple[str, str, str | None, str]) -> None:
    """(transaction code, state, category, day) per row."""
    ledger.insert_rows(
        [
            {
                "institution_code": H, "serial_no": f"S{n}", "transaction_code": txn, "business_date": day,
                "state": state, "category": category, "payload_hash": "0" * 64, "attempts": 1, "held_back": 0,
                "first_seen_at": NOW, "updated_at": NOW,
            }
            for n, (txn, state, category, day) in enumerate(rows)
        ]
    )  # fmt: skip


def test_a_complete_day_has_nothing_to_report(profile, ledger):
    _rows(ledger, ("JXC003", "ACCEPTED", None, DAY), ("JXC004", "ACCEPTED_RECONCILED", None, DAY))
    found = t1_findings(ledger, profile, H, DAY)
    assert found.complete
    assert found.accepted == 2


def test_what_is_missing_goes_to_who_can_fix_it(profile, ledger):
    _rows(
        ledger,
        ("JXC003", "REJECTED", "未对码", DAY),
        ("JXC003", "REJECTED", "未对码", DAY),
        ("JXC002", "REJECTED", "字段校验失败", DAY),
        ("JXC002", "REJECTED", "原出库记录不存在", DAY),
        ("JXC003", "IN_DOUBT", None, DAY),
        ("JXC003", "PENDING", None, DAY),
        ("JXC003", "REJECTED", "未对码", "2026-11-19"),  # another day
    )
    ledger.record_source_issues(
        [
            {
                "institution_code": H, "transaction_code": "JXC003", "business_date": DAY, "row_key": "#7@x",
                "source_row": 7, "detail": "源数据第7行: 流水号(yka105)不能为空", "seen_at": NOW,
            }
        ]
    )  # fmt: skip
    found = t1_findings(ledger, profile, H, DAY)
    assert found.data[("JXC003", "未对码")] == 2
    assert found.data[("JXC002", "字段校验失败")] == 1
    assert found.data[("JXC003", SOURCE_ISSUE)] == 1
    assert found.ops[("JXC002", "原出库记录不存在")] == 1
    assert found.ops[("JXC003", "IN_DOUBT")] == 1
    assert found.ops[("JXC003", "PENDING")] == 1
    assert found.ops[("JXC004", "库存未上传 no stock rows for the day")] == 1  # the day's stock never went
    assert not found.complete

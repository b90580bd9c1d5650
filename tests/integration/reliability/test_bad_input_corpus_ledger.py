"""Bad-input corpus, ledger meetings: sources whose bad rows share row numbers, a 流水号 claimed by two
transactions at one instant, one ledger reached under several names. Exact messages asserted, no source row
lost (each ends as a ledger row or a source issue), on SQLite and the local PostgreSQL."""

from __future__ import annotations

import pytest

from cdyb_jxc.exceptions import UploadBusyError
from cdyb_jxc.ledger import ACCEPTED, REJECTED, Ledger
from cdyb_jxc.ledger.lock import UploadLock
from cdyb_jxc.wire.rules import MappingEntry
from tests.conftest import INSTITUTION, RacingLedger, inbound_row, make_uploader, outbound_row

# -- bad rows of two sources at the same row number ---------------------------------------------------------
ROW_NUMBERED = [
    pytest.param("", None, "源数据第2行: 流水号(yka105)不能为空", id="no-serial"),
    pytest.param(
        "X" * 300, "X" * 40 + "…", "源数据第2行: 流水号(yka105)长度300，无法记录", id="serial-too-long"
    ),
    pytest.param("DUP", "DUP", "流水号在数据源中重复(源数据第2行)，仅上传第一条", id="serial-repeated"),
]


@pytest.mark.parametrize(("serial", "shown", "detail"), ROW_NUMBERED)
def test_bad_rows_of_two_sources_at_one_row_number_are_two_issues(
    profile, client, ledger, store, serial, shown, detail
):
    for tag, quantity in (("a", "1"), ("b", "2")):  # e.g. a morning and an evening file of one day
        head = serial if serial == "DUP" else f"OK-{tag}"
        rows = [outbound_row(head), outbound_row(serial, quantity=quantity)]
        result = make_uploader(profile, client, ledger, source=f"file:sha256:{tag * 64}").run([rows])
        assert result.source_issues == 1
    issues = list(ledger.iter_source_issues())
    assert [(i["serial_no"], i["source_row"], i["detail"]) for i in issues] == [(shown, 2, detail)] * 2
    assert len({i["row_key"] for i in issues}) == 2


# -- a 流水号 claimed by another transaction between lookup and insert ---------------------------------------
@pytest.mark.parametrize(
    ("competing_row", "state"),
    [
        pytest.param(inbound_row("TK-1"), ACCEPTED, id="other-transaction-accepted"),
        pytest.param(inbound_row("TK-1", quantity="-1"), REJECTED, id="other-transaction-rejected"),
    ],
)
def test_serial_claimed_meanwhile_by_another_transaction(
    profile, client, ledger_url, store, competing_row, state
):
    racing, other = RacingLedger(ledger_url), Ledger(ledger_url)
    racing.competitor = lambda: make_uploader(profile, client, other, "inbound").run([[competing_row]])
    registry = {"M0001": MappingEntry("XA000001")}
    rows = [outbound_row("TK-1"), outbound_row("TK-2"), outbound_row("TK-3", 2)]
    result = make_uploader(profile, client, racing, registry=registry).run([rows])
    assert result.states == {ACCEPTED: 1, REJECTED: 1}  # TK-2 sent, TK-3 held back (未对码)
    (issue,) = racing.iter_source_issues()
    assert (issue["row_key"], issue["transaction_code"], issue["category"]) == (
        "TK-1",
        "JXC003",
        "数据重复上传",
    )
    assert issue["detail"] == f"流水号已用于JXC002的记录(状态{state})，本条未上传；请为本条使用新的流水号"
    owners = {r["serial_no"]: r["transaction_code"] for r in racing.iter_rows()}
    assert owners == {"TK-1": "JXC002", "TK-2": "JXC003", "TK-3": "JXC003"}  # nothing lost
    racing.dispose()
    other.dispose()


# -- one SQLite ledger under several names ------------------------------------------------------------------
@pytest.mark.parametrize("spelling", ["symlink", "relative", "symlinked-directory"])
def test_ledger_under_another_name_is_the_same_ledger_and_lock(
    profile, client, tmp_path, monkeypatch, store, spelling
):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "alias.db").symlink_to(real / "ledger.db")
    (tmp_path / "alias-dir").symlink_to(real)
    plain = Ledger(f"sqlite:///{real / 'ledger.db'}")
    monkeypatch.chdir(tmp_path)
    url = {
        "symlink": "sqlite:///alias.db",
        "relative": "sqlite:///real/ledger.db",
        "symlinked-directory": "sqlite:///alias-dir/ledger.db",
    }[spelling]
    other = Ledger(url)
    assert other.database_file == plain.database_file == str(real / "ledger.db")
    with UploadLock(plain, INSTITUTION, "JXC003"), pytest.raises(UploadBusyError) as info:
        make_uploader(profile, client, other, lock_wait=0.1).run([[outbound_row("AL1")]])
    assert str(info.value) == (
        f"another upload of JXC003 of {INSTITUTION} is running on ledger sqlite:///{real / 'ledger.db'}; "
        "waited 0 s, try again later"
    )
    assert list(plain.iter_rows()) == []  # nothing recorded, nothing sent
    plain.dispose()
    other.dispose()

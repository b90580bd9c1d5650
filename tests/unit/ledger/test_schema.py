"""The ledger schema: created on first use, upgraded in place when a later version adds columns."""

from __future__ import annotations


def test_a_ledger_of_an_earlier_version_gains_the_new_columns_when_opened(tmp_path):
    """Ledgers in use lack the columns added since (quantity_packages, for the balance audit): opening one
    adds them, and its rows stay."""
    from sqlalchemy import inspect

    from cdyb_jxc.ledger import Ledger

    url = f"sqlite:///{tmp_path / 'old.db'}"
    first = Ledger(url)
    with first.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE cdyb_jxc_upload_row DROP COLUMN quantity_packages")
    first.dispose()
    again = Ledger(url)
    try:
        names = {c["name"] for c in inspect(again.engine).get_columns("cdyb_jxc_upload_row")}
        assert "quantity_packages" in names
    finally:
        again.dispose()


def test_a_ledger_that_cannot_gain_a_column_leaves_it_out_of_its_writes(tmp_path, monkeypatch):
    """A role without ALTER on an old ledger: uploads go on, without the new column."""
    from datetime import datetime

    from cdyb_jxc.ledger import Ledger, store

    url = f"sqlite:///{tmp_path / 'old.db'}"
    first = Ledger(url)
    with first.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE cdyb_jxc_upload_row DROP COLUMN quantity_packages")
    first.dispose()
    monkeypatch.setattr(store, "create_tables", lambda engine: frozenset({"quantity_packages"}))
    ledger = Ledger(url)
    now = datetime(2026, 11, 20)
    row = {
        "institution_code": "H1", "serial_no": "S1", "transaction_code": "JXC003",
        "business_date": "2026-11-20", "payload_hash": "0" * 64, "state": "PENDING", "attempts": 0,
        "held_back": 0, "first_seen_at": now, "updated_at": now, "quantity_packages": 2.0,
    }  # fmt: skip
    try:
        ledger.insert_rows([row])
        ledger.update_rows("H1", [{"serial_no": "S1", "state": "ACCEPTED", "quantity_packages": 2.0}])
        assert [r["state"] for r in ledger.iter_rows()] == ["ACCEPTED"]
    finally:
        ledger.dispose()


def test_a_ledger_of_an_earlier_version_gains_the_new_indexes_and_drops_the_one_they_replace(tmp_path):
    from sqlalchemy import create_engine, inspect, text

    from cdyb_jxc.ledger import Ledger

    url = f"sqlite:///{tmp_path}/old.db"
    Ledger(url).dispose()
    engine = create_engine(url)
    with engine.begin() as conn:  # as an earlier version left it
        conn.execute(text("DROP INDEX ix_cdyb_jxc_upload_row_state_time"))
        conn.execute(text("DROP INDEX ix_cdyb_jxc_upload_row_run"))
        conn.execute(text("CREATE INDEX ix_cdyb_jxc_upload_row_state ON cdyb_jxc_upload_row (state)"))
    Ledger(url).dispose()
    names = {ix["name"] for ix in inspect(engine).get_indexes("cdyb_jxc_upload_row")}
    engine.dispose()
    assert {"ix_cdyb_jxc_upload_row_state_time", "ix_cdyb_jxc_upload_row_run"} <= names
    assert "ix_cdyb_jxc_upload_row_state" not in names

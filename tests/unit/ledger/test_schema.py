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

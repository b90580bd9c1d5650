"""The upload ledger (SQLAlchemy Core, no Airflow)."""

from cdyb_jxc.ledger.schema import (
    ACCEPTED,
    ACCEPTED_RECONCILED,
    ACCEPTED_STATES,
    DUPLICATE_CONFLICT,
    IN_DOUBT,
    IN_FLIGHT,
    PENDING,
    REJECTED,
    STATES,
    UNRESOLVED_STATES,
)
from cdyb_jxc.ledger.store import DEFAULT_LEDGER_URL, Ledger, LedgerEntry, default_ledger_url

__all__ = [
    "ACCEPTED",
    "ACCEPTED_RECONCILED",
    "ACCEPTED_STATES",
    "DEFAULT_LEDGER_URL",
    "DUPLICATE_CONFLICT",
    "IN_DOUBT",
    "IN_FLIGHT",
    "PENDING",
    "REJECTED",
    "STATES",
    "UNRESOLVED_STATES",
    "Ledger",
    "LedgerEntry",
    "default_ledger_url",
]

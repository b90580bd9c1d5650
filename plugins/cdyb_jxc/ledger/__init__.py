"""The upload ledger (SQLAlchemy Core, no Airflow)."""

from cdyb_jxc.ledger.schema import (
    ACCEPTED,
    ACCEPTED_RECONCILED,
    DUPLICATE_CONFLICT,
    IN_DOUBT,
    IN_FLIGHT,
    PENDING,
    REJECTED,
)
from cdyb_jxc.ledger.states import (
    ACCEPTED_STATES,
    ATTENTION_STATES,
    DOUBT_STATES,
    FINAL_STATES,
    REVISIT_STATES,
    STATES,
    TRANSITIONS,
    UNRESOLVED_STATES,
    LedgerState,
)
from cdyb_jxc.ledger.store import Ledger, LedgerEntry, default_ledger_url

__all__ = [
    "ACCEPTED",
    "ACCEPTED_RECONCILED",
    "ACCEPTED_STATES",
    "ATTENTION_STATES",
    "DOUBT_STATES",
    "DUPLICATE_CONFLICT",
    "FINAL_STATES",
    "IN_DOUBT",
    "IN_FLIGHT",
    "PENDING",
    "REJECTED",
    "REVISIT_STATES",
    "STATES",
    "TRANSITIONS",
    "UNRESOLVED_STATES",
    "Ledger",
    "LedgerEntry",
    "LedgerState",
    "default_ledger_url",
]

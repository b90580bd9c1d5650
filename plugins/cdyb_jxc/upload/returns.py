"""Patient returns (入库类型 15) refused 【原出库记录不存在】 before their outbound went out (no Airflow).

Inbound is uploaded before outbound, so a return of a dispensing of the same day reaches the centre before
its original outbound and is refused. Once that outbound is accepted the return can go: the daily DAG's
``resend_returns`` task runs the inbound upload again with ``resend_now=("original_missing",)``, and the
engine sends exactly the refused returns whose original outbound the ledger now holds as accepted.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from cdyb_jxc.ledger import ACCEPTED_STATES, Ledger, LedgerEntry
from cdyb_jxc.wire.profile import Profile, TransactionSpec

if TYPE_CHECKING:
    from cdyb_jxc.upload.batches import Planned


def original_of(txn: TransactionSpec, wire: Mapping[str, str | None]) -> str | None:
    """The 原出库流水号 a row reverses, if its transaction has one."""
    reversal = txn.reversal_field
    return wire.get(reversal.name) if reversal is not None else None


def cleared_originals(
    ledger: Ledger,
    institution_code: str,
    profile: Profile,
    txn: TransactionSpec,
    planned: Mapping[str, Planned],
    known: Mapping[str, LedgerEntry],
) -> frozenset[str]:
    """The original outbounds of a chunk's rows refused 【原出库记录不存在】 that the centre has accepted
    since (one ledger lookup for the chunk).

    :param ledger: the ledger
    :param institution_code: 定点机构编码
    :param profile: the interface profile (the category's text)
    :param txn: the rows' transaction
    :param planned: the chunk's rows by 流水号
    :param known: what the ledger holds of them
    """
    refused = profile.category("original_missing")
    wanted = {
        original_of(txn, plan.wire)
        for serial, plan in planned.items()
        if (entry := known.get(serial)) is not None and entry.category == refused
    }
    originals = [s for s in wanted if s]
    found = ledger.lookup(institution_code, originals) if originals else {}
    return frozenset(s for s, entry in found.items() if entry.state in ACCEPTED_STATES)

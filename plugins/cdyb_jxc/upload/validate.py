"""Check source rows exactly as an upload's hold-back would, sending nothing (no Airflow, no ledger).

``cdyb-jxc validate`` runs this on a file before the upload, so the pharmacy can fix its data first; the
preflight DAG runs it on the SQL templates' rows the evening before. Each row is read into wire values as
the engine reads it (:func:`~cdyb_jxc.wire.values.row_to_wire`), keyed by its 流水号 (a row without a usable
one, or repeating an earlier one, is a source issue, with the engine's own text), then checked by
:func:`~cdyb_jxc.wire.rules.precheck_row` (R1, R6, and R3 against a local 对码 copy). What only the centre
or the ledger can know (a 流水号 stored before, R7's clock, a return's original outbound) is not checked.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cdyb_jxc.exceptions import SourceDataError
from cdyb_jxc.ledger.schema import SERIAL_MAX
from cdyb_jxc.safety.textcap import unstorable
from cdyb_jxc.upload.source_issues import repeated_detail, unkeyable_detail
from cdyb_jxc.wire.profile import Profile, TransactionSpec
from cdyb_jxc.wire.rules import MappingEntry, precheck_row
from cdyb_jxc.wire.values import row_to_wire

SOURCE_ISSUE = (
    "源数据问题"  # the category of a row that cannot be keyed or repeats a 流水号, and of a bad file
)
COLUMNS = ("row", "serial_no", "category", "field", "detail")


class Verdict(enum.IntEnum):
    """What a validation found, as the command's exit status."""

    ALL_SENT = 0  # every row would be sent
    HELD_BACK = 1  # some rows would be held back, or the file cannot be read
    USAGE = 2  # the command was called wrongly


@dataclass(frozen=True)
class Problem:
    """One row that would not be sent, and why.

    :param row: the data row's number (1 for the first row after the header); ``None`` for the whole file
    :param serial_no: its 流水号 as the source gives it (``None`` when it has none)
    :param category: the centre's category text without brackets (``字段校验失败``), or :data:`SOURCE_ISSUE`
    :param field: the logical field at fault
    :param detail: the reason, with the text the upload records
    """

    row: int | None
    serial_no: str | None
    category: str
    field: str | None
    detail: str

    def as_row(self) -> tuple[Any, ...]:
        return (self.row, self.serial_no, self.category, self.field, self.detail)


@dataclass
class Validation:
    """The counts of a validation run (the problems are yielded as they are found)."""

    rows: int = 0
    problems: int = 0

    @property
    def verdict(self) -> Verdict:
        return Verdict.HELD_BACK if self.problems else Verdict.ALL_SENT


def validate_rows(
    profile: Profile,
    txn_key: str,
    chunks: Iterable[Sequence[Mapping[str, Any]]],
    *,
    registry: Mapping[str, MappingEntry] | None = None,
    counts: Validation | None = None,
) -> Iterator[Problem]:
    """Every row of ``chunks`` the upload would hold back, in source order.

    :param profile: the interface profile
    :param txn_key: ``init``, ``inbound``, ``outbound`` or ``stock``
    :param chunks: the source rows, in chunks (as the upload reads them)
    :param registry: the local 对码 copy (R3); ``None`` to skip that check, as the upload does
    :param counts: filled in as rows are read

    A source that cannot be read further (:class:`~cdyb_jxc.exceptions.SourceDataError`) ends the list
    with one problem for the whole source.
    """
    txn = profile.transaction(txn_key)
    offset = int(profile.service["timezone_offset_hours"])
    counts = counts if counts is not None else Validation()
    seen: set[str] = set()
    try:
        for chunk in chunks:
            for row in chunk:
                counts.rows += 1
                problem = _check(profile, txn, row_to_wire(txn, row, offset), counts.rows, seen, registry)
                if problem is not None:
                    counts.problems += 1
                    yield problem
    except SourceDataError as err:  # the source stopped being readable: the upload would stop there too
        counts.problems += 1
        yield file_problem(str(err))


def _check(
    profile: Profile,
    txn: TransactionSpec,
    wire: Mapping[str, str | None],
    number: int,
    seen: set[str],
    registry: Mapping[str, MappingEntry] | None,
) -> Problem | None:
    """The problem of one row (data row ``number``), or ``None`` when it would be sent."""
    serial = wire.get("serial_no")
    if not serial or len(serial) > SERIAL_MAX or unstorable(serial):
        shown = serial[:40] + "…" if serial and len(serial) > 40 else (serial or None)
        return Problem(number, shown, SOURCE_ISSUE, "serial_no", unkeyable_detail(txn, serial, number))
    if serial in seen:
        return Problem(number, serial, SOURCE_ISSUE, "serial_no", repeated_detail(number))
    seen.add(serial)
    error = precheck_row(profile, txn, wire, registry)
    if error is None:
        return None
    return Problem(number, serial, profile.category(error.category_key), error.field, error.detail)


def file_problem(detail: str) -> Problem:
    """The one problem of a file that cannot be read at all (nothing of it would be sent)."""
    return Problem(None, None, SOURCE_ISSUE, None, detail)

"""The fast check of R6 and R1 (:func:`~cdyb_jxc.wire.rules.row_is_clean`) for many rows at once, column by
column (no Airflow).

A batch's rows mostly pass every check: a column whose values all pass is cleared in a few C-level passes
(a join, ``isprintable``, ``max`` of the lengths, a set difference), so only the rows a column cannot clear
are checked one by one, by :func:`row_is_clean` itself. The answer is always that of :func:`row_is_clean`
for each row.
"""

from __future__ import annotations

import codecs
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from functools import lru_cache
from itertools import compress, islice, repeat
from operator import and_, eq, itemgetter, not_

from cdyb_jxc.wire.profile import TransactionSpec
from cdyb_jxc.wire.rules import (
    PASSED_MAX,
    CleanPlan,
    TemporalCheck,
    clean_plan,
    number_passes,
    row_is_clean,
    temporal_passes,
)

Rows = Sequence[Mapping[str, str | None]]
# the most bytes a character takes, by codec name: the inner encodings and UTF-8 (any other: bytes counted)
MAX_BYTES_PER_CHAR = {"gbk": 2, "gb18030": 4, "utf-8": 4}


def clean_rows(txn: TransactionSpec, rows: Rows, encoding: str) -> list[bool]:
    """``[row_is_clean(txn, row, encoding) for row in rows]``, the rows' columns cleared first.

    :param rows: wire rows (:func:`~cdyb_jxc.wire.values.row_to_wire`): every field of ``txn``, text or
        ``None``
    """
    if not rows:
        return []
    try:
        suspects: Iterable[int] = _suspects(clean_plan(txn, encoding), rows, encoding)
    except (KeyError, TypeError, AttributeError):  # a row without every field, or a value that is not text
        suspects = range(len(rows))
    clean = [True] * len(rows)
    for i in suspects:
        clean[i] = row_is_clean(txn, rows[i], encoding)
    return clean


def _suspects(plan: CleanPlan, rows: Rows, encoding: str) -> set[int]:
    """The rows some column could not clear (by index)."""
    suspects: set[int] = set()
    columns = {name: list(map(itemgetter(name), rows)) for name in _checked(plan)}
    for name in plan.required:
        column = columns[name]
        if not all(column):
            suspects.update(i for i, value in enumerate(column) if not value)
    for name, when in plan.conditional:
        if all(columns[name]):
            continue
        refused = list(map(not_, columns[name]))  # empty where its condition holds: R1 refuses the row
        for key, expected in when:
            refused = list(map(and_, refused, map(eq, columns[key], repeat(expected))))
        suspects.update(compress(range(len(rows)), refused))
    for name, length in plan.text:
        if not _text_fits(list(filter(None, columns[name])), length, encoding):
            suspects.update(_holding(columns[name], None))
    for name, codes in plan.codes:
        unknown = set(filter(None, columns[name])) - codes
        if unknown:
            suspects.update(_holding(columns[name], unknown))
    for number in plan.numbers:
        failed = {v for v in _new(columns[number[0]], number[-1]) if not number_passes(number, v)}
        suspects.update(_holding(columns[number[0]], failed) if failed else ())
    for temporal in plan.temporals:
        failed = _failed_temporals(temporal, _new(columns[temporal[0]], temporal[-1]))
        suspects.update(_holding(columns[temporal[0]], failed) if failed else ())
    return suspects


def _checked(plan: CleanPlan) -> set[str]:
    names = {*plan.required, *(name for name, _ in plan.conditional), *(name for name, _ in plan.text)}
    names.update(key for _, when in plan.conditional for key, _ in when)
    names.update(name for name, _ in plan.codes)
    names.update(number[0] for number in plan.numbers)
    names.update(temporal[0] for temporal in plan.temporals)
    return names


def _text_fits(present: list[str], length: int, encoding: str) -> bool:
    """Whether every value is printable and fits ``length`` (characters for ASCII, else bytes in
    ``encoding``); ``False`` when in doubt."""
    if not present:
        return True
    joined = " ".join(present)  # a space is printable itself
    if not joined.isprintable():
        return False
    longest = max(map(len, present))
    if joined.isascii():
        return longest <= length
    try:
        joined.encode(encoding)
    except UnicodeEncodeError:
        return False
    if longest * _max_bytes_per_char(encoding) <= length:  # short names in a long field: bytes not counted
        return True
    return max(map(len, map(str.encode, present, repeat(encoding)))) <= length


@lru_cache(maxsize=16)
def _max_bytes_per_char(encoding: str) -> float:
    """The most bytes a character of ``encoding`` takes (infinite when not known)."""
    try:
        return MAX_BYTES_PER_CHAR.get(codecs.lookup(encoding).name, math.inf)
    except LookupError:  # row_is_clean says what such an encoding means
        return math.inf


def _failed_temporals(check: TemporalCheck, new: set[str]) -> set[str]:
    """The values of ``new`` that fail a date or date-time field's check (:func:`temporal_passes`): all of
    them matched and parsed in two C-level passes first (a time of day rarely repeats)."""
    if not new:
        return set()
    _name, pattern, kind, passed = check
    try:
        if all(map(pattern.fullmatch, new)):
            list(map(kind.fromisoformat, new))  # raises for a date that does not exist
            if len(passed) < PASSED_MAX:
                passed.update(islice(new, PASSED_MAX - len(passed)))
            return set()
    except ValueError:
        pass
    return {v for v in new if not temporal_passes(check, v)}


def _new(column: list[str | None], passed: set[str]) -> set[str]:
    """The column's values (not empty) that have not passed before."""
    return set(filter(None, column)) - passed


def _holding(column: list[str | None], values: Collection[str] | None) -> list[int]:
    """The rows whose value is one of ``values`` (``None``: any value at all)."""
    if values is None:
        return [i for i, value in enumerate(column) if value]
    return [i for i, value in enumerate(column) if value in values]

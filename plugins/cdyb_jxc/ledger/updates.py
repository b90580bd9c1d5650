"""The statements that update ledger rows by 流水号 (SQLAlchemy Core, no Airflow), as few as the rows allow.

A batch's rows mostly take the same values (IN_FLIGHT with one batch id and time; ACCEPTED at one time):
those go in one ``UPDATE … WHERE serial_no IN (…)``, a column whose value differs per row as a ``CASE`` on
the 流水号 (a text column), or one such statement per distinct value (a few). Rows that differ in more than
that (a chunk planned again) go as one statement executed for each row, as the driver's ``executemany``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import lru_cache
from operator import itemgetter
from typing import Any

from sqlalchemy import String, bindparam, case, update
from sqlalchemy.sql.dml import Update

from cdyb_jxc.ledger.schema import upload_row

IN_CHUNK = 500  # 流水号 per IN list (every database takes that many parameters)
MAX_GROUPS = 4  # distinct values of the differing columns still worth one statement each
Statement = tuple[Update, list[dict[str, Any]]]


def row_updates(
    institution_code: str,
    rows: Sequence[dict[str, Any]],
    *,
    count_attempt: bool = False,
    sent_is_payload: bool = False,
) -> Iterator[Statement]:
    """The statements and their parameters (one set each, or one per row) that give each row its values.

    :param institution_code: the rows' institution
    :param rows: fitted values by 流水号; every dict has the same keys, including ``serial_no``
    :param count_attempt: also add one to ``attempts``
    :param sent_is_payload: also set ``sent_hash`` to the row's own ``payload_hash`` (what is sent now)
    """
    extra = (count_attempt, sent_is_payload)
    keys = [k for k in rows[0] if k != "serial_no"]
    first = rows[0]
    differ = [k for k in keys if not _all_same(first[k], list(map(itemgetter(k), rows)))]
    same = {k: first[k] for k in keys if k not in differ}
    if len(rows) == 1 or not differ or (len(differ) == 1 and _text(differ[0])):
        yield from _in_lists(institution_code, rows, same, differ, extra)
        return
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(row[k] for k in differ), []).append(row)
    if len(groups) > MAX_GROUPS:
        yield _each_row(institution_code, rows, keys, extra)
        return
    for values, group in groups.items():
        shared = {**same, **dict(zip(differ, values, strict=True))}
        yield from _in_lists(institution_code, group, shared, [], extra)


def _all_same(first: Any, values: list[Any]) -> bool:
    """Whether every one of ``values`` is ``first`` or equal to it with the same type (``1`` is not
    ``True``), in C-level passes: ``count`` takes identity or equality, the types are compared apart."""
    return values.count(first) == len(values) and len(set(map(type, values))) == 1


def _text(key: str) -> bool:
    return isinstance(upload_row.c[key].type, String)


def _in_lists(
    institution_code: str,
    rows: Sequence[dict[str, Any]],
    same: dict[str, Any],
    differ: Sequence[str],
    extra: tuple[bool, bool],
) -> Iterator[Statement]:
    """``UPDATE … SET <same values>[, <column> = CASE serial_no …] WHERE serial_no IN (…)``."""
    column = differ[0] if differ else None
    for start in range(0, len(rows), IN_CHUNK):
        chunk = rows[start : start + IN_CHUNK]
        params: dict[str, Any] = {"b_institution": institution_code}
        params.update({f"v_{k}": v for k, v in same.items()})
        for i, row in enumerate(chunk):
            params[f"s_{i}"] = row["serial_no"]
            if column is not None:
                params[f"c_{i}"] = row[column]
        yield _in_statement(tuple(same), column, len(chunk), extra), [params]


@lru_cache(maxsize=128)
def _in_statement(same: tuple[str, ...], column: str | None, n: int, extra: tuple[bool, bool]) -> Update:
    """The statement of :func:`_in_lists` for ``n`` rows, built once (its values are all parameters)."""
    t = upload_row.c
    values: dict[str, Any] = {k: bindparam(f"v_{k}", type_=t[k].type) for k in same}
    values.update(_expressions(extra))
    serials = [bindparam(f"s_{i}", type_=t.serial_no.type) for i in range(n)]
    if column is not None:
        whens = [(serials[i], bindparam(f"c_{i}", type_=t[column].type)) for i in range(n)]
        values[column] = case(*whens, value=t.serial_no, else_=t[column])
    where = (t.institution_code == bindparam("b_institution"), t.serial_no.in_(serials))
    return update(upload_row).where(*where).values(values)


def _each_row(
    institution_code: str, rows: Sequence[dict[str, Any]], keys: Sequence[str], extra: tuple[bool, bool]
) -> Statement:
    """One statement, executed with each row's values."""
    params = [
        {"b_institution": institution_code, "b_serial": r["serial_no"], **{f"v_{k}": r[k] for k in keys}}
        for r in rows
    ]
    return _row_statement(tuple(keys), extra), params


@lru_cache(maxsize=32)
def _row_statement(keys: tuple[str, ...], extra: tuple[bool, bool]) -> Update:
    values: dict[str, Any] = {k: bindparam(f"v_{k}") for k in keys}
    values.update(_expressions(extra))
    t = upload_row.c
    where = (t.institution_code == bindparam("b_institution"), t.serial_no == bindparam("b_serial"))
    return update(upload_row).where(*where).values(values)


def _expressions(extra: tuple[bool, bool]) -> dict[str, Any]:
    """The values computed from the row itself: ``attempts + 1``, ``sent_hash = payload_hash``."""
    count_attempt, sent_is_payload = extra
    t = upload_row.c
    values: dict[str, Any] = {}
    if count_attempt:
        values["attempts"] = t.attempts + 1
    if sent_is_payload:
        values["sent_hash"] = t.payload_hash
    return values

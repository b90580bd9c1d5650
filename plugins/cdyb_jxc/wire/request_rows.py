"""The rows of a request (``inputXml``'s data part): each row's non-empty fields as elements, escaped as
element text (no Airflow). :func:`~cdyb_jxc.wire.codec.build_request` writes the rest of the document.

Written as text, not as an lxml tree, and a row per join of C loops: a request is built for every batch.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import chain, compress
from operator import itemgetter
from typing import Any

from cdyb_jxc.exceptions import CodecError
from cdyb_jxc.wire.profile import TransactionSpec
from cdyb_jxc.wire.rules import XML_ILLEGAL_RE

_SPECIAL_RE = re.compile("[&<>\r\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def escape(text: str) -> str:
    """Escape element text; a carriage return is kept as a character reference (parsers fold raw ones)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")


def row_elements(
    txn: TransactionSpec, rows: Sequence[Mapping[str, str | None]], row_open: str, row_close: str
) -> list[str]:
    """Each row's XML: ``row_open``, its non-empty fields in the profile's order, ``row_close``.

    :raises CodecError: a value holds a control character XML cannot hold (naming the row and field)
    """
    opens, closes, table = _row_table(txn, rows)
    join: Callable[[Iterable[Any]], str] = "".join  # a value compress() keeps is never None
    return [
        row_open + join(map(join, compress(zip(opens, values, closes, strict=True), values))) + row_close
        for values in table
    ]


def _row_table(
    txn: TransactionSpec, rows: Sequence[Mapping[str, str | None]]
) -> tuple[tuple[str, ...], tuple[str, ...], list[tuple[str | None, ...]]]:
    """The fields' open and close tags, and each row's values in the fields' order, escaped as element
    text: searched once for the whole batch, since most batches hold nothing to escape."""
    opens, closes, take = _field_tags(txn)
    try:
        table = [take(row) for row in rows]
    except KeyError:  # a mapping without every field (rows of row_to_wire have them all)
        names = [spec.name for spec in txn.fields]
        table = [tuple(row.get(name) for name in names) for row in rows]
    if _SPECIAL_RE.search("".join(filter(None, chain.from_iterable(table)))):
        table = [_escaped_row(txn, row, values) for row, values in zip(rows, table, strict=True)]
    return opens, closes, table


_FieldTags = tuple[tuple[str, ...], tuple[str, ...], Callable[[Any], Any]]
_TAGS: dict[int, tuple[TransactionSpec, _FieldTags]] = {}


def _field_tags(txn: TransactionSpec) -> _FieldTags:
    """Open tags, close tags and a getter of the values in the fields' order, built once per transaction
    (kept by identity: hashing a transaction's spec would cost more than building the row)."""
    cached = _TAGS.get(id(txn))
    if cached is None or cached[0] is not txn:
        names = [spec.name for spec in txn.fields]
        take = itemgetter(*names) if len(names) > 1 else lambda row: (row[names[0]],)
        tags = tuple(f"<{s.tag}>" for s in txn.fields), tuple(f"</{s.tag}>" for s in txn.fields), take
        if len(_TAGS) >= 64:
            _TAGS.clear()
        cached = _TAGS[id(txn)] = (txn, tags)
    return cached[1]


def _escaped_row(
    txn: TransactionSpec, row: Mapping[str, str | None], values: tuple[str | None, ...]
) -> tuple[str | None, ...]:
    """A row's values escaped; a control character XML cannot hold is refused, naming the row and field."""
    out: list[str | None] = []
    for spec, text in zip(txn.fields, values, strict=True):
        if text and _SPECIAL_RE.search(text):
            if XML_ILLEGAL_RE.search(text):
                raise CodecError(
                    f"row {row.get('serial_no')!r}: {spec.display} cannot be written as XML: "
                    "it contains a control character"
                )
            text = escape(text)
        out.append(text)
    return tuple(out)

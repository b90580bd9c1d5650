"""Parquet files, read with pyarrow in batches: typed values, the same header check as the other sources.

Like CSV and Excel files, a Parquet file is read whole once before anything is sent (every row group of the
profile's columns, one batch at a time): a corrupt page or a float too large to be exact in a text field
refuses the file before the first request. Text values go through the same null markers as the other
files (:func:`cdyb_jxc.wire.values.file_text`) in every field.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cdyb_jxc.exceptions import SourceDataError
from cdyb_jxc.upload.sources.header import check_columns
from cdyb_jxc.wire.profile import TransactionSpec
from cdyb_jxc.wire.values import file_text

Chunk = list[dict[str, Any]]
EXACT_LIMIT = 2**53
PREPASS_BATCH = 10_000  # rows per batch of the first pass: bounded memory whatever the row groups


def _read_errors() -> tuple[type[BaseException], ...]:
    import pyarrow as pa

    return (OSError, ValueError, pa.ArrowException)


def _open(path: Path) -> Any:
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except _read_errors() as err:
        raise SourceDataError(f"cannot read {path}: {err}") from err


def _stamp(path: Path) -> tuple[int, int]:
    info = os.stat(path)
    return info.st_size, info.st_mtime_ns


def _float_text(pfile: Any, txn: TransactionSpec, names: list[str]) -> list[str]:
    import pyarrow as pa

    schema = pfile.schema_arrow
    return [
        n
        for n in names
        if txn.by_name[n].type in ("C", "code") and pa.types.is_floating(schema.field(n).type)
    ]


def _prepass(pfile: Any, path: Path, txn: TransactionSpec, names: list[str]) -> None:
    """Decode every batch of the profile's columns once; a float text column must stay exact (2**53)."""
    import pyarrow.compute as pc

    floats = _float_text(pfile, txn, names)
    try:
        for batch in pfile.iter_batches(batch_size=PREPASS_BATCH, columns=names):
            for name in floats:
                biggest = pc.max(pc.abs(batch.column(name))).as_py()
                if biggest is not None and biggest > EXACT_LIMIT:
                    raise SourceDataError(
                        f"{path} column {name} holds the number {biggest!r} as a float, beyond what a float"
                        " keeps exactly (digits are already lost): write the column as text"
                    )
    except _read_errors() as err:
        raise SourceDataError(f"cannot read {path} (corrupt or truncated Parquet file): {err}") from err


def read_chunks(path: Path, txn: TransactionSpec, chunk_size: int) -> Iterator[Chunk]:
    """Check the header and every value (eagerly), then return the rows of the profile's columns."""
    stamp = _stamp(path)
    pfile = _open(path)
    header = check_columns(txn, pfile.schema_arrow.names, str(path))
    names = [name for name, _ in header.fields]
    _prepass(pfile, path, txn, names)
    return _chunks(path, stamp, txn, names, chunk_size)


def _value(value: Any, text_field: bool) -> Any:
    """One value as the other file readers give it: a null marker absent in every field."""
    if type(value) is str:
        return file_text(value)
    if text_field and type(value) is float and value.is_integer():
        return int(value)
    return value


def _chunks(
    path: Path, stamp: tuple[int, int], txn: TransactionSpec, names: list[str], chunk_size: int
) -> Iterator[Chunk]:
    if _stamp(path) != stamp:
        raise SourceDataError(f"{path} changed after it was checked: run again once it is complete")
    text = {n: txn.by_name[n].type in ("C", "code") for n in names}
    pfile = _open(path)
    try:
        for batch in pfile.iter_batches(batch_size=chunk_size, columns=names):
            yield [{n: _value(row[n], text[n]) for n in names} for row in batch.to_pylist()]
    except _read_errors() as err:  # only when the file changed between the passes
        raise SourceDataError(f"cannot read {path} (changed after it was checked?): {err}") from err

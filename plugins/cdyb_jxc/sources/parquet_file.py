"""Parquet files, read with pyarrow in batches: typed values, the same header check as the other sources."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cdyb_jxc.exceptions import SourceDataError
from cdyb_jxc.profile import TransactionSpec
from cdyb_jxc.sources.header import check_columns
from cdyb_jxc.values import file_text

Chunk = list[dict[str, Any]]
EXACT_LIMIT = 2**53


def _open(path: Path) -> Any:
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except (OSError, ValueError) as err:
        raise SourceDataError(f"cannot read {path}: {err}") from err


def _check_floats(pfile: Any, path: Path, txn: TransactionSpec, names: list[str]) -> None:
    """A float column holding a text field (a numeric 流水号) must still be exact: refused beyond 2**53."""
    import pyarrow as pa
    import pyarrow.compute as pc

    schema = pfile.schema_arrow
    floats = [
        n
        for n in names
        if txn.by_name[n].type in ("C", "code") and pa.types.is_floating(schema.field(n).type)
    ]
    for name in floats:
        for batch in pfile.iter_batches(columns=[name]):
            biggest = pc.max(pc.abs(batch.column(0))).as_py()
            if biggest is not None and biggest > EXACT_LIMIT:
                raise SourceDataError(
                    f"{path} column {name} holds the number {biggest!r} as a float, beyond what a float keeps"
                    " exactly (digits are already lost): write the column as text"
                )


def read_chunks(path: Path, txn: TransactionSpec, chunk_size: int) -> Iterator[Chunk]:
    """Check the header and float text columns (eagerly), then return the rows of the profile's columns."""
    pfile = _open(path)
    header = check_columns(txn, pfile.schema_arrow.names, str(path))
    names = [name for name, _ in header.fields]
    _check_floats(pfile, path, txn, names)
    return _chunks(pfile, txn, names, chunk_size)


def _chunks(pfile: Any, txn: TransactionSpec, names: list[str], chunk_size: int) -> Iterator[Chunk]:
    text = {n for n in names if txn.by_name[n].type in ("C", "code")}
    for batch in pfile.iter_batches(batch_size=chunk_size, columns=names):
        rows = batch.to_pylist()
        for row in rows:
            for name in text:
                value = row[name]
                if type(value) is str:
                    row[name] = file_text(value)
                elif type(value) is float and value.is_integer():
                    row[name] = int(value)
        yield rows

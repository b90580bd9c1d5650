"""Source readers that stream rows in chunks: CSV, Parquet, Excel files and DB-API cursors (no Airflow).

Columns are the profile's logical names. Missing required columns stop everything before a row is sent.
"""

from __future__ import annotations

import importlib
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from cdyb_jxc.exceptions import SourceDataError
from cdyb_jxc.profile import TransactionSpec

Chunk = list[dict[str, Any]]
DEFAULT_CHUNK_SIZE = 5000


def check_columns(txn: TransactionSpec, columns: Sequence[str], where: str) -> None:
    """Raise :class:`SourceDataError` naming every required column the source lacks."""
    present = set(columns)
    missing = [name for name in txn.required_names if name not in present]
    if missing:
        raise SourceDataError(
            f"{where} lacks required column(s) for {txn.code} {txn.name}: {', '.join(missing)}"
            f" (columns are the profile's logical names; found: {', '.join(columns) or 'none'})"
        )


def _csv(path: Path, txn: TransactionSpec, chunk_size: int) -> Iterator[Chunk]:
    import pandas as pd

    try:
        reader = pd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,
            chunksize=chunk_size,
            encoding="utf-8-sig",
            skipinitialspace=False,
        )
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise SourceDataError(f"cannot read {path}: {err}") from err
    with reader:
        first = True
        try:
            for frame in reader:
                if first:
                    check_columns(txn, list(frame.columns), str(path))
                    first = False
                yield frame.to_dict("records")
        except pd.errors.EmptyDataError as err:
            raise SourceDataError(f"{path} is empty") from err
        except (ValueError, UnicodeDecodeError) as err:
            raise SourceDataError(f"cannot read {path}: {err}") from err


def _parquet(path: Path, txn: TransactionSpec, chunk_size: int) -> Iterator[Chunk]:
    import pyarrow.parquet as pq

    try:
        pfile = pq.ParquetFile(path)
    except (OSError, ValueError) as err:
        raise SourceDataError(f"cannot read {path}: {err}") from err
    check_columns(txn, pfile.schema_arrow.names, str(path))
    for batch in pfile.iter_batches(batch_size=chunk_size):
        yield batch.to_pylist()


def _excel(path: Path, txn: TransactionSpec, chunk_size: int) -> Iterator[Chunk]:
    from openpyxl import load_workbook

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as err:
        raise SourceDataError(f"cannot read {path}: {err}") from err
    try:
        rows = book.worksheets[0].iter_rows(values_only=True)
        header = next(rows, None)
        if header is None:
            raise SourceDataError(f"{path} is empty")
        columns = [str(c).strip() if c is not None else "" for c in header]
        check_columns(txn, columns, str(path))
        chunk: Chunk = []
        for values in rows:
            if all(v is None for v in values):
                continue
            chunk.append(dict(zip(columns, values, strict=False)))
            if len(chunk) >= chunk_size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk
    finally:
        book.close()


READERS = {
    ".csv": _csv,
    ".txt": _csv,
    ".parquet": _parquet,
    ".pq": _parquet,
    ".xlsx": _excel,
    ".xlsm": _excel,
}


def iter_file_chunks(
    path: str | Path, txn: TransactionSpec, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> Iterator[Chunk]:
    """Stream a CSV (UTF-8, header row), Parquet or Excel file in chunks of dicts."""
    file = Path(path)
    reader = READERS.get(file.suffix.lower())
    if reader is None:
        raise SourceDataError(f"{file}: unsupported file type {file.suffix!r} (use .csv, .parquet or .xlsx)")
    if not file.is_file():
        raise SourceDataError(f"source file {file} does not exist")
    return reader(file, txn, chunk_size)


def iter_cursor_chunks(
    connection: Any,
    sql: str,
    txn: TransactionSpec,
    parameters: Mapping[str, Any] | Sequence[Any] | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> Iterator[Chunk]:
    """Stream a query's rows from a DB-API connection: a server-side cursor on PostgreSQL (psycopg2), an
    unbuffered one on MySQL/MariaDB (mysqlclient, PyMySQL); other drivers' ``fetchmany``."""
    cursor = _streaming_cursor(connection, chunk_size)
    try:
        if parameters:
            cursor.execute(sql, parameters)
        else:
            cursor.execute(sql)
        first = cursor.fetchmany(chunk_size)
        if cursor.description is None:
            raise SourceDataError("the source query returned no result set")
        columns = [d[0] for d in cursor.description]
        check_columns(txn, columns, "source query")
        rows = first
        while rows:
            yield [dict(zip(columns, r, strict=False)) for r in rows]
            rows = cursor.fetchmany(chunk_size)
    finally:
        cursor.close()


def _streaming_cursor(connection: Any, chunk_size: int) -> Any:
    """A cursor that does not pull the whole result into client memory, where the driver has one."""
    module = type(connection).__module__
    if module.startswith("psycopg2"):
        cursor = connection.cursor(name="cdyb_jxc_source")
        cursor.itersize = chunk_size
        return cursor
    if module.startswith(("pymysql", "MySQLdb")):
        # their default cursors read the whole result set on execute()
        cursors = importlib.import_module(module.split(".", 1)[0] + ".cursors")
        return connection.cursor(cursors.SSCursor)
    return connection.cursor()

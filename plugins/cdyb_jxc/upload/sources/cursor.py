"""DB-API cursors, streamed: a server-side cursor on PostgreSQL, an unbuffered one on MySQL/MariaDB."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from cdyb_jxc.exceptions import SourceDataError
from cdyb_jxc.upload.sources.header import check_columns
from cdyb_jxc.wire.profile import TransactionSpec

Chunk = list[dict[str, Any]]


def iter_cursor_chunks(
    connection: Any,
    sql: str,
    txn: TransactionSpec,
    parameters: Mapping[str, Any] | Sequence[Any] | None = None,
    chunk_size: int = 5000,
) -> Iterator[Chunk]:
    """Stream a query's rows from a DB-API connection: a server-side cursor on PostgreSQL (psycopg2), an
    unbuffered one on MySQL/MariaDB (mysqlclient, PyMySQL); other drivers' ``fetchmany``.

    Result columns go through the same header check as files: a column name repeated (``SELECT
    a.serial_no, b.serial_no``) or matching a logical name only after case-folding refuses the query before
    anything is sent.
    """
    cursor = _streaming_cursor(connection, chunk_size)
    try:
        if parameters:
            cursor.execute(sql, parameters)
        else:
            cursor.execute(sql)
        first = cursor.fetchmany(chunk_size)
        if cursor.description is None:
            raise SourceDataError("the source query returned no result set")
        header = check_columns(txn, [d[0] for d in cursor.description], "source query")
        fields = header.fields
        rows = first
        while rows:
            yield [{name: r[i] for name, i in fields} for r in rows]
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

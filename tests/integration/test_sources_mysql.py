"""SQL sources on MySQL/MariaDB (running on 127.0.0.1:3306) are streamed, not read whole into memory."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pymysql
import pymysql.cursors
import pytest

from cdyb_jxc.upload.sources import _streaming_cursor, iter_cursor_chunks
from tests.conftest import outbound_row

ROWS = 5_000


@pytest.fixture
def mysql_table() -> Iterator[tuple[pymysql.connections.Connection, str]]:
    conn = pymysql.connect(
        host=os.environ.get("CDYB_JXC_TEST_MYSQL_HOST", "127.0.0.1"),
        user="root",
        password="",
        database="test",
        charset="utf8mb4",
    )
    table = f"his_outbound_{uuid.uuid4().hex[:8]}"
    columns = list(outbound_row("x"))
    with conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {table} ({', '.join(f'{c} VARCHAR(200)' for c in columns)})")
        cur.executemany(
            f"INSERT INTO {table} VALUES ({', '.join(['%s'] * len(columns))})",
            [tuple(outbound_row(f"CK{n:06d}", n % 20 + 1).values()) for n in range(ROWS)],
        )
    conn.commit()
    yield conn, table
    with conn.cursor() as cur:
        cur.execute(f"DROP TABLE {table}")
    conn.close()


def test_mysql_source_is_read_through_an_unbuffered_cursor_in_chunks(mysql_table, profile):
    conn, table = mysql_table
    assert isinstance(_streaming_cursor(conn, 1000), pymysql.cursors.SSCursor)
    txn = profile.transaction("outbound")
    sizes, serials = [], []
    for chunk in iter_cursor_chunks(conn, f"SELECT * FROM {table} ORDER BY serial_no", txn, chunk_size=1000):
        sizes.append(len(chunk))
        serials += [row["serial_no"] for row in chunk]
    assert sizes == [1000] * 5
    assert serials == [f"CK{n:06d}" for n in range(ROWS)]
    assert chunk[-1]["hospital_item_name"] == outbound_row("x", (ROWS - 1) % 20 + 1)["hospital_item_name"]

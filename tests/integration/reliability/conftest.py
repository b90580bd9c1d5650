"""Shared pieces of the bad-input corpus (``test_bad_input_corpus_*.py``), one module per input it feeds.

Every corpus module follows the same rules: each case feeds one bad thing through the real code path and
asserts the exact text the user reads; row-level cases check that no source row is lost (every 流水号 ends
in the ledger in a visible state with its reason); whole-input errors stop before anything is sent
(``simulator.requests == 0``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from cdyb_jxc.ledger import ACCEPTED, DUPLICATE_CONFLICT, IN_DOUBT, PENDING, REJECTED, Ledger
from cdyb_jxc.wire.client import CentreClient
from cdyb_jxc.wire.profile import Profile
from tests.conftest import (
    INSTITUTION,
    SECRET,
    USER,
    inbound_row,
    init_row,
    outbound_row,
    stock_row,
    write_csv,
)

BUILDERS: dict[str, Callable[..., dict[str, str]]] = {
    "init": init_row,
    "inbound": inbound_row,
    "outbound": outbound_row,
    "stock": stock_row,
}
VISIBLE_STATES = {ACCEPTED, REJECTED, IN_DOUBT, PENDING, DUPLICATE_CONFLICT}
UNREACHABLE = "http://127.0.0.1:9/services/SjcjService"
OUTBOUND_COLUMNS = (
    "insurance_item_code, hospital_item_name, mapping_serial_no, split_flag, unit, outbound_type, "
    "sale_price, event_time"
)
FEW_COLUMNS = [{"serial_no": "X1", "quantity": "1"}]
LACKS = (
    "{path} lacks required column(s) for JXC003 药品出库信息上传: "
    + OUTBOUND_COLUMNS
    + " (columns are the profile's logical names; found: serial_no, quantity)"
)
CSV_HINT = " (an unquoted comma, or a value missing?)"
RAGGED = "CK9,XA000001,x,M0001,0,盒,21,12.5,2,2026-11-20 10:00:00,extra"


def csv_text(rows: list[dict[str, Any]], tmp_path: Path) -> str:
    return write_csv(tmp_path / "template.csv", rows).read_text(encoding="utf-8")


def long_csv(tmp_path: Path, bad: str | None, rows: int = 7000, at_line: int = 6000) -> Path:
    """``out.csv`` of ``rows`` good outbound rows, line ``at_line`` replaced by ``bad`` (None: all good)."""
    lines = csv_text([outbound_row(f"CK{i:05d}", (i % 8) + 1) for i in range(rows)], tmp_path).splitlines()
    if bad is not None:
        lines[at_line - 1] = bad
    src = tmp_path / "out.csv"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return src


def write_xlsx(
    path: Path, rows: list[dict[str, Any]] | None, sheets: dict[str, list[list[Any]]] | None = None
) -> Path:
    """A workbook: sheet 出库 holds ``rows`` under their keys (None: the sheet is empty), then ``sheets``."""
    from openpyxl import Workbook

    book = Workbook()
    book.active.title = "出库"
    if rows:
        book.active.append(list(rows[0]))
        for row in rows:
            book.active.append(list(row.values()))
    for title, extra in (sheets or {}).items():
        sheet = book.create_sheet(title)
        for values in extra:
            sheet.append(values)
    book.save(path)
    return path


def sqlite_ledger_url(tmp_path: Path) -> str:
    """These cases need no second database: SQLite only.

    A module opts in with ``ledger_url = pytest.fixture(sqlite_ledger_url)``, which overrides the SQLite and
    PostgreSQL ``ledger_url`` of ``tests/integration/conftest.py`` for that module alone.
    """
    return f"sqlite:///{tmp_path / 'ledger.db'}"


def centre_client(profile: Profile, endpoint: str, timeout: float = 3, **kw: Any) -> CentreClient:
    """A client of ``INSTITUTION`` on the test environment, talking to ``endpoint``."""
    return CentreClient(
        profile,
        endpoint=endpoint,
        user=USER,
        verification_code=SECRET,
        institution_code=INSTITUTION,
        timeout=timeout,
        **kw,
    )


def ledger_rows(ledger: Ledger) -> dict[str, dict[str, Any]]:
    return {r["serial_no"]: r for r in ledger.iter_rows()}


def assert_no_row_lost(ledger: Ledger, serials: list[str]) -> dict[str, dict[str, Any]]:
    """Every source 流水号 is in the ledger, in a visible state, and any row not accepted says why."""
    rows = ledger_rows(ledger)
    for serial in serials:
        assert serial in rows, f"source row {serial} is missing from the ledger"
        row = rows[serial]
        assert row["state"] in VISIBLE_STATES, row
        if row["state"] != ACCEPTED:
            assert row["detail"], row
        if row["state"] in (REJECTED, DUPLICATE_CONFLICT):
            assert row["category"], row
    return rows


def cli_error_line(err: str) -> str:
    """The one line the upload command prints about the error (stderr may also hold log lines)."""
    lines = [line for line in err.splitlines() if line.startswith("cdyb-jxc: ")]
    assert len(lines) == 1, err
    return lines[0]


def conn_env(monkeypatch: pytest.MonkeyPatch, host: str, **extra: Any) -> dict[str, str]:
    """``cdyb_jxc_default`` at ``host`` as an AIRFLOW_CONN_* variable (set, and returned for a subprocess)."""
    conn = {
        "conn_type": "cdyb_jxc",
        "host": host,
        "login": USER,
        "password": SECRET,
        "extra": {"institution_code": INSTITUTION, "environment": "test", "timeout": 3, **extra},
    }
    monkeypatch.setenv("AIRFLOW_CONN_CDYB_JXC_DEFAULT", json.dumps(conn))
    return {"AIRFLOW_CONN_CDYB_JXC_DEFAULT": json.dumps(conn)}


class Rogue(ThreadingHTTPServer):
    """A tiny HTTP server on loopback answering every POST with one canned reply."""

    daemon_threads = True
    status = 200
    content_type = "text/xml; charset=UTF-8"
    body = b""
    requests = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/services/SjcjService"


class _RogueHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Rogue

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests += 1
        self.send_response(self.server.status)
        self.send_header("Content-Type", self.server.content_type)
        self.send_header("Content-Length", str(len(self.server.body)))
        self.end_headers()
        self.wfile.write(self.server.body)


@pytest.fixture
def rogue() -> Iterator[Rogue]:
    server = Rogue(("127.0.0.1", 0), _RogueHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)

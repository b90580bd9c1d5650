"""Bad-input corpus: every kind of bad input a deployment meets, and the exact message the user then sees.

Each case feeds one bad thing (a profile, a connection, a source file, a source row, a server reply) through
the real code path and asserts the exact text of the error, exception or ledger ``detail``. Row-level cases
also check that no source row is lost: every 流水号 ends in the ledger in a visible state with its reason.
Whole-source errors must stop before anything is sent (``simulator.requests == 0``).
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import threading
import tomllib
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from cdyb_jxc.cli import main as cli_main
from cdyb_jxc.exceptions import (
    CallRejectedError,
    CodecError,
    ConnectionConfigError,
    InDoubtError,
    ProfileError,
    SourceDataError,
    TransportError,
    UnsafeXmlError,
)
from cdyb_jxc.ledger import (
    ACCEPTED,
    DUPLICATE_CONFLICT,
    IN_DOUBT,
    PENDING,
    REJECTED,
    Ledger,
)
from cdyb_jxc.simulator.server import response_envelope
from cdyb_jxc.upload.engine import Uploader
from cdyb_jxc.upload.sources import iter_file_chunks
from cdyb_jxc.wire.client import CentreClient
from cdyb_jxc.wire.codec import parse_reply
from cdyb_jxc.wire.connection import build_settings
from cdyb_jxc.wire.profile import Profile, load_profile, parse_profile
from cdyb_jxc.wire.rules import MappingEntry
from cdyb_jxc.wire.values import row_to_wire
from cdyb_jxc.wire.xmlsafe import MAX_DOCUMENT_CHARS
from tests.conftest import (
    INSTITUTION,
    PROD_SECRET,
    SECRET,
    USER,
    inbound_row,
    init_row,
    make_uploader,
    outbound_row,
    stock_row,
    write_csv,
)

# ---------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------

BUILDERS: dict[str, Callable[..., dict[str, str]]] = {
    "init": init_row,
    "inbound": inbound_row,
    "outbound": outbound_row,
    "stock": stock_row,
}
VISIBLE_STATES = {ACCEPTED, REJECTED, IN_DOUBT, PENDING, DUPLICATE_CONFLICT}
UNREACHABLE = "http://127.0.0.1:9/services/SjcjService"
# A day ahead of the centre's clock (Asia/Shanghai): R7 rejects it on the server side.
FUTURE = (datetime.now(timezone(timedelta(hours=8))) + timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S")
OUTBOUND_COLUMNS = (
    "insurance_item_code, hospital_item_name, mapping_serial_no, split_flag, unit, outbound_type, "
    "sale_price, event_time"
)


def _passwd_marker() -> str:
    """A line of /etc/passwd: if it ever shows up in a message or the ledger, an entity was resolved."""
    try:
        first = Path("/etc/passwd").read_text(encoding="utf-8").splitlines()[0]
    except (OSError, IndexError):
        return "root:x:0:0:"
    return first or "root:x:0:0:"


PASSWD = _passwd_marker()


def _client(profile: Profile, endpoint: str) -> CentreClient:
    return CentreClient(
        profile,
        endpoint=endpoint,
        user=USER,
        verification_code=SECRET,
        institution_code=INSTITUTION,
        timeout=3,
    )


_uploader = make_uploader


def _ledger_rows(ledger: Ledger) -> dict[str, dict[str, Any]]:
    return {r["serial_no"]: r for r in ledger.iter_rows()}


def _assert_no_row_lost(ledger: Ledger, serials: list[str]) -> dict[str, dict[str, Any]]:
    """Every source 流水号 is in the ledger, in a visible state, and any row not accepted says why."""
    rows = _ledger_rows(ledger)
    for serial in serials:
        assert serial in rows, f"source row {serial} is missing from the ledger"
        row = rows[serial]
        assert row["state"] in VISIBLE_STATES, row
        if row["state"] != ACCEPTED:
            assert row["detail"], row
        if row["state"] in (REJECTED, DUPLICATE_CONFLICT):
            assert row["category"], row
    return rows


def _cli_error(err: str) -> str:
    """The one line the upload command prints about the error (stderr may also hold log lines)."""
    lines = [line for line in err.splitlines() if line.startswith("cdyb-jxc: ")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def ledger_url(tmp_path: Path) -> str:
    """These cases need no second database: SQLite only."""
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture
def client(profile: Profile, simulator: Any) -> Iterator[CentreClient]:
    c = _client(profile, simulator.url)
    yield c
    c.close()


class _Rogue(ThreadingHTTPServer):
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
    server: _Rogue

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
def rogue() -> Iterator[_Rogue]:
    server = _Rogue(("127.0.0.1", 0), _RogueHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _envelope(profile: Profile, inner: str) -> bytes:
    """A proper SOAP reply envelope carrying ``inner`` as the ``return`` string."""
    return response_envelope(profile, inner)


XXE_INNER = (
    '<?xml version="1.0" encoding="GBK"?>'
    '<!DOCTYPE output [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    "<output><retcode>-1</retcode><retmsg>&xxe;</retmsg></output>"
)
BILLION_LAUGHS = (
    '<?xml version="1.0" encoding="GBK"?><!DOCTYPE output [<!ENTITY lol0 "lol">'
    + "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
    + "]><output><retcode>1</retcode><retmsg>&lol9;</retmsg></output>"
)
XXE_ENVELOPE = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<!DOCTYPE Envelope [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    b'<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>'
    b'<ns2:callBusinessResponse xmlns:ns2="http://webservice.sjcj.cdyb/"><return>&xxe;</return>'
    b"</ns2:callBusinessResponse></soap:Body></soap:Envelope>"
)
HUGE_INNER = (
    '<?xml version="1.0" encoding="GBK"?><output><retcode>1</retcode><retmsg>'
    + "x" * (MAX_DOCUMENT_CHARS + 1)
    + "</retmsg></output>"
)

# ---------------------------------------------------------------------------------------------------------
# 1. malformed profile
# ---------------------------------------------------------------------------------------------------------

_DEFAULT_RAW = tomllib.loads(
    resources.files("cdyb_jxc").joinpath("data/default_profile.toml").read_text(encoding="utf-8")
)
_DROP = object()


def _edit(path: str, value: Any = _DROP, *, append: bool = False) -> Callable[[dict[str, Any]], None]:
    """A profile edit at a dotted path (list items by index): set, drop (no value) or append."""

    def apply(raw: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = raw
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if append:
            node[last].append(value)
        elif value is _DROP:
            del node[last]
        else:
            node[int(last) if isinstance(node, list) else last] = value

    return apply


PROFILE_CASES = [
    pytest.param(
        _edit("service.batch_limit"), "profile key service.batch_limit is missing", id="missing-batch-limit"
    ),
    pytest.param(
        _edit("service.batch_limit", "100"),
        "profile key service.batch_limit must be an integer, not '100' (text)",
        id="batch-limit-is-text",
    ),
    pytest.param(
        _edit("service.batch_limit", 0),
        "profile key service.batch_limit must be positive",
        id="batch-limit-zero",
    ),
    pytest.param(
        _edit("reply.retcode", 1),
        "profile key reply.retcode must be text, not 1 (an integer)",
        id="reply-tag-not-text",
    ),
    pytest.param(_edit("categories.charset"), "profile key categories.charset is missing", id="no-category"),
    pytest.param(
        _edit("fields.quantity.type", "X"),
        "profile key fields.quantity.type must be one of C, N, D, DT, code, not 'X'",
        id="unknown-field-type",
    ),
    pytest.param(
        _edit("fields.serial_no.length"),
        "profile key fields.serial_no.length is missing",
        id="text-field-without-length",
    ),
    pytest.param(
        _edit("fields.quantity.scale", 16),
        "profile key fields.quantity.scale must be between 0 and precision-1",
        id="scale-not-below-precision",
    ),
    pytest.param(
        _edit("fields.quantity.min", "abc"),
        "profile key fields.quantity.min must be a number",
        id="min-not-a-number",
    ),
    pytest.param(
        _edit("fields.quantity.colour", "red"),
        "profile key fields.quantity.colour is not a known field setting",
        id="unknown-field-setting",
    ),
    pytest.param(
        _edit("fields.outbound_type.codes", {}),
        "profile key fields.outbound_type.codes must map code strings to names",
        id="empty-code-set",
    ),
    pytest.param(
        _edit("transactions.stock"), "profile key transactions.stock is missing", id="missing-transaction"
    ),
    pytest.param(
        _edit("transactions.outbound.fields.0.required", "maybe"),
        "profile key transactions.outbound.fields[0].required must be Y, N or C, not 'maybe'",
        id="bad-required-level",
    ),
    pytest.param(
        _edit("transactions.outbound.fields", {"name": "nonexistent", "required": "N"}, append=True),
        "profile key transactions.outbound.fields[19].name names an undefined field 'nonexistent'",
        id="undefined-field-in-transaction",
    ),
]


@pytest.mark.parametrize(("edit", "message"), PROFILE_CASES)
def test_malformed_profile_names_the_bad_key(edit, message):
    raw = copy.deepcopy(_DEFAULT_RAW)
    edit(raw)
    with pytest.raises(ProfileError) as info:
        parse_profile(raw, "custom.toml")
    assert str(info.value) == message


PROFILE_FILE_CASES = [
    pytest.param(
        b"[service\nbatch_limit = 100\n",
        "profile file {path} is not valid TOML: Expected ']' at the end of a table declaration"
        " (at line 1, column 9)",
        id="bad-toml",
    ),
    pytest.param(
        "name = '成都'\n".encode("gbk"),
        "profile file {path} cannot be read as UTF-8: 'utf-8' codec can't decode byte 0xb3 in position 8:"
        " invalid start byte",
        id="profile-saved-as-gbk",
    ),
    pytest.param(None, "profile file {path} does not exist", id="profile-file-missing"),
]


@pytest.mark.parametrize(("content", "message"), PROFILE_FILE_CASES)
def test_unusable_profile_file_names_the_file(tmp_path, content, message):
    path = tmp_path / "profile.toml"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ProfileError) as info:
        load_profile(path)
    assert str(info.value) == message.format(path=path)


# ---------------------------------------------------------------------------------------------------------
# 2. bad connection settings
# ---------------------------------------------------------------------------------------------------------

_CONN = {
    "conn_id": "cdyb_jxc_default",
    "host": "http://127.0.0.1:8900/services/SjcjService",
    "login": USER,
    "password": SECRET,
    "extra": {"institution_code": INSTITUTION},
    "conn_type": "cdyb_jxc",
}
_WHERE = "connection 'cdyb_jxc_default': "

SETTINGS_CASES = [
    pytest.param({"host": None}, "host must be the endpoint URL (http:// or https://), got ''", id="no-host"),
    pytest.param(
        {"host": "127.0.0.1:8900/services/SjcjService"},
        "host must be the endpoint URL (http:// or https://), got '127.0.0.1:8900/services/SjcjService'",
        id="host-without-scheme",
    ),
    pytest.param(
        {"host": "ftp://centre/services"},
        "host must be the endpoint URL (http:// or https://), got 'ftp://centre/services'",
        id="host-wrong-scheme",
    ),
    pytest.param({"login": ""}, "login (交易访问用户) is empty", id="no-login"),
    pytest.param({"password": None}, "password (交易访问验证码) is empty", id="no-password"),
    pytest.param({"extra": {}}, "extra 'institution_code' (定点机构编码) is required", id="no-institution"),
    pytest.param(
        {"extra": {"institution_code": INSTITUTION, "environment": "production"}},
        "extra 'environment' must be test or prod, not 'production'",
        id="unknown-environment",
    ),
    pytest.param(
        {"extra": {"institution_code": INSTITUTION, "timeout": "abc"}},
        "extra 'timeout' must be a number of seconds",
        id="timeout-text",
    ),
    pytest.param(
        {"extra": {"institution_code": INSTITUTION, "timeout": 0}},
        "extra 'timeout' must be between 0 and 3600 seconds, not 0.0",
        id="timeout-zero",
    ),
    pytest.param(
        {"extra": {"institution_code": INSTITUTION, "batch_limit": "ten"}},
        "extra 'batch_limit' must be a whole number, not 'ten'",
        id="batch-limit-text",
    ),
    pytest.param(
        {"extra": {"institution_code": INSTITUTION, "batch_limit": -5}},
        "extra 'batch_limit' must be positive, not -5",
        id="batch-limit-negative",
    ),
    pytest.param(
        {"extra": {"institution_code": INSTITUTION, "verify": "maybe"}},
        "extra 'verify' must be true or false, not 'maybe'",
        id="verify-not-boolean",
    ),
]


@pytest.mark.parametrize(("override", "message"), SETTINGS_CASES)
def test_bad_connection_settings_name_connection_and_field(override, message):
    with pytest.raises(ConnectionConfigError) as info:
        build_settings(**{**_CONN, **override})
    assert str(info.value) == _WHERE + message


# ---------------------------------------------------------------------------------------------------------
# 3. whole-source errors: stopped before anything is sent
# ---------------------------------------------------------------------------------------------------------


def _write_xlsx(path: Path, rows: list[dict[str, Any]] | None) -> None:
    from openpyxl import Workbook

    book = Workbook()
    if rows:
        sheet = book.active
        sheet.append(list(rows[0]))
        for row in rows:
            sheet.append(list(row.values()))
    book.save(path)


def _write_parquet(path: Path, rows: list[dict[str, Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)


_FEW_COLUMNS = [{"serial_no": "X1", "quantity": "1"}]
_LACKS = (
    "{path} lacks required column(s) for JXC003 药品出库信息上传: "
    + OUTBOUND_COLUMNS
    + " (columns are the profile's logical names; found: serial_no, quantity)"
)

SOURCE_CASES = [
    # (name, writer, exact message or prefix, exact?)
    pytest.param("out.csv", lambda p: write_csv(p, _FEW_COLUMNS), _LACKS, True, id="csv-missing-columns"),
    pytest.param(
        "out.csv",
        lambda p: p.write_text("serial_no,quantity\n", encoding="utf-8"),
        _LACKS,
        True,
        id="csv-header-only-missing-columns",
    ),
    pytest.param("out.xlsx", lambda p: _write_xlsx(p, _FEW_COLUMNS), _LACKS, True, id="xlsx-missing-columns"),
    pytest.param(
        "out.parquet", lambda p: _write_parquet(p, _FEW_COLUMNS), _LACKS, True, id="parquet-missing-columns"
    ),
    pytest.param("out.csv", lambda p: p.write_bytes(b""), "{path} is empty", True, id="empty-csv"),
    pytest.param("out.xlsx", lambda p: _write_xlsx(p, None), "{path} is empty", True, id="empty-xlsx"),
    pytest.param(
        "out.json",
        lambda p: p.write_text("[]", encoding="utf-8"),
        "{path}: unsupported file type '.json' (use .csv, .parquet or .xlsx)",
        True,
        id="unsupported-file-type",
    ),
    pytest.param(
        "out.xls",
        lambda p: p.write_bytes(b"\xd0\xcf\x11\xe0"),
        "{path}: unsupported file type '.xls' (use .csv, .parquet or .xlsx)",
        True,
        id="old-excel-file-type",
    ),
    pytest.param("out.csv", None, "source file {path} does not exist", True, id="file-does-not-exist"),
    pytest.param(
        "out.csv",
        lambda p: p.write_bytes(
            write_csv(p, [outbound_row("CK1")]).read_text(encoding="utf-8").encode("gbk")
        ),
        "{path} is not UTF-8 (undecodable byte 0xb0 at line 2); it reads as GB18030: pass --encoding gb18030"
        " (operator argument encoding='gb18030')",
        True,
        id="csv-saved-as-gbk",
    ),
    pytest.param(
        "out.csv",
        lambda p: p.write_text(
            write_csv(p, [outbound_row("CK1")]).read_text(encoding="utf-8") + '"CK2,1\n', encoding="utf-8"
        ),
        "{path} line 3: a quoted value opened there is never closed (malformed CSV)",
        True,
        id="csv-unterminated-quote",
    ),
    pytest.param(
        "out.xlsx",
        lambda p: p.write_text("<html><table><tr><td>HIS export</td></tr></table></html>", encoding="utf-8"),
        "cannot read {path}: File is not a zip file",
        True,
        id="xlsx-that-is-not-excel",
    ),
    pytest.param(
        "out.parquet",
        lambda p: p.write_text("serial_no\nCK1\n", encoding="utf-8"),
        "cannot read {path}: ",
        False,
        id="parquet-that-is-not-parquet",
    ),
]


@pytest.mark.parametrize(("name", "writer", "message", "exact"), SOURCE_CASES)
def test_whole_source_error_stops_before_sending(
    profile, simulator, client, ledger, tmp_path, name, writer, message, exact
):
    path = tmp_path / name
    if writer is not None:
        writer(path)
    txn = profile.transaction("outbound")
    with pytest.raises(SourceDataError) as info:
        _uploader(profile, client, ledger).run(iter_file_chunks(path, txn))
    expected = message.format(path=path)
    if exact:
        assert str(info.value) == expected
    else:
        assert str(info.value).startswith(expected)
        assert len(str(info.value)) > len(expected)  # the reader's own reason follows
    assert simulator.requests == 0
    assert _ledger_rows(ledger) == {}


# ---------------------------------------------------------------------------------------------------------
# 4. row-level errors: every row ends in the ledger with category, field and detail
# ---------------------------------------------------------------------------------------------------------

UNMAPPED_LOCALLY = {"M0001": MappingEntry("XA000001")}


def row_case(
    case_id: str,
    txn: str,
    overrides: dict[str, str],
    category: str,
    field: str,
    detail: str,
    *,
    held_back: bool = True,
    registry: dict[str, MappingEntry] | None = None,
    on_the_wire: bool = True,
) -> Any:
    """One bad source row; ``held_back`` rows never leave the client, the others are rejected by the centre.

    A held-back row that can be put on the wire is also sent to the centre directly, which must answer
    the very same text (SPEC §7: hold back "with the same reason text").
    """
    centre_check = held_back and registry is None and on_the_wire
    return pytest.param(
        txn, overrides, category, field, detail, held_back, registry, centre_check, id=case_id
    )


ROW_CASES = [
    # wrong types
    row_case(
        "text-in-number",
        "outbound",
        {"quantity": "abc"},
        "字段校验失败",
        "quantity",
        "出库数量(akc226)不是合法的数值: 'abc'",
    ),
    row_case(
        "number-with-exponent",
        "outbound",
        {"quantity": "1e3"},
        "字段校验失败",
        "quantity",
        "出库数量(akc226)不是合法的数值: '1e3'",
    ),
    row_case(
        "too-many-decimals",
        "outbound",
        {"sale_price": "1.23456"},
        "字段校验失败",
        "sale_price",
        "出库单价(akc225)小数位数超过4位: '1.23456'",
    ),
    row_case(
        "datetime-month-13",
        "outbound",
        {"event_time": "2026-13-01 10:00:00"},
        "字段校验失败",
        "event_time",
        "出库时间(aae036)不是合法的yyyy-MM-dd HH:mm:ss: '2026-13-01 10:00:00'",
    ),
    row_case(
        "datetime-wrong-shape",
        "outbound",
        {"event_time": "2026/11/20 10:00"},
        "字段校验失败",
        "event_time",
        "出库时间(aae036)不是合法的yyyy-MM-dd HH:mm:ss: '2026/11/20 10:00'",
    ),
    row_case(
        "date-where-datetime-needed",
        "outbound",
        {"event_time": "2026-11-20"},
        "字段校验失败",
        "event_time",
        "出库时间(aae036)不是合法的yyyy-MM-dd HH:mm:ss: '2026-11-20'",
    ),
    row_case(
        "date-feb-30",
        "outbound",
        {"expiry_date": "2028-02-30"},
        "字段校验失败",
        "expiry_date",
        "有效期止(yxqz)不是合法的yyyy-MM-dd: '2028-02-30'",
    ),
    row_case(
        "stock-date-compact",
        "stock",
        {"stock_date": "20261120"},
        "字段校验失败",
        "stock_date",
        "盘存日期(pcrq)不是合法的yyyy-MM-dd: '20261120'",
    ),
    # negative or zero quantities, negative prices
    row_case(
        "zero-quantity",
        "outbound",
        {"quantity": "0"},
        "字段校验失败",
        "quantity",
        "出库数量(akc226)必须大于0: '0'",
    ),
    row_case(
        "negative-quantity",
        "outbound",
        {"quantity": "-2"},
        "字段校验失败",
        "quantity",
        "出库数量(akc226)必须大于0: '-2'",
    ),
    row_case(
        "negative-price",
        "outbound",
        {"sale_price": "-0.01"},
        "字段校验失败",
        "sale_price",
        "出库单价(akc225)不能小于0: '-0.01'",
    ),
    row_case(
        "init-zero-quantity",
        "init",
        {"quantity": "0"},
        "字段校验失败",
        "quantity",
        "采购数量(akc226)必须大于0: '0'",
    ),
    row_case(
        "init-negative-price",
        "init",
        {"purchase_price": "-1"},
        "字段校验失败",
        "purchase_price",
        "采购价格(yke553)不能小于0: '-1'",
    ),
    row_case(
        "negative-stock",
        "stock",
        {"stock_quantity": "-3"},
        "字段校验失败",
        "stock_quantity",
        "库存数量(kcsl)不能小于0: '-3'",
    ),
    # too long in GBK bytes (a Chinese character counts 2)
    row_case(
        "name-too-long-gbk",
        "outbound",
        {"hospital_item_name": "药" * 101},
        "字段校验失败",
        "hospital_item_name",
        "医院项目名称(yka095)长度超过200字节(实际202字节)",
    ),
    row_case(
        "unit-11-chars-22-bytes",
        "outbound",
        {"unit": "盒" * 11},
        "字段校验失败",
        "unit",
        "计量单位(dw)长度超过20字节(实际22字节)",
    ),
    row_case(
        "lot-no-too-long-gbk",
        "inbound",
        {"lot_no": "批" * 16},
        "字段校验失败",
        "lot_no",
        "生产批号(scph)长度超过30字节(实际32字节)",
    ),
    # characters GBK cannot hold; control characters
    row_case(
        "gbk-cannot-hold",
        "outbound",
        {"hospital_item_name": "艾司唑仑(䓬)"},
        "字符集错误",
        "hospital_item_name",
        "医院项目名称(yka095)含GBK无法表示的字符'䓬'(U+44EC)",
    ),
    row_case(
        "emoji-in-remark",
        "outbound",
        {"remark": "已发💊"},
        "字符集错误",
        "remark",
        "备注(aae013)含GBK无法表示的字符'💊'(U+1F48A)",
    ),
    row_case(
        "control-char-x01",
        "outbound",
        {"hospital_item_name": "坏\x01名"},
        "字段校验失败",
        "hospital_item_name",
        "医院项目名称(yka095)含控制字符U+0001",
        on_the_wire=False,
    ),
    row_case(
        "control-char-x1f",
        "outbound",
        {"remark": "备注\x1f"},
        "字段校验失败",
        "remark",
        "备注(aae013)含控制字符U+001F",
        on_the_wire=False,
    ),
    # unknown codes, missing required / conditional fields
    row_case(
        "outbound-type-28",
        "outbound",
        {"outbound_type": "28"},
        "字段校验失败",
        "outbound_type",
        "出库类型(cklx)取值'28'不在代码表内(21/22/23/24/25/26/27/29)",
    ),
    row_case(
        "split-flag-2",
        "outbound",
        {"split_flag": "2"},
        "字段校验失败",
        "split_flag",
        "是否拆零标志(sfclbz)取值'2'不在代码表内(0/1)",
    ),
    row_case(
        "inbound-type-16",
        "inbound",
        {"inbound_type": "16"},
        "字段校验失败",
        "inbound_type",
        "入库类型(rklx)取值'16'不在代码表内(11/12/13/14/15/19)",
    ),
    row_case(
        "split-without-pack-ratio",
        "outbound",
        {"split_flag": "1"},
        "字段校验失败",
        "pack_ratio",
        "包装换算系数(bzhsxs)在是否拆零标志(sfclbz)=1时不能为空",
    ),
    row_case(
        "dept-use-without-dept",
        "outbound",
        {"outbound_type": "23"},
        "字段校验失败",
        "dept_code",
        "领用科室编码(yka097)在出库类型(cklx)=23时不能为空",
    ),
    row_case(
        "purchase-without-supplier",
        "inbound",
        {"supplier_name": ""},
        "字段校验失败",
        "supplier_name",
        "供应商名称(gysmc)在入库类型(rklx)=11时不能为空",
    ),
    row_case(
        "missing-item-code",
        "outbound",
        {"insurance_item_code": ""},
        "字段校验失败",
        "insurance_item_code",
        "医保项目编码(yka094)不能为空",
    ),
    row_case(
        "return-without-original-serial",
        "inbound",
        {"inbound_type": "15"},
        "字段校验失败",
        "original_serial_no",
        "原出库流水号(yyka105)在入库类型(rklx)=15时不能为空",
    ),
    # rejected by the centre (not knowable locally)
    row_case(
        "future-time-r7",
        "outbound",
        {"event_time": FUTURE},
        "字段校验失败",
        "event_time",
        f"出库时间(aae036)晚于服务器当前时间: '{FUTURE}'",
        held_back=False,
    ),
    row_case(
        "unmapped-at-centre",
        "outbound",
        {"mapping_serial_no": "M9999"},
        "未对码",
        "mapping_serial_no",
        "医院对码流水号(ake005)'M9999'未对码",
        held_back=False,
    ),
    row_case(
        "mapping-mismatch-at-centre",
        "outbound",
        {"insurance_item_code": "XA999999"},
        "对码信息不一致",
        "insurance_item_code",
        "医保项目编码(yka094)'XA999999'与对码信息'XA000001'不一致",
        held_back=False,
    ),
    row_case(
        "return-of-unknown-outbound",
        "inbound",
        {"inbound_type": "15", "original_serial_no": "CK-NONE"},
        "原出库记录不存在",
        "original_serial_no",
        "原出库流水号(yyka105)'CK-NONE'不存在或不属于同一项目",
        held_back=False,
    ),
    # held back against a local copy of the 对码 registry
    row_case(
        "unmapped-in-local-registry",
        "outbound",
        {"mapping_serial_no": "M0002", "insurance_item_code": "XA000002"},
        "未对码",
        "mapping_serial_no",
        "医院对码流水号(ake005)'M0002'未对码",
        registry=UNMAPPED_LOCALLY,
    ),
    row_case(
        "mismatch-in-local-registry",
        "outbound",
        {"insurance_item_code": "XA000009"},
        "对码信息不一致",
        "insurance_item_code",
        "医保项目编码(yka094)'XA000009'与对码信息'XA000001'不一致",
        registry=UNMAPPED_LOCALLY,
    ),
]


@pytest.mark.parametrize(
    ("txn", "overrides", "category", "field", "detail", "held_back", "registry", "centre_check"), ROW_CASES
)
def test_bad_row_is_kept_with_its_reason(
    profile, simulator, store, client, ledger, txn, overrides, category, field, detail, held_back, registry,
    centre_check,
):  # fmt: skip
    build = BUILDERS[txn]
    good, bad = build("OK1", 1), build("BAD1", 1, **overrides)
    result = _uploader(profile, client, ledger, txn, registry=registry).run([[good, bad]])

    rows = _assert_no_row_lost(ledger, ["OK1", "BAD1"])
    assert rows["OK1"]["state"] == ACCEPTED
    row = rows["BAD1"]
    assert (row["state"], row["category"], row["field"], row["detail"]) == (REJECTED, category, field, detail)
    assert row["held_back"] == int(held_back)
    assert row["attempts"] == (0 if held_back else 1)
    assert result.rejects == [
        {
            "serial_no": "BAD1",
            "item": bad["mapping_serial_no"],
            "item_name": bad["hospital_item_name"],
            "category": category,
            "field": field,
            "detail": detail,
        }
    ]
    assert sorted(r["serial_no"] for r in store.accepted_rows()) == ["OK1"]
    assert simulator.requests == 1
    if centre_check:
        reply = client.send(txn, [row_to_wire(profile.transaction(txn), bad)]).reply
        assert [f.message for f in reply.failures] == [f"【{category}】{detail}"]


def test_serial_already_stored_by_someone_else_is_a_conflict(profile, simulator, client, ledger):
    """A 流水号 reused from another upload (e.g. another system or a renumbered bill)."""
    assert client.send("outbound", [outbound_row("CK-REUSED")]).reply.status == "success"
    _uploader(profile, client, ledger).run([[outbound_row("CK-REUSED", quantity="9"), outbound_row("OK1")]])
    rows = _assert_no_row_lost(ledger, ["CK-REUSED", "OK1"])
    row = rows["CK-REUSED"]
    assert (row["state"], row["category"], row["field"]) == (DUPLICATE_CONFLICT, "数据重复上传", "serial_no")
    assert row["detail"] == "流水号(yka105)'CK-REUSED'已上传（本客户端从未发送过该流水号）"


def test_serial_repeated_inside_one_source_is_uploaded_once_and_reported(profile, store, client, ledger):
    rows = [outbound_row("CK1"), outbound_row("CK2"), outbound_row("CK1", quantity="5")]
    result = _uploader(profile, client, ledger).run([rows])
    state = _assert_no_row_lost(ledger, ["CK1", "CK2"])
    assert {s: r["state"] for s, r in state.items()} == {"CK1": ACCEPTED, "CK2": ACCEPTED}
    assert result.duplicate_in_source == 1
    assert result.rejects == [
        {
            "serial_no": "CK1",
            "row": 3,
            "item": "M0001",
            "item_name": "阿莫西林胶囊1号",
            "category": "数据重复上传",
            "field": "serial_no",
            "detail": "流水号在数据源中重复(源数据第3行)，仅上传第一条",
        }
    ]
    # the first row wins: the centre holds quantity 2, not 5
    (stored,) = [r for r in store.accepted_rows() if r["serial_no"] == "CK1"]
    assert stored["quantity"] == "2"


@pytest.mark.parametrize(
    ("serial", "shown", "detail"),
    [
        pytest.param("", None, "流水号(yka105)不能为空", id="empty-serial"),
        pytest.param(
            "X" * 300, "X" * 40 + "…", "流水号(yka105)长度300，无法记录", id="serial-too-long-to-key"
        ),
    ],
)
def test_row_without_usable_serial_is_reported_by_row_number(
    profile, store, client, ledger, serial, shown, detail
):
    rows = [outbound_row("CK1"), outbound_row(serial), outbound_row("CK3")]
    uploader = _uploader(profile, client, ledger)
    result = uploader.run([rows])  # one bad row does not stop the others (or the day's other uploads)
    assert result.source_issues == 1
    assert {s: r["state"] for s, r in _ledger_rows(ledger).items()} == {"CK1": ACCEPTED, "CK3": ACCEPTED}
    reason = f"源数据第2行: {detail}"
    item = {"item": "M0001", "item_name": "阿莫西林胶囊1号"}
    assert result.rejects == [
        {
            "serial_no": shown,
            "row": 2,
            **item,
            "category": "字段校验失败",
            "field": "serial_no",
            "detail": reason,
        }
    ]
    # the row is kept in the ledger as a source issue, which the reject report and the monitor list
    (issue,) = ledger.iter_source_issues()
    assert (issue["serial_no"], issue["source_row"], issue["row_key"]) == (shown, 2, f"{shown or ''}#2")
    assert (issue["transaction_code"], issue["business_date"], issue["detail"]) == (
        "JXC003",
        "2026-11-20",
        reason,
    )


# ---------------------------------------------------------------------------------------------------------
# 5. unreachable endpoint, wrong credentials: nothing stored, rows stay PENDING with the reason
# ---------------------------------------------------------------------------------------------------------


def test_unreachable_endpoint_leaves_rows_pending_with_reason(profile, ledger):
    dead = _client(profile, UNREACHABLE)
    with pytest.raises(TransportError) as info:
        _uploader(profile, dead, ledger).run([[outbound_row("T1"), outbound_row("T2")]])
    assert str(info.value) == f"could not reach {UNREACHABLE}: ConnectionError"
    rows = _assert_no_row_lost(ledger, ["T1", "T2"])
    for row in rows.values():
        assert (row["state"], row["detail"]) == (
            PENDING,
            f"未发送: could not reach {UNREACHABLE}: ConnectionError",
        )
    assert [b["outcome"] for b in ledger.batches()] == ["not_sent"]


@pytest.mark.parametrize(
    ("secret", "institution", "message"),
    [
        pytest.param("wrong-code", INSTITUTION, "【用户名或验证码错误】", id="wrong-verification-code"),
        pytest.param(PROD_SECRET, INSTITUTION, "【用户名或验证码错误】", id="prod-code-on-test"),
        pytest.param(SECRET, "H51019999999", "【定点机构编码不存在】H51019999999", id="unknown-institution"),
    ],
)
def test_whole_call_rejected_keeps_rows_pending_with_reason(
    profile, simulator, store, ledger, secret, institution, message
):
    wrong = CentreClient(
        profile,
        endpoint=simulator.url,
        user=USER,
        verification_code=secret,
        institution_code=institution,
        timeout=3,
    )
    uploader = Uploader(
        profile=profile,
        txn_key="outbound",
        institution_code=institution,
        sender=wrong,
        ledger=ledger,
        sleep=lambda s: None,
        resend_attempts=3,
    )
    with pytest.raises(CallRejectedError) as info:
        uploader.run([[outbound_row("W1"), outbound_row("W2")]])
    assert str(info.value) == message
    rows = _assert_no_row_lost(ledger, ["W1", "W2"])
    assert {(r["state"], r["detail"]) for r in rows.values()} == {(PENDING, f"整批被拒: {message}")}
    assert simulator.requests == 1  # not retried
    assert store.count_rows() == 0
    assert secret not in json.dumps(ledger.batches(), default=str)


# ---------------------------------------------------------------------------------------------------------
# 6. a server answering garbage, XXE, billion laughs, huge replies: refused, rows IN_DOUBT with the reason
# ---------------------------------------------------------------------------------------------------------

_HTML = b"<html><head><title>Welcome</title></head><body><h1>Welcome to nginx!</h1></body></html>"

GARBAGE_CASES = [
    # (status, content type, body factory, message after the URL, exact?)
    pytest.param(
        200, "text/html", lambda p: _HTML, "unreadable reply from {url}: XMLSyntaxError", True, id="html-200"
    ),
    pytest.param(
        200,
        "text/plain",
        lambda p: b"Service temporarily unavailable",
        "unreadable reply from {url}: not an XML document",
        True,
        id="plain-text-200",
    ),
    pytest.param(
        200,
        "application/json",
        lambda p: b'{"code": 500, "msg": "error"}',
        "unreadable reply from {url}: not an XML document",
        True,
        id="json-200",
    ),
    pytest.param(
        200, "text/xml", lambda p: b"", "HTTP 200 from {url} without a SOAP reply", True, id="empty-200"
    ),
    pytest.param(
        200,
        "text/xml; charset=UTF-8",
        lambda p: _envelope(p, "系统繁忙，请稍后再试"),
        "unreadable reply from {url}: reply is not well-formed XML: ",
        False,
        id="return-is-not-xml",
    ),
    pytest.param(
        200,
        "text/xml; charset=UTF-8",
        lambda p: _envelope(p, ""),
        "unreadable reply from {url}: reply is empty",
        True,
        id="return-is-empty",
    ),
    pytest.param(
        200,
        "text/xml; charset=UTF-8",
        lambda p: _envelope(p, "<result><retcode>1</retcode></result>"),
        "unreadable reply from {url}: reply has no <output> node (root is <result>)",
        True,
        id="return-wrong-root",
    ),
    pytest.param(
        200,
        "text/xml; charset=UTF-8",
        lambda p: _envelope(p, "<output><retcode>0</retcode><retmsg>OK</retmsg></output>"),
        "unreadable reply from {url}: reply has an unknown retcode '0'",
        True,
        id="return-unknown-retcode",
    ),
    pytest.param(
        200,
        "text/xml; charset=UTF-8",
        lambda p: _envelope(p, XXE_INNER),
        "unreadable reply from {url}: reply contains a DOCTYPE or entity declaration; refused",
        True,
        id="xxe-in-return",
    ),
    pytest.param(
        200,
        "text/xml; charset=UTF-8",
        lambda p: _envelope(p, BILLION_LAUGHS),
        "unreadable reply from {url}: reply contains a DOCTYPE or entity declaration; refused",
        True,
        id="billion-laughs-in-return",
    ),
    pytest.param(
        200,
        "text/xml; charset=UTF-8",
        lambda p: XXE_ENVELOPE,
        "unreadable reply from {url}: SOAP envelope contains a DOCTYPE or entity declaration; refused",
        True,
        id="xxe-in-envelope",
    ),
    pytest.param(
        200,
        "text/xml; charset=UTF-8",
        lambda p: _envelope(p, HUGE_INNER),
        "unreadable reply from {url}: ",
        False,
        id="huge-return",
    ),
]


@pytest.mark.parametrize(("status", "content_type", "body", "message", "exact"), GARBAGE_CASES)
def test_unreadable_reply_leaves_rows_in_doubt_with_reason(
    profile, rogue, ledger, status, content_type, body, message, exact
):
    rogue.status, rogue.content_type, rogue.body = status, content_type, body(profile)
    client = _client(profile, rogue.url)
    with pytest.raises(InDoubtError) as info:
        _uploader(profile, client, ledger).run([[outbound_row("G1"), outbound_row("G2")]])
    expected = message.format(url=rogue.url)
    text = str(info.value)
    if exact:
        assert text == expected
    else:
        assert text.startswith(expected)
    rows = _assert_no_row_lost(ledger, ["G1", "G2"])
    for row in rows.values():
        assert (row["state"], row["detail"]) == (IN_DOUBT, f"应答丢失: {text}")
    (batch,) = ledger.batches()
    assert (batch["outcome"], batch["error"]) == ("in_doubt", text)
    assert rogue.requests == 1
    # nothing from /etc/passwd anywhere: exception, ledger rows, audit batch
    seen = text + json.dumps(list(rows.values()), default=str) + json.dumps(batch, default=str)
    assert PASSWD not in seen


def test_wrong_endpoint_path_is_named_as_such(profile, rogue):
    rogue.status, rogue.content_type, rogue.body = 404, "text/html", b"<html><body>Not Found</body></html>"
    with pytest.raises(CallRejectedError) as info:
        _client(profile, rogue.url).send("outbound", [outbound_row("E1")])
    assert str(info.value) == f"HTTP 404 from {rogue.url}; check the endpoint URL"


PARSE_REPLY_CASES = [
    pytest.param(
        XXE_INNER, UnsafeXmlError, "reply contains a DOCTYPE or entity declaration; refused", id="xxe"
    ),
    pytest.param(
        BILLION_LAUGHS,
        UnsafeXmlError,
        "reply contains a DOCTYPE or entity declaration; refused",
        id="billion-laughs",
    ),
    pytest.param(
        XXE_INNER.replace("<!DOCTYPE", "<!doctype"),
        UnsafeXmlError,
        "reply contains a DOCTYPE or entity declaration; refused",
        id="xxe-lower-case-doctype",
    ),
    pytest.param(
        HUGE_INNER,
        CodecError,
        f"reply is too large: {len(HUGE_INNER)} characters (limit {MAX_DOCUMENT_CHARS})",
        id="huge",
    ),
    pytest.param("   ", CodecError, "reply is empty", id="blank"),
]


@pytest.mark.parametrize(("text", "error", "message"), PARSE_REPLY_CASES)
def test_hostile_reply_is_refused_by_the_codec(profile, text, error, message):
    with pytest.raises(error) as info:
        parse_reply(profile, text)
    assert str(info.value) == message
    assert PASSWD not in str(info.value)


# ---------------------------------------------------------------------------------------------------------
# 7. the same bad inputs through `cdyb-jxc upload`: exit status and the one line the user reads
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def upload_cli(tmp_path, capsys):
    """Run ``cdyb-jxc upload`` in this process; returns (exit status, stdout, stderr)."""
    ledger_url = f"sqlite:///{tmp_path / 'cli-ledger.db'}"

    def _run(txn: str, path: Path) -> tuple[int, str, str]:
        capsys.readouterr()
        code = cli_main(
            ["upload", "--transaction", txn, "--file", str(path), "--ledger", ledger_url, "--no-progress"]
        )
        out, err = capsys.readouterr()
        return code, out, err

    return _run


def _conn_env(monkeypatch: pytest.MonkeyPatch, host: str, **extra: Any) -> None:
    conn = {
        "conn_type": "cdyb_jxc",
        "host": host,
        "login": USER,
        "password": SECRET,
        "extra": {"institution_code": INSTITUTION, "environment": "test", "timeout": 3, **extra},
    }
    monkeypatch.setenv("AIRFLOW_CONN_CDYB_JXC_DEFAULT", json.dumps(conn))


def test_cli_missing_columns_exit_2_before_sending(simulator, tmp_path, monkeypatch):
    """As a real process: the exit status the operations team scripts against."""
    _conn_env(monkeypatch, simulator.url)
    src = write_csv(tmp_path / "out.csv", _FEW_COLUMNS)
    out = subprocess.run(
        [sys.executable, "-m", "cdyb_jxc", "upload", "--transaction", "outbound", "--file", str(src),
         "--ledger", f"sqlite:///{tmp_path / 'ledger.db'}"],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert _cli_error(out.stderr) == "cdyb-jxc: " + _LACKS.format(path=src)
    assert simulator.requests == 0


CLI_CASES = [
    # (file name, writer, connection extra, exit status, message)
    pytest.param(
        "out.csv",
        lambda p: write_csv(p, [outbound_row("CK1")]),
        {"environment": "production"},
        2,
        "connection 'cdyb_jxc_default': extra 'environment' must be test or prod, not 'production'",
        id="bad-connection-extra",
    ),
    pytest.param(
        "out.csv",
        lambda p: write_csv(p, [outbound_row("CK1")]),
        {"profile": "{dir}/gbk.toml"},
        2,
        "profile file {dir}/gbk.toml cannot be read as UTF-8: 'utf-8' codec can't decode byte 0xb3 in"
        " position 8: invalid start byte",
        id="profile-saved-as-gbk",
    ),
    pytest.param(
        "out.xlsx",
        lambda p: p.write_text("<html><table></table></html>", encoding="utf-8"),
        {},
        2,
        "cannot read {dir}/out.xlsx: File is not a zip file",
        id="xlsx-that-is-not-excel",
    ),
    pytest.param(
        "missing.csv", None, {}, 2, "source file {dir}/missing.csv does not exist", id="file-does-not-exist"
    ),
]


@pytest.mark.parametrize(("name", "writer", "extra", "status", "message"), CLI_CASES)
def test_cli_reports_bad_input_in_one_line(
    simulator, upload_cli, tmp_path, monkeypatch, name, writer, extra, status, message
):
    (tmp_path / "gbk.toml").write_bytes("name = '成都'\n".encode("gbk"))
    _conn_env(monkeypatch, simulator.url, **{k: v.format(dir=tmp_path) for k, v in extra.items()})
    src = tmp_path / name
    if writer is not None:
        writer(src)
    code, _, err = upload_cli("outbound", src)
    assert code == status
    assert _cli_error(err) == "cdyb-jxc: " + message.format(dir=tmp_path)


def test_cli_row_without_serial_exits_1_naming_the_source_row(simulator, upload_cli, tmp_path, monkeypatch):
    _conn_env(monkeypatch, simulator.url)
    src = write_csv(tmp_path / "out.csv", [outbound_row("CK1"), outbound_row("")])
    code, out, _ = upload_cli("outbound", src)
    assert code == 1
    assert "  ACCEPTED             1" in out
    assert "  SOURCE_ISSUE         1 (not sent: see the reject list below)" in out
    assert "  rejected source row 2: 【字段校验失败】源数据第2行: 流水号(yka105)不能为空" in out


def test_cli_server_answering_garbage_exits_1_and_says_to_resume(rogue, upload_cli, tmp_path, monkeypatch):
    rogue.status, rogue.content_type, rogue.body = 200, "text/plain", b"Service temporarily unavailable"
    _conn_env(monkeypatch, rogue.url)
    src = write_csv(tmp_path / "out.csv", [outbound_row("CK1")])
    code, out, err = upload_cli("outbound", src)
    assert code == 1
    assert _cli_error(err) == (
        "cdyb-jxc: transport fault, run the same command again to resume: "
        f"unreadable reply from {rogue.url}: not an XML document"
    )
    # three tries (the command resends twice), then the row waits in the ledger for the next run
    assert "outbound: read 1 rows, sent 3 in 3 requests, held back 0" in out
    assert rogue.requests == 3
    ledger = Ledger(f"sqlite:///{tmp_path / 'cli-ledger.db'}")
    (row,) = ledger.iter_rows()
    ledger.dispose()
    assert (row["serial_no"], row["state"]) == ("CK1", IN_DOUBT)
    assert row["detail"] == f"应答丢失: unreadable reply from {rogue.url}: not an XML document"


def test_cli_duplicate_serial_in_source_is_not_a_clean_exit(simulator, upload_cli, tmp_path, monkeypatch):
    _conn_env(monkeypatch, simulator.url)
    src = write_csv(tmp_path / "out.csv", [outbound_row("CK1"), outbound_row("CK1", quantity="5")])
    code, out, _ = upload_cli("outbound", src)
    assert "rejected CK1: 【数据重复上传】流水号在数据源中重复(源数据第2行)，仅上传第一条" in out
    assert code != 0

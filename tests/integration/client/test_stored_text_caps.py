"""Text from the centre is capped before it is stored: per row (a few KB with a marker), per batch (the
reply once, capped), so one hostile reply cannot grow the ledger by hundreds of MB or make the monitor
answer with that much JSON. A real client against a local hostile server; ledger on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import random
import string
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import text

from cdyb_jxc.exceptions import CallRejectedError, InDoubtError
from cdyb_jxc.ledger import ACCEPTED, DUPLICATE_CONFLICT, IN_DOUBT, PENDING, REJECTED, Ledger
from cdyb_jxc.safety.textcap import MARKER, PART_MAX, REPLY_MAX, TEXT_MAX
from cdyb_jxc.simulator.server import response_envelope
from cdyb_jxc.ui.queries import queues
from cdyb_jxc.wire.client import CentreClient
from cdyb_jxc.wire.codec import FAILURE, PARTIAL, SUCCESS, RowFailure, build_reply
from tests.conftest import INSTITUTION, SECRET, USER, make_uploader, outbound_row

MB = 1024 * 1024


class _Hostile(ThreadingHTTPServer):
    """Answers every POST with one canned SOAP reply."""

    daemon_threads = True
    body = b""
    requests = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/services/SjcjService"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Hostile

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests += 1
        self.send_response(200)
        self.send_header("Content-Type", "text/xml; charset=UTF-8")
        self.send_header("Content-Length", str(len(self.server.body)))
        self.end_headers()
        self.wfile.write(self.server.body)


@pytest.fixture
def hostile() -> Iterator[_Hostile]:
    server = _Hostile(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _answer(profile: Any, hostile: _Hostile, status: str, retmsg: str, **kw: Any) -> None:
    hostile.body = response_envelope(profile, build_reply(profile, status, retmsg, **kw))


def _upload(profile: Any, hostile: _Hostile, ledger: Ledger, rows: list[dict[str, str]]) -> Any:
    client = CentreClient(
        profile, endpoint=hostile.url, user=USER, verification_code=SECRET, institution_code=INSTITUTION
    )
    try:
        return make_uploader(profile, client, ledger).run([rows])
    finally:
        client.close()


def _noise(n: int) -> str:
    """Text that does not compress away (a hostile reply would not be kind enough to repeat one letter)."""
    rnd = random.Random(n)
    return "".join(rnd.choices(string.ascii_letters + string.digits + "库存药品", k=n))


def _db_bytes(ledger: Ledger) -> int:
    with ledger.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            return int(conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one())
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar_one()
        return int(pages * conn.exec_driver_sql("PRAGMA page_size").scalar_one())


def _rows(ledger: Ledger) -> dict[str, dict[str, Any]]:
    return {r["serial_no"]: r for r in ledger.iter_rows()}


def test_contradicting_reply_with_huge_retmsg_is_stored_capped(profile, hostile, ledger):
    """retcode 2 without dataset and a 2 MB retmsg, for a 100-row batch: 100 rows IN_DOUBT, a few KB each."""
    retmsg = _noise(2 * MB)
    _answer(profile, hostile, PARTIAL, retmsg)
    serials = [f"C{i:03d}" for i in range(100)]
    with pytest.raises(InDoubtError):  # a first call: the tables and their first pages exist
        _upload(profile, hostile, ledger, [outbound_row(s) for s in serials[:1]])
    before = _db_bytes(ledger)
    with pytest.raises(InDoubtError) as info:
        _upload(profile, hostile, ledger, [outbound_row(s) for s in serials[1:]] + [outbound_row("C200")])
    growth = _db_bytes(ledger) - before
    print(f"ledger growth for a 2 MB x 100-row contradiction: {growth} bytes")
    assert growth < 3 * MB, growth  # uncapped: > 200 MB (2 MB in every row's detail)
    assert len(str(info.value)) < 1000

    rows = _rows(ledger)
    head = "应答不一致: 返回码2(部分成功)却未列出失败记录; 返回信息: "
    for row in rows.values():
        assert row["state"] == IN_DOUBT
        assert row["detail"].startswith(head + retmsg[:100])
        assert len(row["detail"]) == len("应答不一致: ") + PART_MAX
        assert row["detail"].endswith("字符]")
        assert "…[已截断，原文" in row["detail"]
    batch = ledger.batches()[-1]
    assert batch["outcome"] == "in_doubt"
    assert len(batch["retmsg"]) == TEXT_MAX
    assert batch["retmsg"].endswith(MARKER.format(n=len(retmsg)))
    assert len(batch["error"]) <= PART_MAX
    # the whole reply is kept once per batch, capped
    assert len(batch["reply"]) <= REPLY_MAX
    assert batch["reply"].endswith("字符]")
    assert batch["reply"].startswith("<?xml")

    answer = json.dumps(queues(ledger.engine), default=str)
    assert len(answer) < MB, len(answer)
    assert len(json.loads(answer)["in_doubt"]) == 101  # the first call's row and the 100


def test_row_errmsg_of_a_megabyte_is_capped(profile, hostile, ledger):
    errmsg = "【字段校验失败】出库数量(akc226)不是合法的数值: " + _noise(MB)
    _answer(profile, hostile, PARTIAL, "部分成功", succnum=1, failnum=1, failures=[RowFailure("E2", errmsg)])
    result = _upload(profile, hostile, ledger, [outbound_row("E1"), outbound_row("E2")])
    rows = _rows(ledger)
    assert rows["E1"]["state"] == ACCEPTED
    row = rows["E2"]
    assert (row["state"], row["category"], row["field"]) == (REJECTED, "字段校验失败", "quantity")
    detail = errmsg.removeprefix("【字段校验失败】")
    assert row["detail"] == detail[: TEXT_MAX - len(MARKER.format(n=len(detail)))] + MARKER.format(
        n=len(detail)
    )
    (sample,) = result.rejects
    assert sample["detail"] == row["detail"]


def test_huge_category_does_not_crash_the_ledger(profile, hostile, ledger):
    """category is String(64): PostgreSQL would raise "value too long" for the centre's 5,000 characters."""
    category = "类" * 5000
    _answer(profile, hostile, PARTIAL, "部分成功", failures=[RowFailure("K2", f"【{category}】坏")])
    result = _upload(profile, hostile, ledger, [outbound_row("K1"), outbound_row("K2")])
    rows = _rows(ledger)
    assert rows["K1"]["state"] == ACCEPTED
    row = rows["K2"]
    assert (row["state"], row["detail"]) == (REJECTED, "坏")
    assert row["category"] == "类" * (64 - len(MARKER.format(n=5000))) + MARKER.format(n=5000)
    assert len(result.rejects[0]["category"]) == TEXT_MAX


def test_duplicate_answer_with_huge_detail_keeps_the_reason(profile, hostile, ledger):
    errmsg = "【数据重复上传】流水号(yka105)'D1'已上传" + "x" * MB
    _answer(profile, hostile, FAILURE, "全部失败", failures=[RowFailure("D1", errmsg)])
    _upload(profile, hostile, ledger, [outbound_row("D1")])
    row = _rows(ledger)["D1"]
    assert row["state"] == DUPLICATE_CONFLICT
    assert row["detail"].startswith("流水号(yka105)'D1'已上传xxx")
    assert row["detail"].endswith("字符]（本客户端从未发送过该流水号）")
    assert len(row["detail"]) <= PART_MAX + 20


def test_success_listing_a_huge_failure_is_in_doubt_with_both_texts_capped(profile, hostile, ledger):
    errmsg = "【字段校验失败】" + "y" * MB
    _answer(profile, hostile, SUCCESS, "z" * MB, failures=[RowFailure("S2", errmsg)])
    with pytest.raises(InDoubtError):
        _upload(profile, hostile, ledger, [outbound_row("S1"), outbound_row("S2")])
    rows = _rows(ledger)
    assert {r["state"] for r in rows.values()} == {IN_DOUBT}
    assert rows["S1"]["detail"].startswith("应答不一致: 返回码1(全部成功)却列出1条失败记录; 返回信息: zzz")
    detail = rows["S2"]["detail"]
    said = "; 应答称: 【字段校验失败】yyy"
    assert said in detail
    assert detail.endswith("字符]")
    assert len(detail) <= 2 * PART_MAX + len(said)


def test_whole_call_rejection_with_huge_retmsg_is_capped(profile, hostile, ledger):
    retmsg = "【用户名或验证码错误】" + _noise(2 * MB)
    _answer(profile, hostile, FAILURE, retmsg)
    with pytest.raises(CallRejectedError) as info:
        _upload(profile, hostile, ledger, [outbound_row("W1"), outbound_row("W2")])
    assert len(str(info.value)) <= PART_MAX
    assert str(info.value).startswith("【用户名或验证码错误】")
    for row in _rows(ledger).values():
        assert row["state"] == PENDING
        assert row["detail"].startswith("整批被拒: 【用户名或验证码错误】")
        assert len(row["detail"]) <= TEXT_MAX
    (batch,) = ledger.batches()
    assert len(batch["retmsg"]) == TEXT_MAX

"""The T+1 watch after a daily run that left rows refused and a day without its upload: data problems go to
the data owner's webhook, the rest to operations', each listing what is missing by category."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.dags.test_dags_end_to_end import _run_for, _tis


@pytest.fixture
def webhooks() -> Iterator[tuple[str, dict[str, list[str]]]]:
    received: dict[str, list[str]] = {"/data": [], "/ops": []}

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.setdefault(self.path, []).append(json.loads(body)["text"])
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", received
    server.shutdown()


def test_the_watch_routes_what_is_missing(repo_dag, demo_env, simulator, monkeypatch, webhooks):
    base, received = webhooks
    monkeypatch.setenv("CDYB_JXC_NOTIFY_DATA", f"webhook:{base}/data")
    monkeypatch.setenv("CDYB_JXC_NOTIFY_OPS", f"webhook:{base}/ops")
    assert repo_dag("cdyb_jxc_init").test().state == "success"
    day = demo_env["days"][1]
    assert repo_dag("cdyb_jxc_daily").test(logical_date=_run_for(day)).state == "success"

    watch = repo_dag("cdyb_jxc_watch").test(run_conf={"business_date": day})
    result = _tis(watch)["check_t1"].xcom_pull(task_ids="check_t1")
    assert result["data"] > 0
    (data,) = received["/data"]
    assert f"业务日期 {day}" in data
    assert "数据问题" in data
    assert "未对码" in data or "字段校验失败" in data
    assert "IN_DOUBT" not in data

    # a day whose daily run never happened: nothing of it reached the centre, operations hear of it
    received["/ops"].clear()
    other = demo_env["days"][2]
    watch = repo_dag("cdyb_jxc_watch").test(run_conf={"business_date": other})
    assert _tis(watch)["check_t1"].xcom_pull(task_ids="check_t1")["complete"] is False
    (ops,) = received["/ops"]
    assert "库存未上传" in ops

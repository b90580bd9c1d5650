"""Reject notifications over each channel, against real local endpoints (HTTP webhook, SMTP server)."""

from __future__ import annotations

import email
import email.policy
import json
import logging
import socketserver
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import pytest

from cdyb_jxc.notifications.reject import RejectNotifier

MESSAGE = (
    "医保进销存上传 H51010400001 业务日期 2026-11-20: 3 条记录被拒或冲突。 报告 report: /r.csv / /r.xlsx"
)


class _Webhook(BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Webhook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()


class _Smtp(socketserver.StreamRequestHandler):
    """Just enough SMTP for one message: EHLO/HELO, MAIL, RCPT, DATA, QUIT."""

    messages: ClassVar[list[dict]] = []

    def _say(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self) -> None:
        self._say("220 test SMTP")
        rcpt: list[str] = []
        while line := self.rfile.readline().decode("utf-8", "replace").strip():
            verb = line.split(" ", 1)[0].upper()
            if verb == "EHLO":
                self._say("250-test")
                self._say("250 8BITMIME")
            elif verb in ("HELO", "MAIL", "RSET", "NOOP"):
                self._say("250 ok")
            elif verb == "RCPT":
                rcpt.append(line.split(":", 1)[1].strip(" <>"))
                self._say("250 ok")
            elif verb == "DATA":
                self._say("354 go on")
                lines = []
                while (data := self.rfile.readline()) not in (b".\r\n", b".\n", b""):
                    lines.append(data)
                _Smtp.messages.append({"rcpt": rcpt, "data": b"".join(lines)})
                self._say("250 queued")
            elif verb == "QUIT":
                self._say("221 bye")
                return
            else:
                self._say("502 not here")


@pytest.fixture
def webhook() -> Iterator[str]:
    _Webhook.received.clear()
    server = HTTPServer(("127.0.0.1", 0), _Webhook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    server.shutdown()
    server.server_close()


@pytest.fixture
def smtp_server(monkeypatch) -> Iterator[int]:
    _Smtp.messages.clear()
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Smtp)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMTP_DEFAULT",
        json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": port,
                "extra": {"disable_ssl": True, "disable_tls": True, "from_email": "airflow@hospital.example"},
            }
        ),
    )
    yield port
    server.shutdown()
    server.server_close()


def test_log_channel_writes_the_message(caplog):
    caplog.set_level(logging.WARNING, logger="cdyb_jxc.notifications.reject")
    RejectNotifier.from_spec("log", MESSAGE).notify({})
    assert [r.getMessage() for r in caplog.records] == [MESSAGE]


def test_webhook_channel_posts_the_message_as_json(webhook):
    RejectNotifier.from_spec(f"webhook:{webhook}", MESSAGE).notify({})
    assert _Webhook.received == [{"text": MESSAGE}]


def test_email_channel_sends_through_the_smtp_connection(smtp_server):
    RejectNotifier.from_spec("email:pharmacy@hospital.example", MESSAGE).notify({})
    (mail,) = _Smtp.messages
    assert mail["rcpt"] == ["pharmacy@hospital.example"]
    parsed = email.message_from_bytes(mail["data"], policy=email.policy.default)
    assert parsed["Subject"] == "医保进销存上传有被拒记录"
    assert parsed["To"] == "pharmacy@hospital.example"
    body = parsed.get_body(("html", "plain"))
    assert body is not None
    assert MESSAGE in body.get_content()


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ("sms:123", "notification channel must be one of log, webhook, email, not 'sms'"),
        ("webhook", "notification channel 'webhook' needs a target"),
        ("email:", "notification channel 'email' needs a target"),
    ],
)
def test_bad_notification_setting_is_refused_by_name(spec, error):
    with pytest.raises(ValueError, match="notification channel") as info:
        RejectNotifier.from_spec(spec, MESSAGE)
    assert str(info.value) == error

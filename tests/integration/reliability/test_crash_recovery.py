"""A worker process killed (SIGKILL) while requests are out: the next run resumes from the ledger.

The upload runs as a real child process (``python -m cdyb_jxc upload --max-in-flight K``) talking to the
simulator through a small loopback HTTP proxy started by the test. The proxy forwards the first exchanges
and holds every one from the third on: for each it either forwards the request, waits for the simulator's
complete reply (the centre has stored the rows) and holds the reply back, or holds the request itself
(nothing stored). Once K are held the child is blocked with K batches committed IN_FLIGHT and no reply
recorded — the moment it is killed. A second run of the same command must find exactly those IN_FLIGHT
rows, treat them as in doubt, resend them and reconcile: nothing lost, nothing stored twice.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

import pytest

from cdyb_jxc.ledger import ACCEPTED, ACCEPTED_RECONCILED, IN_FLIGHT, PENDING, Ledger
from tests.conftest import INSTITUTION, SECRET, USER, outbound_row, write_csv

ROWS = 500
BATCH = 50
HOLD_FROM = 3  # every request from the third on is held: the worker dies with K of them in flight
WAIT_SECONDS = 120
_SERIAL_RE = re.compile(rb"CK20261120-[0-9]{4}")


def _read_message(stream: BinaryIO) -> bytes | None:
    """One HTTP/1.1 message (head and a Content-Length body) from ``stream``; ``None`` at end of stream."""
    head = b""
    while True:
        line = stream.readline(65537)
        if not line:
            return None
        head += line
        if line in (b"\r\n", b"\n"):
            break
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    body = stream.read(length) if length else b""
    if len(body) < length:
        return None
    return head + body


class HoldingProxy:
    """Loopback HTTP proxy that forwards every exchange before request number ``hold``, holds the others.

    :param upstream: (host, port) of the simulator
    :param hold: 1-based number of the first request to hold
    :param store_first: forward a held request and hold the simulator's full reply (the centre stored
        the rows); otherwise hold the request itself (nothing reaches the centre)
    """

    def __init__(self, upstream: tuple[str, int], hold: int, *, store_first: bool) -> None:
        self.upstream = upstream
        self.hold = hold
        self.store_first = store_first
        self.requests = 0
        self.held_replies: list[bytes] = []
        self.held: set[str] = set()  # 流水号 of the held exchanges, once each reached its hold point
        self.answered: set[str] = set()  # 流水号 of the exchanges forwarded and answered
        self.holds = 0  # held exchanges that reached their hold point
        self._release = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]

    def start(self) -> HoldingProxy:
        self._spawn(self._accept_loop)
        return self

    def stop(self) -> None:
        self._release.set()
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def _held(self, serials: set[str], reply: bytes | None = None) -> None:
        """Note a held exchange, then keep it until the proxy stops."""
        with self._lock:
            self.held |= serials
            self.holds += 1
            if reply is not None:
                self.held_replies.append(reply)
        self._release.wait()

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self._release.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            with self._lock:
                self._sockets.append(client)
            self._spawn(self._serve, client)

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(self.upstream)
        with self._lock:
            self._sockets.append(upstream)
        from_client, from_upstream = client.makefile("rb"), upstream.makefile("rb")
        try:
            while not self._release.is_set():
                request = _read_message(from_client)
                if request is None:
                    return
                with self._lock:
                    self.requests += 1
                    number = self.requests
                serials = {s.decode() for s in _SERIAL_RE.findall(request)}
                if number >= self.hold and not self.store_first:
                    self._held(serials)
                    return
                upstream.sendall(request)
                reply = _read_message(from_upstream)
                if reply is None:
                    return
                if number >= self.hold:
                    self._held(serials, reply)  # complete: the centre has processed and stored the rows
                    return
                with self._lock:
                    self.answered |= serials
                client.sendall(reply)
        except OSError:
            return
        finally:
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.close()


@pytest.fixture
def proxy_factory(simulator) -> Iterator:
    proxies: list[HoldingProxy] = []
    parts = urlsplit(simulator.url)
    upstream = (parts.hostname or "127.0.0.1", parts.port or 80)

    def _make(*, store_first: bool) -> HoldingProxy:
        proxy = HoldingProxy(upstream, HOLD_FROM, store_first=store_first).start()
        proxies.append(proxy)
        return proxy

    yield _make
    for proxy in proxies:
        proxy.stop()


def _conn_env(endpoint: str) -> dict[str, str]:
    conn = {
        "conn_type": "cdyb_jxc",
        "host": endpoint,
        "login": USER,
        "password": SECRET,
        # a long timeout: the child must stay blocked on the held reply until it is killed
        "extra": {
            "institution_code": INSTITUTION,
            "environment": "test",
            "batch_limit": BATCH,
            "timeout": 300,
        },
    }
    return {**os.environ, "AIRFLOW_CONN_CDYB_JXC_DEFAULT": json.dumps(conn)}


def _upload_command(src: Path, ledger_url: str, *options: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "cdyb_jxc",
        "upload",
        "--transaction",
        "outbound",
        "--file",
        str(src),
        "--ledger",
        ledger_url,
        "--no-progress",
        *options,
    ]


def _states(ledger_url: str) -> dict[str, str]:
    led = Ledger(ledger_url)
    try:
        return {r["serial_no"]: r["state"] for r in led.iter_rows(columns=["serial_no", "state"])}
    finally:
        led.dispose()


def _wait_for_holds(proxy: HoldingProxy, child: subprocess.Popen[bytes], k: int, log_path: Path) -> None:
    """Until ``k`` exchanges are held (the worker cannot send more: ``k`` is its limit)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while proxy.holds < k:
        exited = child.poll()
        assert exited is None, f"worker exited ({exited}) early: {log_path.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"worker never had {k} requests held ({proxy.holds})"
        time.sleep(0.1)
    time.sleep(0.5)  # a request beyond the limit would show up now
    assert proxy.holds == k


@pytest.mark.timeout(600)
@pytest.mark.parametrize("k", [pytest.param(1, id="K1"), pytest.param(4, id="K4")])
@pytest.mark.parametrize(
    "store_first",
    [pytest.param(True, id="centre-stored-reply-lost"), pytest.param(False, id="request-never-arrived")],
)
def test_worker_killed_mid_request_resumes_and_reconciles(
    proxy_factory, simulator, store, tmp_path, store_first, k
):
    serials = [f"CK20261120-{n:04d}" for n in range(ROWS)]
    src = write_csv(tmp_path / "outbound.csv", [outbound_row(s, n % 20 + 1) for n, s in enumerate(serials)])
    ledger_url = f"sqlite:///{tmp_path / 'ledger.db'}"
    proxy = proxy_factory(store_first=store_first)
    proxy_url = simulator.url.replace(f":{urlsplit(simulator.url).port}/", f":{proxy.port}/", 1)

    log_path = tmp_path / "worker1.log"
    with log_path.open("wb") as log:
        command = _upload_command(src, ledger_url, "--max-in-flight", str(k))
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=_conn_env(proxy_url))
        try:
            # wait until the worker is blocked on k held exchanges (after the centre stored the rows)
            _wait_for_holds(proxy, child, k, log_path)
            in_flight, sent_before = set(proxy.held), set(proxy.answered)
            # the first two requests were answered; k more went out (each as a slot came free)
            assert len(sent_before) == (HOLD_FROM - 1) * BATCH
            assert len(in_flight) == k * BATCH
            assert in_flight | sent_before == set(serials[: (HOLD_FROM - 1 + k) * BATCH])
            if k == 1:
                assert in_flight == set(serials[(HOLD_FROM - 1) * BATCH : HOLD_FROM * BATCH])
            expected_stored = sent_before | in_flight if store_first else sent_before
            # the ledger committed IN_FLIGHT before each request left (the proxy holds the exchanges, so
            # the state cannot change any more); the centre has stored what it was sent
            states = _states(ledger_url)
            assert {s for s, st in states.items() if st == IN_FLIGHT} == in_flight
            assert {s for s, st in states.items() if st == ACCEPTED} == sent_before
            assert Counter(states.values())[PENDING] == ROWS - len(in_flight) - len(sent_before)
            assert {r["serial_no"] for r in store.accepted_rows()} == expected_stored
            if store_first:
                assert len(proxy.held_replies) == k
                assert all(b"callBusinessResponse" in reply for reply in proxy.held_replies)
            os.kill(child.pid, signal.SIGKILL)
            assert child.wait(timeout=30) == -signal.SIGKILL
        finally:
            if child.poll() is None:
                child.kill()
                child.wait(timeout=30)

    # the crash left exactly those rows IN_FLIGHT and their requests' audit rows unfinished
    assert {s for s, st in _states(ledger_url).items() if st == IN_FLIGHT} == in_flight
    led = Ledger(ledger_url)
    unfinished = [b for b in led.batches() if b["finished_at"] is None]
    led.dispose()
    assert [b["row_count"] for b in unfinished] == [BATCH] * k

    # the same command again, straight to the centre (no faults): resumes, resends in-doubt rows, reconciles
    rerun = subprocess.run(
        _upload_command(src, ledger_url),
        capture_output=True,
        text=True,
        timeout=300,
        env=_conn_env(simulator.url),
    )
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"sent {ROWS - len(sent_before)} in {(ROWS - len(sent_before)) // BATCH} requests" in rerun.stdout

    states = _states(ledger_url)
    assert set(states) == set(serials)
    by_state = Counter(states.values())
    if store_first:
        # stored by the centre before the crash: answered 【数据重复上传】 and reconciled
        assert {s for s, st in states.items() if st == ACCEPTED_RECONCILED} == in_flight
        assert by_state == {ACCEPTED: ROWS - len(in_flight), ACCEPTED_RECONCILED: len(in_flight)}
    else:
        # never reached the centre: plainly accepted on the resend
        assert by_state == {ACCEPTED: ROWS}

    stored = [r["serial_no"] for r in store.accepted_rows()]
    assert sorted(stored) == sorted(set(stored)), "a 流水号 stored twice"
    assert set(stored) == set(serials)
    led = Ledger(ledger_url)
    try:
        assert led.accepted_serials(INSTITUTION) == set(stored)
        # the in-flight rows went out exactly once more; every other row exactly once
        attempts = {r["serial_no"]: r["attempts"] for r in led.iter_rows(columns=["serial_no", "attempts"])}
        assert {s for s, n in attempts.items() if n == 2} == in_flight
        assert {s for s, n in attempts.items() if n == 1} == set(serials) - in_flight
        # the dead worker's request is closed in the audit trail, not left open forever
        assert [b["outcome"] for b in led.batches() if b["finished_at"] is None] == []
        assert [b["row_count"] for b in led.batches() if b["outcome"] == "abandoned"] == [BATCH] * k
    finally:
        led.dispose()

"""Every call's deadline is kept by one thread: a call past its deadline has its sockets shut down, a call
that ended (its socket back in the pool) never does, and calls with later deadlines wait their turn."""

from __future__ import annotations

import socket
import threading
import time

from cdyb_jxc.wire import transport
from cdyb_jxc.wire.transport import _Watchdog


def _blocked_read(sock: socket.socket, out: list[bytes]) -> threading.Thread:
    def read() -> None:
        out.append(sock.recv(10))  # b"" once the keeper shuts the socket down

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def test_a_call_past_its_deadline_is_cut_and_one_with_time_left_is_not():
    early_a, early_b = socket.socketpair()
    late_a, late_b = socket.socketpair()
    got: list[bytes] = []
    with _Watchdog(time.monotonic() + 0.2) as early:
        early.attach(early_a)
        with _Watchdog(time.monotonic() + 30) as late:
            late.attach(late_a)
            reader = _blocked_read(early_a, got)
            reader.join(5)
            assert got == [b""]
            assert early.fired
            assert not late.fired
            late_b.send(b"ok")
            assert late_a.recv(10) == b"ok"  # untouched
    for s in (early_a, early_b, late_a, late_b):
        s.close()


def test_a_call_that_ended_is_never_cut_later():
    a, b = socket.socketpair()
    with _Watchdog(time.monotonic() + 0.1) as watch:
        watch.attach(a)
    time.sleep(0.3)
    assert not watch.fired
    b.send(b"still open")
    assert a.recv(20) == b"still open"
    a.close()
    b.close()


def test_one_thread_keeps_every_call():
    before = [t for t in threading.enumerate() if t.name == "cdyb-jxc-deadline"]
    for _ in range(20):
        with _Watchdog(time.monotonic() + 60):
            pass
    keepers = [t for t in threading.enumerate() if t.name == "cdyb-jxc-deadline"]
    assert len(keepers) == 1
    assert len(before) <= 1


def test_a_forked_child_gets_a_keeper_of_its_own():
    parent = transport._KEEPER
    transport._reset_keeper()  # what os.register_at_fork runs in the child
    try:
        assert transport._KEEPER is not parent
        a, b = socket.socketpair()
        got: list[bytes] = []
        with _Watchdog(time.monotonic() + 0.1) as watch:
            watch.attach(a)
            _blocked_read(a, got).join(5)
        assert got == [b""]
        a.close()
        b.close()
    finally:
        transport._KEEPER = parent

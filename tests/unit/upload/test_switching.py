"""The GIL's switch interval while uploads run (cdyb_jxc.upload.switching)."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import pytest

from cdyb_jxc.upload.switching import SWITCH_INTERVAL, sooner_switches


@pytest.fixture(autouse=True)
def default_interval() -> Iterator[float]:
    before = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    yield 0.005
    sys.setswitchinterval(before)


def test_the_interval_is_shorter_while_an_upload_runs_and_back_after():
    with sooner_switches():
        assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL)
    assert sys.getswitchinterval() == pytest.approx(0.005)


def test_the_interval_comes_back_when_the_upload_raises():
    with pytest.raises(RuntimeError), sooner_switches():
        raise RuntimeError("boom")
    assert sys.getswitchinterval() == pytest.approx(0.005)


def test_a_lower_interval_set_before_is_kept():
    sys.setswitchinterval(0.0002)
    low = sys.getswitchinterval()  # as Python keeps it
    with sooner_switches():
        assert sys.getswitchinterval() == low
    assert sys.getswitchinterval() == low


def test_overlapping_uploads_restore_the_interval_once_the_last_one_ends():
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: list[float] = []

    def first() -> None:
        with sooner_switches():
            first_in.set()
            second_in.wait(5)
        first_out.set()

    def second() -> None:
        first_in.wait(5)
        with sooner_switches():
            second_in.set()
            first_out.wait(5)
            seen.append(sys.getswitchinterval())  # the first one ended: still short for this one

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert seen == [pytest.approx(SWITCH_INTERVAL)]
    assert sys.getswitchinterval() == pytest.approx(0.005)


def test_an_interval_someone_sets_during_the_upload_is_left_as_they_set_it():
    with sooner_switches():
        sys.setswitchinterval(0.02)
    assert sys.getswitchinterval() == pytest.approx(0.02)


def test_a_child_forked_during_an_upload_counts_its_own_uploads_from_zero():
    import os

    with sooner_switches():
        pid = os.fork()
        if pid == 0:  # the child: its own upload shortens the interval, and puts back the one it found
            code = 1
            try:
                sys.setswitchinterval(0.004)
                with sooner_switches():
                    during = sys.getswitchinterval()
                after = sys.getswitchinterval()
                code = 0 if during <= SWITCH_INTERVAL and abs(after - 0.004) < 1e-5 else 1
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert sys.getswitchinterval() == pytest.approx(0.005)

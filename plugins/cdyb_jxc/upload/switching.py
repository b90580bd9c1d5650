"""The GIL's switch interval while an upload runs (no Airflow).

An upload's calling thread plans rows and writes the ledger in Python, while its sending threads block in
socket calls. Each time a sending thread returns from one (the request written, the reply's first bytes,
the rest of it) it must take the GIL back, and a thread that wants the GIL waits up to the switch interval
(Python's default: 5 ms) before the running thread is asked to let it go. A reply that is back therefore
sat waiting for the GIL several times over before its slot went to the next batch, and the centre stood
idle meanwhile. While any upload runs, the interval is at most :data:`SWITCH_INTERVAL`; the last upload of
the process to end puts back the interval the first one found, unless someone else set another meanwhile.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SWITCH_INTERVAL = 0.001  # seconds (0.5 and 1 ms measured alike)

_lock = threading.Lock()
_running = 0  # uploads of this process inside sooner_switches()
_found = 0.0  # the interval the first of them found
_set: float | None = None  # the interval it set (None: the one found was short enough)


@contextmanager
def sooner_switches() -> Iterator[None]:
    """While this runs, the switch interval is at most :data:`SWITCH_INTERVAL` (one setting for the
    process, however many uploads run at once; a lower interval set before is left alone)."""
    global _running, _found, _set
    with _lock:
        if _running == 0:
            _found, _set = sys.getswitchinterval(), None
            if _found > SWITCH_INTERVAL:
                sys.setswitchinterval(SWITCH_INTERVAL)
                _set = sys.getswitchinterval()  # as Python keeps it (in whole microseconds)
        _running += 1
    try:
        yield
    finally:
        with _lock:
            _running -= 1
            # an interval someone set while the uploads ran is theirs: it stays
            if _running == 0 and _set is not None and sys.getswitchinterval() == _set:
                sys.setswitchinterval(_found)


def _reset_in_child() -> None:
    # a child forked during an upload runs none of it: its own uploads count from zero (the lock may have
    # been held by the parent's thread)
    global _lock, _running, _set
    _lock, _running, _set = threading.Lock(), 0, None


os.register_at_fork(after_in_child=_reset_in_child)

"""Third-party imports without the parts this package never uses, for a CLI that starts fast (no Airflow)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

_HTTPX_CLI = "httpx._main"


@contextlib.contextmanager
def without_httpx_cli() -> Iterator[None]:
    """Inside the block, a first import of httpx leaves out its command-line client.

    zeep imports httpx for its async transport, which this package never uses, and httpx imports its
    command-line client (click, rich, pygments) with it: a tenth of a second at every start of
    ``cdyb-jxc``. httpx takes a failed import of that client as an install without it (``httpx.main``
    then says to install ``httpx[cli]``); everything else of httpx works. A process that has imported
    httpx already (Airflow's) is left as it is, and after the block ``httpx._main`` imports normally.
    """
    if "httpx" in sys.modules or _HTTPX_CLI in sys.modules:
        yield
        return
    sys.modules[_HTTPX_CLI] = None  # type: ignore[assignment]  # import machinery: "not importable"
    try:
        yield
    finally:
        if sys.modules.get(_HTTPX_CLI, False) is None:
            del sys.modules[_HTTPX_CLI]

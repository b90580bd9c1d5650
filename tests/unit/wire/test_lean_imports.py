"""The client's imports leave out httpx's command-line client (a tenth of a second at every CLI start) and
nothing else: httpx still works, its CLI still imports afterwards, and a process that imported httpx first
is left alone."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, sys
{first}
import cdyb_jxc.wire.client  # zeep and its transports
loaded = sorted(m for m in ("httpx._main", "click", "rich", "pygments") if m in sys.modules)
import httpx
client_works = httpx.Client is not None and httpx.Request("GET", "http://x/").method == "GET"
import httpx._main  # importable after the block
print(json.dumps({{"loaded": loaded, "client_works": client_works}}))
"""


def _probe(first: str = "") -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(first=first)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_client_imports_without_httpx_command_line_client():
    assert _probe() == {"loaded": [], "client_works": True}


def test_a_process_that_imported_httpx_first_keeps_it_whole():
    probe = _probe("import httpx")
    assert "httpx._main" in probe["loaded"]
    assert probe["client_works"]

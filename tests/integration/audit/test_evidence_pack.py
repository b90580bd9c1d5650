"""The evidence pack of a business day: every request and reply that carried its rows (resends too), a
manifest that matches the ledger and the files' sha256, and no 验证码 anywhere."""

from __future__ import annotations

import csv
import hashlib
import io
import zipfile

import pytest

from cdyb_jxc.cli import main
from cdyb_jxc.upload.evidence import export_evidence
from cdyb_jxc.wire.rules import MappingEntry
from tests.conftest import INSTITUTION, SECRET, make_uploader, outbound_row
from tests.integration.reliability.conftest import sqlite_ledger_url

ledger_url = pytest.fixture(sqlite_ledger_url)


def _upload_a_day(profile, client, simulator, ledger) -> None:
    """Day 2026-11-20: 150 rows in two batches, the first one's reply lost once (resent, reconciled), one
    row held back; and a row of another day that must not be in the pack."""
    simulator.set_faults("drop_after_store=1x1")
    rows = [outbound_row(f"D{n:03d}") for n in range(150)]
    rows.append(outbound_row("HELD", 2))  # M0002 is not in the local 对码 copy
    rows.append(outbound_row("OTHER", event_time="2026-11-21 09:00:00"))
    registry = {"M0001": MappingEntry("XA000001")}
    make_uploader(profile, client, ledger, registry=registry, resend_attempts=2).run([rows])


def test_the_pack_holds_every_exchange_of_the_day_and_a_manifest_that_matches(
    profile, client, simulator, ledger, tmp_path
):
    _upload_a_day(profile, client, simulator, ledger)
    pack = export_evidence(ledger, profile, INSTITUTION, "2026-11-20", tmp_path / "out")
    assert pack.rows == 151
    with zipfile.ZipFile(pack.path) as z:
        names = set(z.namelist())
        manifest = list(csv.DictReader(io.StringIO(z.read("manifest.csv").decode("utf-8"))))
        files = {name: z.read(name) for name in names}
    rows = {r["serial_no"]: r for r in ledger.iter_rows()}
    day = {s for s, r in rows.items() if r["business_date"] == "2026-11-20"}
    assert {m["serial_no"] for m in manifest} == day  # OTHER is of another day
    for line in manifest:
        assert line["state"] == rows[line["serial_no"]]["state"]
        for kind in ("request", "reply"):
            if line[f"{kind}_file"]:
                data = files[line[f"{kind}_file"]]
                assert hashlib.sha256(data).hexdigest() == line[f"{kind}_sha256"]
                assert line["serial_no"].encode() in files[line["request_file"]]
    (held,) = [m for m in manifest if m["serial_no"] == "HELD"]
    assert (held["state"], held["batch_id"]) == ("REJECTED", "")  # never sent: listed without a batch
    # the batch whose reply was lost (whichever of the two the centre answered first) went again
    reconciled = sorted(s for s in day if rows[s]["state"] == "ACCEPTED_RECONCILED")
    assert reconciled
    for serial in reconciled:
        lines = [m for m in manifest if m["serial_no"] == serial]
        assert len(lines) == 2  # sent, reply lost, sent again: both exchanges are in the pack
        assert {m["outcome"] for m in lines} >= {"in_doubt"}
    assert pack.batches == len({m["batch_id"] for m in manifest if m["batch_id"]})
    for name, data in files.items():
        assert SECRET.encode() not in data, name
    assert "summary.txt" in names


def test_the_command_writes_the_pack_and_names_it(
    profile, client, simulator, ledger, ledger_url, tmp_path, capsys
):
    _upload_a_day(profile, client, simulator, ledger)
    args = ["audit", "export", "--ledger", ledger_url, "--institution", INSTITUTION, "--day", "2026-11-20"]
    assert main([*args, "--out", str(tmp_path / "pack")]) == 0
    out = capsys.readouterr().out
    assert f"evidence_{INSTITUTION}_2026-11-20.zip" in out
    assert main([*args[:-2], "--day", "20.11.2026", "--out", str(tmp_path)]) == 2

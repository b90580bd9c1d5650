"""The evidence pack of one business day, for an inspection by the bureau (no Airflow).

A zip holding every request and reply that carried one of day D's rows, as the ledger's audit kept them
(the 交易访问验证码 redacted when they were recorded, and its tag masked again here), a ``manifest.csv`` with
one line per row and batch (流水号, transaction, state, batch, sent and answered timestamps, each file and
its sha256), and a ``summary.txt``. Batches are streamed one at a time: memory stays flat whatever the day.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import zipfile
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from html import unescape
from pathlib import Path
from typing import Any

from sqlalchemy import select

from cdyb_jxc.ledger import Ledger
from cdyb_jxc.ledger.batch_store import decompress
from cdyb_jxc.ledger.schema import upload_batch, upload_row
from cdyb_jxc.wire.codec import redact_request
from cdyb_jxc.wire.profile import Profile

MANIFEST = (
    "serial_no",
    "transaction_code",
    "state",
    "category",
    "batch_id",
    "sent_at",
    "answered_at",
    "outcome",
    "request_file",
    "request_sha256",
    "reply_file",
    "reply_sha256",
)
# batches of the day's rows are looked for from a little before the first row was seen
_MARGIN = timedelta(minutes=5)


@dataclass(frozen=True)
class EvidencePack:
    """A written evidence pack: the zip, the day's rows and the batches that carried them."""

    path: Path
    rows: int
    batches: int


@dataclass(frozen=True)
class _Files:
    batch: dict[str, Any]
    request: tuple[str, str] | None  # (name in the zip, sha256)
    reply: tuple[str, str] | None


def export_evidence(
    ledger: Ledger, profile: Profile, institution_code: str, day: str, out_dir: str | Path
) -> EvidencePack:
    """Write ``evidence_<institution>_<day>.zip`` into ``out_dir``.

    :param ledger: the ledger
    :param profile: the interface profile (the tags of the 流水号 and of the 验证码)
    :param institution_code: 定点机构编码
    :param day: the business day (``YYYY-MM-DD``)
    :param out_dir: where the zip goes (created if missing)
    """
    rows = _day_rows(ledger, institution_code, day)
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"evidence_{institution_code}_{day}.zip"
    carried: dict[str, list[_Files]] = defaultdict(list)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as pack:
        batches = 0
        for batch, serials in _batches_of(ledger, profile, institution_code, rows):
            files = _Files(
                batch,
                _add(
                    pack, f"batches/{batch['id']:08d}_request.xml", redact_request(profile, batch["request"])
                ),
                _add(pack, f"batches/{batch['id']:08d}_reply.xml", batch["reply"]),
            )
            for serial in serials:
                carried[serial].append(files)
            batches += 1
        pack.writestr("manifest.csv", _manifest(rows, carried))
        pack.writestr("summary.txt", _summary(institution_code, day, rows, batches))
    return EvidencePack(path, len(rows), batches)


def _day_rows(ledger: Ledger, institution_code: str, day: str) -> dict[str, dict[str, Any]]:
    t = upload_row.c
    columns = [t.serial_no, t.transaction_code, t.state, t.category, t.first_seen_at, t.updated_at]
    query = select(*columns).where(t.institution_code == institution_code, t.business_date == day)
    with ledger.engine.connect() as conn:
        return {r.serial_no: dict(r._mapping) for r in conn.execute(query.order_by(t.serial_no))}


def _batches_of(
    ledger: Ledger, profile: Profile, institution_code: str, rows: dict[str, dict[str, Any]]
) -> Iterator[tuple[dict[str, Any], list[str]]]:
    """Each audit batch that carried one of ``rows`` (read from its request), with those 流水号."""
    if not rows:
        return
    b = upload_batch.c
    since: datetime = min(r["first_seen_at"] for r in rows.values()) - _MARGIN
    codes = sorted({r["transaction_code"] for r in rows.values()})
    query = (
        select(upload_batch)
        .where(b.institution_code == institution_code, b.transaction_code.in_(codes), b.started_at >= since)
        .order_by(b.id)
    )
    tags = sorted({re.escape(profile.transaction(code).by_name["serial_no"].tag) for code in codes})
    serial_re = re.compile(rf"<({'|'.join(tags)})>([^<]*)</\1>")
    with ledger.engine.connect() as conn:
        for record in conn.execution_options(stream_results=True, yield_per=50).execute(query):
            batch = dict(record._mapping)
            request = decompress(batch.pop("request_gz")) or ""
            found = sorted({unescape(m.group(2)) for m in serial_re.finditer(request)} & rows.keys())
            if found:
                batch["request"], batch["reply"] = request, decompress(batch.pop("reply_gz"))
                yield batch, found


def _add(pack: zipfile.ZipFile, name: str, text: str | None) -> tuple[str, str] | None:
    if text is None:
        return None
    data = text.encode("utf-8")
    pack.writestr(name, data)
    return name, hashlib.sha256(data).hexdigest()


def _manifest(rows: dict[str, dict[str, Any]], carried: dict[str, list[_Files]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(MANIFEST)
    for serial, row in rows.items():
        head = [serial, row["transaction_code"], row["state"], row["category"] or ""]
        if not carried.get(serial):  # never sent (held back): listed without a batch
            writer.writerow([*head, *[""] * (len(MANIFEST) - len(head))])
        for files in carried.get(serial, []):
            batch = files.batch
            request, reply = files.request or ("", ""), files.reply or ("", "")
            times = [_at(batch["started_at"]), _at(batch["finished_at"])]
            writer.writerow([*head, batch["id"], *times, batch["outcome"] or "", *request, *reply])
    return out.getvalue()


def _summary(institution_code: str, day: str, rows: dict[str, dict[str, Any]], batches: int) -> str:
    states = Counter((r["transaction_code"], r["state"]) for r in rows.values())
    lines = [
        f"定点机构编码 institution: {institution_code}",
        f"业务日期 business day: {day}",
        f"rows: {len(rows)}; batches that carried them: {batches}",
        "the 交易访问验证码 is redacted in every file; timestamps are UTC",
        "",
        "transaction  state  rows",
        *(f"{txn}  {state}  {n}" for (txn, state), n in sorted(states.items())),
    ]
    return "\n".join(lines) + "\n"


def _at(value: datetime | None) -> str:
    return value.isoformat(sep=" ") if value else ""

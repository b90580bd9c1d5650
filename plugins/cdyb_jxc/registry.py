"""Local copy of the 对码 registry, used to hold back rows the centre would answer 【未对码】 (no Airflow)."""

from __future__ import annotations

import csv
from pathlib import Path

from cdyb_jxc.exceptions import SourceDataError
from cdyb_jxc.validation import MappingEntry


def load_registry(path: str | Path) -> dict[str, MappingEntry]:
    """Read a CSV with ``mapping_serial_no,insurance_item_code[,off_hospital_delivery]`` (extra columns, such
    as ``institution_code``, are ignored)."""
    file = Path(path)
    try:
        with file.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            missing = {"mapping_serial_no", "insurance_item_code"} - set(reader.fieldnames or [])
            if missing:
                raise SourceDataError(f"对码 file {file} lacks column(s): {', '.join(sorted(missing))}")
            return {
                rec["mapping_serial_no"]: MappingEntry(
                    rec["insurance_item_code"], (rec.get("off_hospital_delivery") or "0").strip() == "1"
                )
                for rec in reader
                if rec["mapping_serial_no"]
            }
    except OSError as err:
        raise SourceDataError(f"cannot read 对码 file {file}: {err}") from err

"""Local copy of the 对码 registry, used to hold back rows the centre would answer 【未对码】 (no Airflow).

The file is read whole, through the same CSV checks as a source file (encoding, quoting, a header spelled
exactly and not repeated, every line as wide as the header), before anything is sent: a problem is a
:class:`SourceDataError` naming the line.
"""

from __future__ import annotations

from pathlib import Path

from cdyb_jxc.exceptions import SourceDataError
from cdyb_jxc.upload.sources.csv_file import DEFAULT_ENCODING, checked_records, ragged
from cdyb_jxc.upload.sources.header import check_columns
from cdyb_jxc.wire.profile import FieldSpec, TransactionSpec
from cdyb_jxc.wire.rules import MappingEntry

_FIX = "save it as 'CSV UTF-8'"
# the 对码 file's columns, checked like a transaction's (institution_code is known, and ignored)
MAPPING_COLUMNS = TransactionSpec(
    key="mapping",
    code="对码",
    name="对码文件",
    fields=(
        FieldSpec("mapping_serial_no", "", "对码流水号", "C", "Y"),
        FieldSpec("insurance_item_code", "", "医保项目编码", "C", "Y"),
        FieldSpec("off_hospital_delivery", "", "院外配送", "C", "N"),
        FieldSpec("institution_code", "", "机构编码", "C", "N"),
    ),
)


def load_registry(path: str | Path) -> dict[str, MappingEntry]:
    """Read a CSV with ``mapping_serial_no,insurance_item_code[,off_hospital_delivery]`` (UTF-8, with or
    without BOM; other columns, such as ``institution_code``, are ignored).

    :param path: the file
    """
    file = Path(path)
    where = f"对码 file {file}"
    registry: dict[str, tuple[int, MappingEntry]] = {}
    try:
        records = checked_records(file, DEFAULT_ENCODING, fix=_FIX)
        first = next(records, None)
        if first is None:
            raise SourceDataError(f"{where} is empty")
        columns = check_columns(MAPPING_COLUMNS, first[1], where).columns
        for line, cells in records:
            if len(cells) != len(columns):
                raise ragged(file, line, cells, len(columns))
            _add(registry, dict(zip(columns, cells, strict=True)), where, line)
    except OSError as err:
        raise SourceDataError(f"cannot read {where}: {err}") from err
    return {serial: entry for serial, (_, entry) in registry.items()}


def _add(registry: dict[str, tuple[int, MappingEntry]], rec: dict[str, str], where: str, line: int) -> None:
    """Add one line; an empty key or a 对码流水号 given two different codes is refused."""
    for name in ("mapping_serial_no", "insurance_item_code"):
        if not rec[name].strip():
            raise SourceDataError(f"{where} line {line}: {name} is empty")
    serial = rec["mapping_serial_no"]
    entry = MappingEntry(rec["insurance_item_code"], (rec.get("off_hospital_delivery") or "0").strip() == "1")
    known = registry.get(serial)
    if known is not None and known[1] != entry:
        raise SourceDataError(
            f"{where} line {line}: mapping_serial_no {serial!r} is already mapped differently at line"
            f" {known[0]} (which one is right is ambiguous)"
        )
    registry.setdefault(serial, (line, entry))

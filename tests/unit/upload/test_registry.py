"""The local copy of the 对码 registry: read whole and checked before anything is sent (more refusals, each
naming its line, are in tests/unit/upload/sources/test_file_identity.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdyb_jxc.exceptions import SourceDataError
from cdyb_jxc.upload.registry import load_registry
from cdyb_jxc.wire.rules import MappingEntry


def mapping_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "对码.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_registry_maps_each_serial_to_its_code_and_delivery_flag(tmp_path):
    path = mapping_file(
        tmp_path,
        'mapping_serial_no,insurance_item_code,off_hospital_delivery,note\nM1,XA1, 1 ,"a, b"\n\nM2,XA2,0,\n',
    )

    assert load_registry(path) == {"M1": MappingEntry("XA1", True), "M2": MappingEntry("XA2", False)}


def test_delivery_column_may_be_left_out(tmp_path):
    path = mapping_file(tmp_path, "\ufeffinsurance_item_code,mapping_serial_no\nXA1,M1\n")

    assert load_registry(path) == {"M1": MappingEntry("XA1", False)}


def test_a_header_without_rows_is_an_empty_registry(tmp_path):
    assert load_registry(mapping_file(tmp_path, "mapping_serial_no,insurance_item_code\n")) == {}


def test_an_empty_file_is_refused(tmp_path):
    path = mapping_file(tmp_path, "")

    with pytest.raises(SourceDataError, match=f"对码 file {path} is empty"):
        load_registry(path)


def test_a_header_without_the_item_code_is_refused_naming_the_column(tmp_path):
    path = mapping_file(tmp_path, "mapping_serial_no,item_code\nM1,XA1\n")

    with pytest.raises(SourceDataError, match=r"lacks required column.*insurance_item_code"):
        load_registry(path)


def test_a_later_bad_line_refuses_the_whole_file(tmp_path):
    path = mapping_file(tmp_path, "mapping_serial_no,insurance_item_code\nM1,XA1\nM2,XA2\nM3,XA3,extra\n")

    with pytest.raises(SourceDataError, match="line 4 has 3 values where the header has 2 columns"):
        load_registry(path)


def test_a_missing_file_is_a_source_data_error(tmp_path):
    with pytest.raises(SourceDataError, match="cannot read 对码 file"):
        load_registry(tmp_path / "missing.csv")

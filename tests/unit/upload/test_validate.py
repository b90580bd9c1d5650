"""validate_rows: the rows an upload would hold back, with the upload's own texts, read as it reads them."""

from __future__ import annotations

from collections.abc import Iterator

from cdyb_jxc.exceptions import SourceDataError
from cdyb_jxc.upload.validate import SOURCE_ISSUE, Validation, Verdict, validate_rows
from cdyb_jxc.wire.rules import MappingEntry
from tests.conftest import outbound_row


def _found(profile, rows, chunks=1, registry=None, counts=None):
    size = max(1, len(rows) // chunks)
    parts = [rows[i : i + size] for i in range(0, len(rows), size)]
    return list(validate_rows(profile, "outbound", parts, registry=registry, counts=counts))


def test_clean_rows_give_nothing_and_count_every_row(profile):
    counts = Validation()
    assert _found(profile, [outbound_row("A1"), outbound_row("A2", 2)], counts=counts) == []
    assert (counts.rows, counts.problems, counts.verdict) == (2, 0, Verdict.ALL_SENT)


def test_a_repeat_in_a_later_chunk_is_found_as_the_upload_finds_it(profile):
    counts = Validation()
    rows = [outbound_row("A1"), outbound_row("A2"), outbound_row("A1", quantity="9")]
    (problem,) = _found(profile, rows, chunks=3, counts=counts)
    assert (problem.row, problem.serial_no, problem.category) == (3, "A1", SOURCE_ISSUE)
    assert problem.detail == "流水号在数据源中重复(源数据第3行)，仅上传第一条"
    assert counts.verdict == Verdict.HELD_BACK


def test_a_row_without_serial_is_named_by_its_row(profile):
    (problem,) = _found(profile, [outbound_row("A1"), outbound_row("  ")])
    assert (problem.row, problem.serial_no, problem.field) == (2, None, "serial_no")
    assert problem.detail == "源数据第2行: 流水号(yka105)不能为空"


def test_r3_uses_the_mapping_copy_only_when_given(profile):
    rows = [outbound_row("A1", 1), outbound_row("A2", 2)]
    registry = {"M0001": MappingEntry("XA000001")}
    assert _found(profile, rows) == []
    (problem,) = _found(profile, rows, registry=registry)
    assert (problem.serial_no, problem.category, problem.field) == ("A2", "未对码", "mapping_serial_no")


def test_a_source_that_breaks_midway_ends_with_one_problem_for_the_whole_source(profile):
    def chunks() -> Iterator[list[dict[str, str]]]:
        yield [outbound_row("A1", quantity="x")]
        raise SourceDataError("out.csv changed after it was checked (line 9): run again")

    counts = Validation()
    problems = list(validate_rows(profile, "outbound", chunks(), counts=counts))
    assert [p.row for p in problems] == [1, None]
    assert problems[1].category == SOURCE_ISSUE
    assert problems[1].detail.startswith("out.csv changed")
    assert counts.problems == 2

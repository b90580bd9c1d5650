"""Bad-input corpus, source files: ambiguous means refused, before anything is sent.

Each case feeds one bad source file through the real code path (the uploader, or the operator, against the
real simulator) and asserts the exact message. Whole-file problems stop before the first request
(``simulator.requests == 0``) and leave the ledger empty, wherever in the file they are; rows that are only
individually bad end in the ledger with their reason. The same files through ``cdyb-jxc upload`` are in
``test_bad_input_corpus_cli.py``; the rules of the corpus are in ``conftest.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from cdyb_jxc.exceptions import SourceDataError
from cdyb_jxc.ledger import ACCEPTED, REJECTED, Ledger
from cdyb_jxc.upload.sources import iter_file_chunks
from cdyb_jxc.wire.client import CentreClient
from cdyb_jxc.wire.profile import Profile
from tests.conftest import inbound_row, make_uploader, outbound_row, write_csv
from tests.integration.reliability.conftest import (
    CSV_HINT,
    FEW_COLUMNS,
    LACKS,
    RAGGED,
    csv_text,
    ledger_rows,
    long_csv,
    sqlite_ledger_url,
    write_xlsx,
)

ledger_url = pytest.fixture(sqlite_ledger_url)


def _upload(
    profile: Profile, client: CentreClient, ledger: Ledger, path: Path, txn: str = "outbound", **kw: Any
):
    uploader = make_uploader(profile, client, ledger, txn)
    return uploader.run(iter_file_chunks(path, profile.transaction(txn), **kw))


def _header(first: str) -> Callable[[Path], Path]:
    def write(path: Path) -> Path:
        text = csv_text([outbound_row("CK1"), outbound_row("CK2")], path.parent)
        path.write_text(first + text[text.index(",") :], encoding="utf-8")
        return path

    return write


# (file name, writer, exact message with {path})
WHOLE_FILE_CASES = [
    pytest.param(
        "out.csv",
        lambda p: long_csv(p.parent, RAGGED),
        "{path} line 6000 has 11 values where the header has 10 columns" + CSV_HINT,
        id="ragged-row-at-line-6000-of-7000",
    ),
    pytest.param(
        "out.csv",
        lambda p: long_csv(p.parent, "CK9,XA000001,x,M0001,0,盒,21"),
        "{path} line 6000 has 7 values where the header has 10 columns" + CSV_HINT,
        id="short-row-at-line-6000-of-7000",
    ),
    pytest.param(
        "out.csv",
        lambda p: long_csv(p.parent, 'CK9,XA000001,"x"y,M0001,0,盒,21,12.5,2,2026-11-20 10:00:00'),
        "{path} line 6000: malformed CSV (',' expected after '\"')",
        id="bad-quote-at-line-6000",
    ),
    pytest.param(
        "out.csv",
        lambda p: long_csv(
            p.parent, 'CK9,XA000001,"x,M0001,0,盒,21,12.5,2,2026-11-20 10:00:00', at_line=6999
        ),
        "{path} line 6999: a quoted value opened there is never closed (malformed CSV)",
        id="unclosed-quote-near-the-end",
    ),
    pytest.param(
        "out.csv",
        lambda p: p.write_bytes(
            long_csv(p.parent, "CK9,XA000001,阿莫西林,M0001,0,盒,21,12.5,2,2026-11-20 10:00:00")
            .read_bytes()
            .replace("阿莫西林,".encode(), "阿莫西林,".encode("gbk"))
        ),
        # the rest of the file is UTF-8 Chinese, which GB18030 cannot read either: a mixed file
        "{path} is not UTF-8 (undecodable byte 0xb0 at line 6000) nor GB18030: pass its encoding with"
        " --encoding (operator: encoding)",
        id="one-gbk-line-at-6000",
    ),
    pytest.param(
        "out.csv",
        _header(" serial_no"),
        "{path}: column(s) match the profile's logical names only after trimming spaces or ignoring case:"
        " ' serial_no' (for serial_no); rename them exactly",
        id="header-with-leading-space",
    ),
    pytest.param(
        "out.csv",
        _header("Serial_No"),
        "{path}: column(s) match the profile's logical names only after trimming spaces or ignoring case:"
        " 'Serial_No' (for serial_no); rename them exactly",
        id="header-in-other-case",
    ),
    pytest.param(
        "out.csv",
        _header("unit"),
        "{path}: column(s) appear more than once in the header: 'unit' at positions 1, 6"
        " (which one holds the data is ambiguous)",
        id="header-repeated",
    ),
    pytest.param(
        "out.xlsx",
        lambda p: write_xlsx(p, [outbound_row("CK1")], {"汇总": [["合计", 2]]}),
        "{path} has 2 sheets with data ('出库', '汇总'): name the one to upload with --sheet"
        " (operator argument sheet)",
        id="xlsx-two-sheets-with-data",
    ),
    pytest.param(
        "out.xlsx",
        lambda p: write_xlsx(p, [outbound_row("CK1"), outbound_row("CK2", serial_no=20261120000123456789)]),
        "{path} cell A3 (column serial_no) holds the number 2.026112000012346e+19, longer than Excel keeps"
        " exactly (digits are already lost): format the column as text in Excel and enter the values again",
        id="xlsx-serial-beyond-float-precision",
    ),
    pytest.param(
        "out.xlsx",
        lambda p: write_xlsx(p, [outbound_row("CK1"), outbound_row("CK2", sale_price="=B2*2")]),
        "{path} cell H3 (column sale_price) holds a formula without a calculated value (the workbook was"
        " written by a program that never calculated it): open and save it in Excel, or paste the values",
        id="xlsx-formula-never-calculated",
    ),
    pytest.param(
        "out.xlsx",
        lambda p: write_xlsx(p, [outbound_row("CK1", quantity="#VALUE!")]),
        "{path} cell I2 (column quantity) holds the Excel error #VALUE!: correct the cell or its formula",
        id="xlsx-error-value",
    ),
]


@pytest.mark.parametrize(("name", "writer", "message"), WHOLE_FILE_CASES)
def test_whole_file_problem_anywhere_stops_before_the_first_request(
    profile, simulator, client, ledger, tmp_path, name, writer, message
):
    path = tmp_path / name
    writer(path)
    with pytest.raises(SourceDataError) as info:
        _upload(profile, client, ledger, path)
    assert str(info.value) == message.format(path=path)
    assert simulator.requests == 0
    assert ledger_rows(ledger) == {}


def test_the_same_7000_rows_without_the_ragged_line_all_go_out(profile, simulator, client, ledger, tmp_path):
    """The control for the ragged case: it is the one line that stops the file, not its size."""
    src = long_csv(tmp_path, None)
    result = _upload(profile, client, ledger, src)
    assert result.rows_read == 7000
    assert result.states[ACCEPTED] == 7000
    assert simulator.requests == 70


# ---------------------------------------------------------------------------------------------------------
# whole-source errors of every reader: stopped before anything is sent
# ---------------------------------------------------------------------------------------------------------


def _write_parquet(path: Path, rows: list[dict[str, Any]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)


SOURCE_CASES = [
    # (name, writer, exact message or prefix, exact?)
    pytest.param("out.csv", lambda p: write_csv(p, FEW_COLUMNS), LACKS, True, id="csv-missing-columns"),
    pytest.param(
        "out.csv",
        lambda p: p.write_text("serial_no,quantity\n", encoding="utf-8"),
        LACKS,
        True,
        id="csv-header-only-missing-columns",
    ),
    pytest.param("out.xlsx", lambda p: write_xlsx(p, FEW_COLUMNS), LACKS, True, id="xlsx-missing-columns"),
    pytest.param(
        "out.parquet", lambda p: _write_parquet(p, FEW_COLUMNS), LACKS, True, id="parquet-missing-columns"
    ),
    pytest.param("out.csv", lambda p: p.write_bytes(b""), "{path} is empty", True, id="empty-csv"),
    pytest.param("out.xlsx", lambda p: write_xlsx(p, None), "{path} is empty", True, id="empty-xlsx"),
    pytest.param(
        "out.json",
        lambda p: p.write_text("[]", encoding="utf-8"),
        "{path}: unsupported file type '.json' (use .csv, .parquet or .xlsx)",
        True,
        id="unsupported-file-type",
    ),
    pytest.param(
        "out.xls",
        lambda p: p.write_bytes(b"\xd0\xcf\x11\xe0"),
        "{path}: unsupported file type '.xls' (use .csv, .parquet or .xlsx)",
        True,
        id="old-excel-file-type",
    ),
    pytest.param("out.csv", None, "source file {path} does not exist", True, id="file-does-not-exist"),
    pytest.param(
        "out.csv",
        lambda p: p.write_bytes(
            write_csv(p, [outbound_row("CK1")]).read_text(encoding="utf-8").encode("gbk")
        ),
        "{path} is not UTF-8 (undecodable byte 0xb0 at line 2); it reads as GB18030: pass --encoding gb18030"
        " (operator argument encoding='gb18030')",
        True,
        id="csv-saved-as-gbk",
    ),
    pytest.param(
        "out.csv",
        lambda p: p.write_text(
            write_csv(p, [outbound_row("CK1")]).read_text(encoding="utf-8") + '"CK2,1\n', encoding="utf-8"
        ),
        "{path} line 3: a quoted value opened there is never closed (malformed CSV)",
        True,
        id="csv-unterminated-quote",
    ),
    pytest.param(
        "out.xlsx",
        lambda p: p.write_text("<html><table><tr><td>HIS export</td></tr></table></html>", encoding="utf-8"),
        "cannot read {path}: File is not a zip file",
        True,
        id="xlsx-that-is-not-excel",
    ),
    pytest.param(
        "out.parquet",
        lambda p: p.write_text("serial_no\nCK1\n", encoding="utf-8"),
        "cannot read {path}: ",
        False,
        id="parquet-that-is-not-parquet",
    ),
]


@pytest.mark.parametrize(("name", "writer", "message", "exact"), SOURCE_CASES)
def test_whole_source_error_stops_before_sending(
    profile, simulator, client, ledger, tmp_path, name, writer, message, exact
):
    path = tmp_path / name
    if writer is not None:
        writer(path)
    txn = profile.transaction("outbound")
    with pytest.raises(SourceDataError) as info:
        make_uploader(profile, client, ledger).run(iter_file_chunks(path, txn))
    expected = message.format(path=path)
    if exact:
        assert str(info.value) == expected
    else:
        assert str(info.value).startswith(expected)
        assert len(str(info.value)) > len(expected)  # the reader's own reason follows
    assert simulator.requests == 0
    assert ledger_rows(ledger) == {}


# ---------------------------------------------------------------------------------------------------------
# values that reach the centre: read as meant, or held back with their reason
# ---------------------------------------------------------------------------------------------------------


def test_gbk_csv_with_encoding_is_stored_with_its_chinese_text(
    profile, simulator, store, client, ledger, tmp_path
):
    src = tmp_path / "in.csv"
    row = inbound_row("RK1", supplier_name="国药控股四川医药股份有限公司", remark="饮片（散装）")
    src.write_bytes(csv_text([row], tmp_path).encode("gbk"))
    result = _upload(profile, client, ledger, src, txn="inbound", encoding="gb18030")
    assert result.states[ACCEPTED] == 1
    (stored,) = store.accepted_rows()
    assert (stored["supplier_name"], stored["remark"]) == ("国药控股四川医药股份有限公司", "饮片（散装）")


def test_blank_and_null_marker_values_are_never_sent_as_data(profile, simulator, client, ledger, tmp_path):
    rows = [
        inbound_row("RK1"),
        inbound_row("RK2", lot_no="   "),  # required, whitespace only
        inbound_row("RK3", lot_no="NULL"),  # required, the HIS export's null marker
        inbound_row("RK4", remark="\\N", invoice_no=" "),  # optional: absent, the row goes out
        inbound_row("   "),  # no usable 流水号
    ]
    src = write_csv(tmp_path / "in.csv", rows)
    result = _upload(profile, client, ledger, src, txn="inbound")
    kept = ledger_rows(ledger)
    assert {s: r["state"] for s, r in kept.items()} == {
        "RK1": ACCEPTED,
        "RK2": REJECTED,
        "RK3": REJECTED,
        "RK4": ACCEPTED,
    }
    assert kept["RK2"]["detail"] == kept["RK3"]["detail"] == "批号(ykc010)不能为空" or (
        kept["RK2"]["field"] == kept["RK3"]["field"] == "lot_no"
    )
    assert kept["RK2"]["held_back"] == 1
    assert result.source_issues == 1
    assert simulator.requests == 1


def test_excel_serials_and_times_arrive_as_in_the_cell(profile, simulator, store, client, ledger, tmp_path):
    row = outbound_row("X", serial_no=2026112000012345, event_time=datetime(2026, 11, 20, 23, 59, 59, 999600))
    src = write_xlsx(tmp_path / "out.xlsx", [row])
    result = _upload(profile, client, ledger, src)
    assert result.states[ACCEPTED] == 1
    (stored,) = store.accepted_rows()
    assert (stored["serial_no"], stored["event_time"]) == ("2026112000012345", "2026-11-20 23:59:59")


def test_excel_sheet_named_is_the_one_read(profile, simulator, client, ledger, tmp_path):
    src = write_xlsx(tmp_path / "out.xlsx", [outbound_row("CK1")], {"汇总": [["合计", 2]]})
    result = _upload(profile, client, ledger, src, sheet="出库")
    assert result.states[ACCEPTED] == 1
    with pytest.raises(SourceDataError) as info:
        _upload(profile, client, ledger, src, sheet="Sheet1")
    assert str(info.value) == f"{src} has no sheet named 'Sheet1' (sheets: '出库', '汇总')"


# ---------------------------------------------------------------------------------------------------------
# the operators take the same options
# ---------------------------------------------------------------------------------------------------------


def _ti() -> Any:
    return SimpleNamespace(dag_id="d", run_id="r", task_id="outbound", map_index=-1, try_number=1)


def test_operator_sheet_and_encoding_arguments(centre_conn, simulator, tmp_path):
    from airflow.sdk.exceptions import AirflowFailException

    from cdyb_jxc.operators.upload import CdybJxcOutboundOperator

    ledger_url = f"sqlite:///{tmp_path}/l.db"
    book = write_xlsx(tmp_path / "out.xlsx", [outbound_row("CK1")], {"汇总": [["合计", 2]]})
    gbk = tmp_path / "out.csv"
    gbk.write_bytes(csv_text([outbound_row("CK2")], tmp_path).encode("gbk"))
    for source, kw in ((book, {}), (gbk, {})):
        op = CdybJxcOutboundOperator(task_id="outbound", source_file=str(source), ledger_url=ledger_url, **kw)
        with pytest.raises(AirflowFailException):
            op.execute({"ti": _ti()})  # type: ignore[arg-type]
    assert simulator.requests == 0
    for source, kw in ((book, {"sheet": "出库"}), (gbk, {"encoding": "gb18030"})):
        op = CdybJxcOutboundOperator(task_id="outbound", source_file=str(source), ledger_url=ledger_url, **kw)
        summary = op.execute({"ti": _ti()})  # type: ignore[arg-type]
        assert summary["states"][ACCEPTED] == 1

"""``cdyb-jxc audit balance``: the SPEC-style CSV columns, the exit codes, the source and mapping options."""

from __future__ import annotations

import csv
import io

import pytest

from cdyb_jxc.cli import main
from cdyb_jxc.ledger import Ledger
from tests.unit.upload.test_balance import A, H, R, _rows


@pytest.fixture
def ledger_url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = Ledger(url)
    _rows(
        ledger,
        ("stock", "2026-11-19", "M1", 10, A),
        ("in", "2026-11-20", "M1", 2, A),
        ("out", "2026-11-20", "M1", 12 / 24, A),
        ("out", "2026-11-20", "M1", 5, R),
        ("stock", "2026-11-20", "M1", 11.5, A),
        ("out", "2026-11-21", "M1", 1, A),
        ("stock", "2026-11-21", "M1", 10, A),
    )
    ledger.dispose()
    return url


def _audit(capsys, url: str, *extra: str) -> tuple[int, list[list[str]]]:
    code = main(["audit", "balance", "--ledger", url, "--institution", H, "--format", "csv", *extra])
    return code, list(csv.reader(io.StringIO(capsys.readouterr().out)))


def test_a_balanced_period_exits_0(capsys, ledger_url):
    code, lines = _audit(capsys, ledger_url, "--from", "2026-11-20", "--to", "2026-11-20")
    assert code == 0
    assert lines == [
        [
            "business_date",
            "mapping_serial_no",
            "opening",
            "inbound",
            "outbound",
            "closing",
            "difference",
            "status",
        ],
        ["2026-11-20", "M1", "10", "2", "0.5", "11.5", "0", "ok"],
    ]


def test_an_imbalance_exits_1(capsys, ledger_url):
    code, lines = _audit(capsys, ledger_url, "--from", "2026-11-20", "--to", "2026-11-21")
    assert code == 1
    assert lines[2] == ["2026-11-21", "M1", "11.5", "0", "1", "10", "-0.5", "imbalance"]


def test_the_source_audit_shows_what_the_his_says(capsys, ledger_url):
    code, lines = _audit(capsys, ledger_url, "--from", "2026-11-20", "--to", "2026-11-20", "--source")
    assert code == 1
    assert lines[1][4:] == ["5.5", "11.5", "5", "imbalance"]


def test_off_hospital_items_from_the_mapping_copy(capsys, ledger_url, tmp_path):
    mapping = tmp_path / "mapping.csv"
    mapping.write_text(
        "mapping_serial_no,insurance_item_code,off_hospital_delivery\nM1,XA1,1\n", encoding="utf-8"
    )
    code, lines = _audit(
        capsys, ledger_url, "--from", "2026-11-21", "--to", "2026-11-21", "--mapping", str(mapping)
    )
    assert code == 0
    assert lines[1][-1] == "off_hospital"


def test_text_format_ends_with_the_counts(capsys, ledger_url):
    code = main(
        [
            "audit",
            "balance",
            "--ledger",
            ledger_url,
            "--institution",
            H,
            "--from",
            "2026-11-21",
            "--to",
            "2026-11-21",
        ]
    )
    out = capsys.readouterr().out.strip().splitlines()
    assert code == 1
    assert out[-1].startswith("ok: 0, imbalance: 1")


@pytest.mark.parametrize(
    "dates",
    [("2026-11-21", "2026-11-20"), ("2026-11-20", "21.11.2026"), ("2026-02-30", "2026-03-01")],
    ids=["reversed", "bad-format", "impossible"],
)
def test_bad_dates_are_usage_errors(capsys, ledger_url, dates):
    assert (
        main(
            [
                "audit",
                "balance",
                "--ledger",
                ledger_url,
                "--institution",
                H,
                "--from",
                dates[0],
                "--to",
                dates[1],
            ]
        )
        == 2
    )


def test_a_ledger_file_that_does_not_exist_is_not_created(tmp_path, capsys):
    missing = tmp_path / "nothing.db"
    args = ["audit", "balance", "--ledger", f"sqlite:///{missing}", "--institution", H]
    assert main([*args, "--from", "2026-11-20", "--to", "2026-11-20"]) == 2
    assert not missing.exists()
    assert "no such ledger file" in capsys.readouterr().err

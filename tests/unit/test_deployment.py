"""The deployment file: read, defaults applied, and every mistake named by its key path, all at once."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cdyb_jxc.deployment import (
    CONFIG_VAR,
    PACKAGED_SQL,
    deployment_institutions,
    find_config,
    load_deployment,
)
from cdyb_jxc.exceptions import DeploymentConfigError
from cdyb_jxc.wire.connection import build_settings

GOOD = """\
defaults:
  ledger_conn_id: cdyb_jxc_ledger
  report_dir: reports
  schedule: "30 3 * * *"
  start_date: 2026-02-01
  recheck_days: 5
  notify: webhook:https://hooks.example.org/x
  pool: cdyb_jxc_centre
institutions:
  - code: H51010400001
    name: 示例医院本部
    conn_id: cdyb_jxc_h1
    source_conn_id: his_main
    sql_dir: sql/main
    mapping_file: mapping_main.csv
  - code: H51010400002
    name: 示例医院东院
    conn_id: cdyb_jxc_h2
    source_conn_id: his_east
    recheck_days: 2
    schedule: "0 4 * * *"
"""


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "sql" / "main").mkdir(parents=True, exist_ok=True)
    for name in ("init.sql", "inbound.sql", "outbound.sql", "stock.sql"):
        (tmp_path / "sql" / "main" / name).write_text("SELECT 1", encoding="utf-8")
    (tmp_path / "mapping_main.csv").write_text("x\n", encoding="utf-8")
    path = tmp_path / "cdyb_jxc.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(DeploymentConfigError) as info:
        load_deployment(_write(tmp_path, text), {"AIRFLOW_HOME": str(tmp_path / "home")})
    return info.value.problems


def test_each_institution_gets_the_defaults_under_its_own_keys(tmp_path):
    deployment = load_deployment(_write(tmp_path, GOOD), {"AIRFLOW_HOME": str(tmp_path / "home")})
    main, east = deployment.institutions
    assert (main.code, main.settings.institution_name, main.settings.conn_id) == (
        "H51010400001",
        "示例医院本部",
        "cdyb_jxc_h1",
    )
    assert main.sql_dir == str(tmp_path / "sql" / "main")  # relative to the file
    assert main.settings.mapping_file == str(tmp_path / "mapping_main.csv")
    assert main.settings.report_dir == str(tmp_path / "reports")
    assert (main.schedule, main.settings.recheck_days, main.pool) == ("30 3 * * *", 5, "cdyb_jxc_centre")
    assert main.settings.start_date == "2026-02-01"  # YAML reads it as a date
    assert main.settings.ledger_conn_id == "cdyb_jxc_ledger"
    assert (east.schedule, east.settings.recheck_days) == ("0 4 * * *", 2)  # its own keys win
    assert east.sql_dir == str(PACKAGED_SQL)  # the packaged templates by default
    assert east.settings.source_conn_id == "his_east"
    assert east.settings.notify == "webhook:https://hooks.example.org/x"


def test_a_missing_key_is_named_by_its_path(tmp_path):
    text = GOOD.replace("    conn_id: cdyb_jxc_h2\n", "")
    assert _problems(tmp_path, text) == ["institutions[1].conn_id: missing"]


def test_every_problem_is_reported_at_once(tmp_path):
    text = GOOD.replace("  pool: cdyb_jxc_centre\n", "  pool: cdyb_jxc_centre\n  colour: blue\n")
    text = text.replace("code: H51010400002", "code: H51010400001")
    text = text.replace('schedule: "0 4 * * *"', 'schedule: "every day"')
    text = text.replace("recheck_days: 2", "recheck_days: many\n    start_date: 2026-13-01")
    text += "extra_section: 1\n"
    problems = _problems(tmp_path, text)
    assert "defaults.colour: unknown key" in problems
    assert "extra_section: unknown key (expected defaults, institutions)" in problems
    assert "institutions[1].code: H51010400001 is already used by institutions[0].code" in problems
    assert any(p.startswith("institutions[1].schedule: must be a cron expression") for p in problems)
    assert any(p.startswith("institutions[1].recheck_days: must be a whole number") for p in problems)
    assert any(p.startswith("institutions[1].start_date: must be a date") for p in problems)
    assert len(problems) == 6


def test_a_code_written_as_a_number_is_refused_before_its_zeros_are_lost(tmp_path):
    problems = _problems(tmp_path, GOOD.replace("code: H51010400002", "code: 0051010400002"))
    # YAML reads 0051010400002 as an integer
    assert problems
    assert problems[0].startswith("institutions[1].code: must be text")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("    sql_dir: sql/main\n", "    sql_dir: sql/nowhere\n"), "institutions[0].sql_dir: "),
        (("mapping_file: mapping_main.csv", "mapping_file: gone.csv"), "institutions[0].mapping_file: "),
        (("  ledger_conn_id: cdyb_jxc_ledger\n", "  ledger_conn_id: a\n  ledger_url: sqlite:///x.db\n"), ""),
        (("notify: webhook:https://hooks.example.org/x", "notify: pager"), "defaults.notify: must be log"),
        (("institutions:\n", "institutions: []\nx:\n"), "institutions: must be a non-empty list"),
    ],
    ids=["sql-dir", "mapping-file", "both-ledgers", "notify", "no-institutions"],
)
def test_bad_values_name_their_key(tmp_path, change, expected):
    problems = _problems(tmp_path, GOOD.replace(*change))
    assert any(p.startswith(expected) for p in problems), problems
    if not expected:
        assert (
            "institutions[0]: set ledger_url or ledger_conn_id, not both (here or under defaults)" in problems
        )


def test_a_file_that_is_not_yaml_says_so(tmp_path):
    with pytest.raises(DeploymentConfigError, match="not valid YAML"):
        load_deployment(_write(tmp_path, "institutions: [\n"), {})


def test_the_file_is_found_where_the_variable_or_airflow_home_says(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    assert find_config({"AIRFLOW_HOME": str(home)}) is None
    (home / "cdyb_jxc.yaml").write_text(GOOD, encoding="utf-8")
    assert find_config({"AIRFLOW_HOME": str(home)}) == home / "cdyb_jxc.yaml"
    other = _write(tmp_path, GOOD)
    assert find_config({"AIRFLOW_HOME": str(home), CONFIG_VAR: str(other)}) == other
    with pytest.raises(DeploymentConfigError, match=f"{CONFIG_VAR}=.*no such file"):
        find_config({CONFIG_VAR: str(tmp_path / "missing.yaml")})


def _settings(extra: dict, expected: str | None) -> object:
    return build_settings(
        conn_id="c",
        host="http://centre",
        login="u",
        password="p",
        extra=extra,
        conn_type="cdyb_jxc",
        institution_code=expected,
    )


def test_a_connection_for_another_institution_is_refused():
    with pytest.raises(Exception, match="extra 'institution_code' is H2, but the deployment file uses"):
        _settings({"institution_code": "H2"}, "H1")
    assert _settings({}, "H1").institution_code == "H1"  # the file's code when the connection names none
    assert _settings({"institution_code": "H1"}, "H1").institution_code == "H1"


def test_the_t1_deadline_and_its_two_routes(tmp_path):
    text = GOOD.replace(
        "  pool: cdyb_jxc_centre\n",
        '  pool: cdyb_jxc_centre\n  deadline: "17:30"\n  notify_data: email:pharmacy@example.org\n'
        "  notify_ops: webhook:https://ops.example.org/hook\n",
    )
    main, east = load_deployment(_write(tmp_path, text), {"AIRFLOW_HOME": str(tmp_path)}).institutions
    assert (main.settings.deadline, main.settings.notify_data) == ("17:30", "email:pharmacy@example.org")
    assert east.settings.notify_ops == "webhook:https://ops.example.org/hook"
    problems = _problems(tmp_path, GOOD.replace("  pool: cdyb_jxc_centre\n", '  deadline: "25:00"\n'))
    assert problems == ["defaults.deadline: deadline must be a time of day written HH:MM, not '25:00'"]


def test_a_list_entry_that_is_not_a_mapping_is_reported_not_raised(tmp_path):
    problems = _problems(tmp_path, GOOD + "  -\n  - 123\n")
    assert problems == [
        "institutions[2]: must be a mapping of keys to values",
        "institutions[3]: must be a mapping of keys to values",
    ]


def test_two_institutions_on_one_connection_are_refused(tmp_path):
    problems = _problems(tmp_path, GOOD.replace("conn_id: cdyb_jxc_h2", "conn_id: cdyb_jxc_h1"))
    assert problems == ["institutions[1].conn_id: cdyb_jxc_h1 is already used by institutions[0].conn_id"]


def test_the_monitor_reads_only_codes_and_names_of_the_institutions(tmp_path):
    path = tmp_path / "cdyb_jxc.yaml"
    # no conn_id and a SQL folder that is not there: the DAGs refuse the file, the monitor lists it
    path.write_text(
        "institutions:\n  - code: H51010400001\n    name: 第一医院\n    sql_dir: /nowhere\n"
        "  - code: H51010400002\n",
        encoding="utf-8",
    )
    assert deployment_institutions(path) == [("H51010400001", "第一医院"), ("H51010400002", "H51010400002")]


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("institutions: [", "not valid YAML"),
        ("defaults: {}\n", "institutions: must be a non-empty list"),
        ("institutions:\n  - name: 无编码\n", "institutions[0].code"),
        ("institutions:\n  - code: 510104\n", "institutions[0].code: must be text"),
    ],
)
def test_the_monitor_names_what_is_wrong_with_the_institutions_it_lists(tmp_path, text, named):
    path = tmp_path / "cdyb_jxc.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DeploymentConfigError, match=re.escape(named)):
        deployment_institutions(path)

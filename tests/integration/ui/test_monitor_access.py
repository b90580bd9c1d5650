"""Institutions in the monitor: each user sees the institutions whose daily DAG Airflow lets them read.

Two institutions of one deployment file upload through the simulator into one ledger. The auth manager is
Airflow's simple one; only its DAG check is narrowed per user, as a team-aware auth manager would do.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.conftest import INSTITUTION, OTHER_INSTITUTION
from tests.integration.ui.conftest import D2, DAILY

ROUTES = (
    "summary",
    "calendar?days=3",
    "trend",
    "rejects",
    "rejects/export",
    "queues",
    f"balance?day={D2}",
    f"day?day={D2}&transaction=JXC003",
)


@pytest.fixture
def grants(api_app, monkeypatch):
    """Per-user DAG grants on top of the simple auth manager: ``grants["ward"] = {dag_id, …}``."""
    from airflow.api_fastapi.app import get_auth_manager

    auth = get_auth_manager()
    given: dict[str, set[str]] = {}
    real = auth.is_authorized_dag

    def is_authorized_dag(*, method, user, access_entity=None, details=None):
        if user.get_name() not in given:
            return real(method=method, user=user, access_entity=access_entity, details=details)
        return details is not None and details.id in given[user.get_name()]

    monkeypatch.setattr(auth, "is_authorized_dag", is_authorized_dag)
    return given


def _token_for(name: str, role: str = "viewer") -> str:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    return get_auth_manager().generate_jwt(SimpleAuthManagerUser(username=name, role=role))


def _get(client, token, path):
    return client.get(f"/cdyb-jxc/api/{path}", headers={"Authorization": f"Bearer {token}"})


def test_a_user_who_reads_every_dag_sees_both_institutions_and_their_sum(client, token, two_institutions):
    resp = _get(client, token, "institutions")
    assert resp.status_code == 200, resp.text
    listed = resp.json()["institutions"]
    assert [(i["code"], i["name"], i["daily_dag_id"]) for i in listed] == [
        (INSTITUTION, "第一医院", DAILY[INSTITUTION]),
        (OTHER_INSTITUTION, "第二医院", DAILY[OTHER_INSTITUTION]),
    ]
    both = _get(client, token, "summary").json()["states"]
    first = _get(client, token, f"summary?institution={INSTITUTION}").json()["states"]
    other = _get(client, token, f"summary?institution={OTHER_INSTITUTION}").json()["states"]
    assert other == {"ACCEPTED": 3, "REJECTED": 1}
    assert first == {"ACCEPTED": 12, "REJECTED": 2, "DUPLICATE_CONFLICT": 1}
    assert both == {"ACCEPTED": 15, "REJECTED": 3, "DUPLICATE_CONFLICT": 1}


def test_each_route_answers_for_the_chosen_institution_only(client, token, two_institutions):
    rejects = _get(client, token, f"rejects?institution={OTHER_INSTITUTION}").json()
    assert [r["serial_no"] for r in rejects["rows"]] == ["O-BAD"]
    assert {r["institution_code"] for r in rejects["rows"]} == {OTHER_INSTITUTION}
    day = _get(client, token, f"day?day={D2}&transaction=JXC003&institution={OTHER_INSTITUTION}").json()
    assert day["states"] == {"ACCEPTED": 3, "REJECTED": 1}
    assert day["runs"] == [{"dag_id": DAILY[OTHER_INSTITUTION], "run_id": "o2", "rows": 4}]
    cal = _get(client, token, f"calendar?days=3&institution={OTHER_INSTITUTION}").json()
    assert cal["days"][-1]["transactions"]["JXC003"]["status"] == "partial"
    assert cal["days"][-1]["transactions"]["JXC004"]["status"] == "missing"  # only the first has stock
    trend = _get(client, token, f"trend?institution={OTHER_INSTITUTION}").json()["points"]
    assert [(p["transaction_code"], p["rows"], p["rejected"]) for p in trend] == [("JXC003", 4, 1)]
    export = _get(client, token, f"rejects/export?institution={OTHER_INSTITUTION}").content
    assert "O-BAD" in export.decode("utf-8-sig")
    assert "A-BAD" not in export.decode("utf-8-sig")


def test_a_team_sees_only_the_institution_whose_dag_it_may_read(client, two_institutions, grants):
    grants["ward"] = {DAILY[OTHER_INSTITUTION]}
    ward = _token_for("ward")
    listed = _get(client, ward, "institutions").json()["institutions"]
    assert [i["code"] for i in listed] == [OTHER_INSTITUTION]
    # without a choice, every route answers for the institutions the user may see
    assert _get(client, ward, "summary").json()["states"] == {"ACCEPTED": 3, "REJECTED": 1}
    queues = _get(client, ward, "queues").json()
    assert queues["conflicts"] == []  # the first's
    assert queues["source_issues"] == []  # the first's
    assert {r["serial_no"] for r in _get(client, ward, "rejects").json()["rows"]} == {"O-BAD"}
    cal = _get(client, ward, "calendar?days=3").json()["days"]
    assert [d["transactions"]["JXC004"]["status"] for d in cal] == ["missing"]  # the first's stock unseen
    trend = _get(client, ward, "trend").json()["points"]
    assert [(p["transaction_code"], p["rows"]) for p in trend] == [("JXC003", 4)]
    assert _get(client, ward, f"day?day={D2}&transaction=JXC004").json()["rows"] == 0
    export = _get(client, ward, "rejects/export").content.decode("utf-8-sig")
    assert "O-BAD" in export
    assert "A-BAD" not in export
    assert _get(client, ward, f"balance?day={D2}").json()["rows"] == []
    for route in ROUTES:
        sep = "&" if "?" in route else "?"
        refused = _get(client, ward, f"{route}{sep}institution={INSTITUTION}")
        assert refused.status_code == 403, route
        assert INSTITUTION in refused.json()["detail"]
    assert _get(client, ward, f"run?dag_id={DAILY[INSTITUTION]}&run_id=run_d1").status_code == 403
    assert _get(client, ward, f"run?dag_id={DAILY[OTHER_INSTITUTION]}&run_id=o2").status_code == 200


def test_a_user_who_may_read_no_institution_is_refused(client, two_institutions, grants):
    grants["stranger"] = set()
    stranger = _token_for("stranger")
    assert _get(client, stranger, "institutions").json()["institutions"] == []
    for route in ROUTES:
        assert _get(client, stranger, route).status_code == 403, route


def test_rows_of_an_institution_no_longer_in_the_file_need_every_dag(
    client, token, two_institutions, grants, tmp_path
):
    (tmp_path / "cdyb_jxc.yaml").write_text(
        f"institutions:\n  - code: {INSTITUTION}\n    name: 第一医院\n    conn_id: centre_a\n",
        encoding="utf-8",
    )
    listed = _get(client, token, "institutions").json()["institutions"]
    assert [(i["code"], i["daily_dag_id"]) for i in listed] == [
        (INSTITUTION, DAILY[INSTITUTION]),
        (OTHER_INSTITUTION, None),
    ]
    grants["ward"] = {DAILY[INSTITUTION]}
    ward = _token_for("ward")
    assert [i["code"] for i in _get(client, ward, "institutions").json()["institutions"]] == [INSTITUTION]
    assert _get(client, ward, f"summary?institution={OTHER_INSTITUTION}").status_code == 403


def test_a_broken_deployment_file_is_named_on_the_page(client, token, two_institutions, tmp_path):
    (tmp_path / "cdyb_jxc.yaml").write_text("institutions: [", encoding="utf-8")
    resp = _get(client, token, "summary")
    assert resp.status_code == 503
    assert "部署文件" in resp.json()["detail"]


def test_without_a_deployment_file_the_single_institution_is_the_ledgers(client, token, filled_ledger):
    listed = _get(client, token, "institutions").json()["institutions"]
    from cdyb_jxc.workflows.builder import DAILY_DAG_ID

    assert listed == [{"code": INSTITUTION, "name": None, "daily_dag_id": DAILY_DAG_ID}]


def test_the_dag_each_institution_triggers_is_a_daily_dag_the_deployment_builds(two_institutions, tmp_path):
    from cdyb_jxc.ui import access
    from cdyb_jxc.workflows.factory import build_dags

    built = build_dags(tmp_path / "cdyb_jxc.yaml")
    listed = access.directory([])
    assert [i.code for i in listed] == [INSTITUTION, OTHER_INSTITUTION]
    for institution in listed:
        dag = built[institution.daily_dag_id]
        assert "business_date" in dag.params  # what 补传 sets in the run's conf


def test_balance_audits_are_the_chosen_institutions(client, token, two_institutions, grants):
    item = {"mapping_serial_no": "M0001", "opening": 10.0, "inbound": 0.0, "outbound": 1.0, "closing": 8.0}
    item |= {"difference": 1.0, "status": "imbalance", "source_difference": 1.0, "source_status": "imbalance"}
    counts = {"items": 1, "imbalance": 1, "source_imbalance": 0, "unchecked": 0}
    two_institutions.record_balance(INSTITUTION, D2, counts, [item])
    two_institutions.record_balance(OTHER_INSTITUTION, D2, {**counts, "imbalance": 0}, [])
    both = _get(client, token, f"balance?day={D2}").json()
    assert (both["status"], [r["institution_code"] for r in both["rows"]]) == ("imbalance", [INSTITUTION])
    other = _get(client, token, f"balance?day={D2}&institution={OTHER_INSTITUTION}").json()
    assert (other["status"], other["rows"]) == ("ok", [])
    grants["ward"] = {DAILY[OTHER_INSTITUTION]}
    ward = _get(client, _token_for("ward"), "calendar?days=3").json()["days"][-1]["balance"]
    assert ward["status"] == "ok"


def test_an_institution_known_only_by_its_source_issues_is_not_shown_to_a_team(
    client, token, two_institutions, grants
):
    third = "H51010400003"
    two_institutions.record_source_issues(
        [
            {
                "institution_code": third,
                "transaction_code": "JXC003",
                "business_date": D2,
                "row_key": "#1@000000000000",
                "source_row": 1,
                "detail": "流水号(yka105)不能为空",
                "seen_at": datetime.now(UTC).replace(tzinfo=None),
            }
        ]
    )
    listed = _get(client, token, "institutions").json()["institutions"]
    assert [(i["code"], i["daily_dag_id"]) for i in listed][-1] == (third, None)
    grants["ward"] = {DAILY[INSTITUTION], DAILY[OTHER_INSTITUTION]}  # both the file names, not the third
    ward = _token_for("ward")
    assert third not in [i["code"] for i in _get(client, ward, "institutions").json()["institutions"]]
    assert _get(client, ward, "summary").json()["source_issues"] == 1  # the first's only
    issues = _get(client, ward, "queues").json()["source_issues"]
    assert {i["institution_code"] for i in issues} == {INSTITUTION}
    assert _get(client, ward, f"day?day={D2}&transaction=JXC003").json()["source_issues"] == []

"""The T+1 watch: at the deadline (default D+1 18:00 Asia/Shanghai) the ledger is checked for day D, and
what is still missing goes to who can fix it — data problems to the data owner's target (``notify_data``),
transport and configuration problems to operations (``notify_ops``).

``cdyb_jxc_watch`` for the environment's single institution, ``cdyb_jxc_watch__<code>`` for each institution
of a deployment file. It reads the ledger, so a daily run that has not finished (or not run) by the deadline
shows as rows not accepted or a day without its stock. (An Airflow deadline alert on the daily DAG is left
out: in Airflow 3.3 ``dag.test()`` of a DAG with a deadline fails in ``DeadlineAlert.get_by_id``.)
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, CronTriggerTimetable

from cdyb_jxc.workflows.builder import TAGS, TIMEZONE, business_date_param, dag_arguments
from cdyb_jxc.workflows.settings import DagSettings

WATCH_DAG_ID = "cdyb_jxc_watch"
WATCH_DATE = "{{ cdyb_watch_date(dag_run, logical_date) }}"


def watch_date(dag_run: Any, logical_date: Any, timezone: str = TIMEZONE) -> str:
    """Day D of a watch run (the ``cdyb_watch_date`` macro): ``business_date`` from the trigger, else the day
    before the one the run was scheduled on (its deadline is on D+1), in Asia/Shanghai."""
    from cdyb_jxc.workflows.tasks import business_date

    conf = getattr(dag_run, "conf", None) or {}
    if conf.get("business_date") not in (None, ""):
        return business_date(dag_run, None, timezone)
    at = logical_date if logical_date is not None else datetime.now(ZoneInfo(timezone))
    return (at.astimezone(ZoneInfo(timezone)).date() - timedelta(days=1)).isoformat()


def build_watch_dag(settings: DagSettings) -> DAG:
    """One task at the deadline: check day D in the ledger and notify each route that has something."""
    hour, minute = settings.deadline_time
    with DAG(
        settings.dag_id(WATCH_DAG_ID),
        description="T+1 watch: day D not fully accepted by its deadline, routed to data owner or operations",
        schedule=CronTriggerTimetable(f"{minute} {hour} * * *", timezone=TIMEZONE),
        **dag_arguments(settings),
        tags=settings.tags([*TAGS, "T+1"]),
        user_defined_macros={"cdyb_watch_date": watch_date},
        params={"business_date": business_date_param()},
        doc_md=__doc__,
    ) as dag:
        PythonOperator(
            task_id="check_t1",
            python_callable=check_t1,
            op_kwargs={
                **settings.ledger_kwargs,
                "business_date": WATCH_DATE,
                "deadline": f"D+1 {hour:02d}:{minute:02d}",
                "notify_data": settings.notify_data or settings.notify,
                "notify_ops": settings.notify_ops or settings.notify,
            },
        )
    return dag


def check_t1(
    *,
    conn_id: str,
    ledger_url: str | None,
    ledger_conn_id: str | None,
    business_date: str,
    deadline: str,
    notify_data: str,
    notify_ops: str,
    institution_code: str | None = None,
    context: Any = None,
    **_: Any,
) -> dict[str, Any]:
    """Check day D and notify the routes with something missing; returns the counts."""
    from airflow.sdk import get_current_context

    from cdyb_jxc.hooks.cdyb_jxc import make_ledger
    from cdyb_jxc.notifications.reject import RejectNotifier
    from cdyb_jxc.upload.watch import message, t1_findings
    from cdyb_jxc.workflows.tasks import centre_hook

    hook = centre_hook(conn_id, institution_code)
    institution = hook.settings.institution_code
    ledger = make_ledger(ledger_url, ledger_conn_id)
    try:
        found = t1_findings(ledger, hook.profile, institution, business_date)
    finally:
        ledger.dispose()
    for lines, target, route in (
        (found.data, notify_data, "数据问题 data"),
        (found.ops, notify_ops, "运维 ops"),
    ):
        if lines:
            text = message(institution, business_date, deadline, lines, route)
            RejectNotifier.from_spec(target, text).notify(context or get_current_context())
    return {
        "complete": found.complete,
        "accepted": found.accepted,
        "data": sum(found.data.values()),
        "ops": sum(found.ops.values()),
    }

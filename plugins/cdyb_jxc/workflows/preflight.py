"""The preflight DAG: at 22:00 Asia/Shanghai, day D's rows so far, checked as the 02:00 upload will check
them, through the same SQL templates and 对码 copy; a report beside the reject reports and a notification
when rows would be held back. Nothing is sent to the centre and the ledger is not touched.

``cdyb_jxc_preflight`` for the environment's single institution, ``cdyb_jxc_preflight__<code>`` for each
institution of a deployment file. A manual run can name the day (``business_date``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, CronTriggerTimetable, TriggerRule

from cdyb_jxc.operators.validate import CdybJxcValidateOperator
from cdyb_jxc.wire.profile import DAILY_TRANSACTIONS
from cdyb_jxc.workflows.builder import TAGS, TIMEZONE, business_date_param, dag_arguments
from cdyb_jxc.workflows.settings import DagSettings

PREFLIGHT_DAG_ID = "cdyb_jxc_preflight"
PREFLIGHT_DATE = "{{ cdyb_preflight_date(dag_run, logical_date) }}"


def preflight_date(dag_run: Any, logical_date: Any, timezone: str = TIMEZONE) -> str:
    """Day D of a preflight or intraday run (its macro): ``business_date`` from the trigger, else the day
    the run was scheduled for (22:00 of day D; 08:00–22:00 for intraday), else today, in Asia/Shanghai.

    :raises ValueError: a given date that is not ``YYYY-MM-DD``
    """
    from cdyb_jxc.workflows.tasks import business_date

    conf = getattr(dag_run, "conf", None) or {}
    if conf.get("business_date") not in (None, ""):
        return business_date(dag_run, None, timezone)
    at = logical_date if logical_date is not None else datetime.now(ZoneInfo(timezone))
    return str(at.astimezone(ZoneInfo(timezone)).strftime("%Y-%m-%d"))


def build_preflight_dag(settings: DagSettings) -> DAG:
    """Check day D's inbound, outbound and stock rows, then write the preflight report and notify."""
    # two institutions' parts never meet: named by the code (the environment's one: by its connection)
    part_stem = f"{settings.institution_code or settings.conn_id}_{PREFLIGHT_DATE}"
    with DAG(
        settings.dag_id(PREFLIGHT_DAG_ID),
        description="预检 preflight: day D's rows checked the evening before the upload; nothing is sent",
        schedule=CronTriggerTimetable(settings.preflight_schedule, timezone=TIMEZONE),
        **dag_arguments(settings),
        tags=settings.tags([*TAGS, "预检"]),
        template_searchpath=[settings.sql_dir],
        user_defined_macros={"cdyb_preflight_date": preflight_date},
        params={"business_date": business_date_param()},
        doc_md=__doc__,
    ) as dag:
        kwargs = {
            **settings.upload_kwargs(),
            "business_date": PREFLIGHT_DATE,
            "report_dir": settings.report_dir,
            "report_stem": part_stem,
        }
        kwargs.pop("pool", None)  # the centre's pool: the preflight never calls the centre
        checks = [
            CdybJxcValidateOperator(task_id=f"validate_{key}", transaction=key, sql=f"{key}.sql", **kwargs)
            for key in DAILY_TRANSACTIONS
        ]
        report_preflight = PythonOperator(
            task_id="report_preflight",
            python_callable=write_preflight_report,
            trigger_rule=TriggerRule.ALL_DONE,  # a check that failed is listed as not run
            op_kwargs={
                "conn_id": settings.conn_id,
                "institution_code": settings.institution_code,
                "report_dir": settings.report_dir,
                "notify": settings.notify,
                "business_date": PREFLIGHT_DATE,
                "part_stem": part_stem,
            },
        )
        checks >> report_preflight
    return dag


def write_preflight_report(
    *,
    conn_id: str,
    institution_code: str | None,
    report_dir: str,
    notify: str,
    business_date: str,
    part_stem: str,
    context: Any = None,
    **_: Any,
) -> dict[str, Any]:
    """Write the preflight report; notify when rows would be held back."""
    from airflow.sdk import get_current_context

    from cdyb_jxc.notifications.reject import RejectNotifier
    from cdyb_jxc.upload.preflight import write_report
    from cdyb_jxc.workflows.tasks import centre_hook

    hook = centre_hook(conn_id, institution_code)
    institution = hook.settings.institution_code
    codes = [hook.profile.transaction(key).code for key in DAILY_TRANSACTIONS]
    report = write_report(report_dir, part_stem, codes, f"preflight_{institution}_{business_date}")
    if report.rows:
        message = (
            f"医保进销存预检 {institution} 业务日期 {business_date}: {report.rows} 条记录按现有数据将被拦截，"
            f"请在 02:00 上传前修正。 报告 report: {report.csv_path} / {report.excel_path}"
        )
        RejectNotifier.from_spec(notify, message).notify(context or get_current_context())
    return {"rows": report.rows, "csv": str(report.csv_path), "excel": str(report.excel_path)}

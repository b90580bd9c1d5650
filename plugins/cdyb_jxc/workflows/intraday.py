"""The intraday DAG (当日数据当日上传): during day D, the inbound and outbound rows of D so far, so that
most of a day is at the centre on its own day (T+0) rather than the next (T+1).

Optional: built only for an institution whose deployment file sets ``intraday_schedule`` (e.g.
``"0 8-22 * * *"``, hourly 08:00–22:00 Asia/Shanghai; ``$CDYB_JXC_INTRADAY_SCHEDULE`` for the environment's
single institution). Each run reads day D through the same SQL templates as the daily DAG. The ledger makes
the runs of a day idempotent: a row accepted by an earlier run is not sent again, and one changed at the
source after its acceptance is listed as a source issue. The stock snapshot stays end-of-day: the daily
DAG sends it, with whatever rows of D came after the last intraday run.

``cdyb_jxc_intraday`` for the environment's single institution, ``cdyb_jxc_intraday__<code>`` for each
institution of a deployment file. A manual run can name the day (``business_date``).
"""

from __future__ import annotations

from airflow.sdk import DAG, CronTriggerTimetable

from cdyb_jxc.workflows.builder import (
    TAGS,
    TIMEZONE,
    business_date_param,
    dag_arguments,
    day_uploads,
    initialization_gate,
)
from cdyb_jxc.workflows.preflight import preflight_date
from cdyb_jxc.workflows.settings import DagSettings

INTRADAY_DAG_ID = "cdyb_jxc_intraday"
# day D: the trigger's business_date, else the day the run was scheduled for, in Asia/Shanghai
INTRADAY_DATE = "{{ cdyb_run_day(dag_run, logical_date) }}"


def build_intraday_dag(settings: DagSettings) -> DAG | None:
    """Inbound, outbound, then the same-day returns once their outbound is in; ``None`` without an
    ``intraday_schedule``."""
    if not settings.intraday_schedule:
        return None
    with DAG(
        settings.dag_id(INTRADAY_DAG_ID),
        description="当日上传 intraday: day D's inbound and outbound rows so far, sent during the day (T+0)",
        schedule=CronTriggerTimetable(settings.intraday_schedule, timezone=TIMEZONE),
        **dag_arguments(settings),
        tags=settings.tags([*TAGS, "当日上传"]),
        template_searchpath=[settings.sql_dir],
        user_defined_macros={"cdyb_run_day": preflight_date},
        params={"business_date": business_date_param()},
        doc_md=__doc__,
    ) as dag:
        # day D only: the earlier open days are the daily DAG's to re-read
        upload_inbound, upload_outbound, resend_returns = day_uploads(settings, INTRADAY_DATE, recheck_days=0)
        initialization_gate(settings) >> upload_inbound >> upload_outbound >> resend_returns
    return dag

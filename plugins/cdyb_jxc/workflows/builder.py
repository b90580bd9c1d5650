"""Builders of the two packaged DAGs; ``dags/`` only calls them. Nothing here touches the network or a
database at import or build time: settings come from environment variables with defaults.

Settings (environment): ``CDYB_JXC_CONN_ID`` (cdyb_jxc_default), ``CDYB_JXC_SOURCE_CONN_ID`` (cdyb_jxc_his),
``CDYB_JXC_LEDGER_URL`` / ``CDYB_JXC_LEDGER_CONN_ID``,
``CDYB_JXC_REPORT_DIR`` ($AIRFLOW_HOME/cdyb_jxc_reports),
``CDYB_JXC_NOTIFY`` (log | webhook:URL | email:ADDRESS), ``CDYB_JXC_START_DATE`` (2026-01-01),
``CDYB_JXC_RECHECK_DAYS`` (7), ``CDYB_JXC_MAPPING_FILE`` (local 对码 copy, optional),
``CDYB_JXC_TASK_TIMEOUT_MINUTES`` (120: an upload task running longer fails, and is retried, instead of
stalling the daily run; each call to the centre is bounded by the connection's ``timeout`` on top).
"""

from __future__ import annotations

from datetime import datetime

import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.python import (
    BranchPythonOperator,
    PythonOperator,
    ShortCircuitOperator,
)
from airflow.sdk import DAG, Asset, CronDataIntervalTimetable, Param, TriggerRule

from cdyb_jxc.operators.upload import (
    CdybJxcInboundOperator,
    CdybJxcInitOperator,
    CdybJxcOutboundOperator,
    CdybJxcStockOperator,
)
from cdyb_jxc.workflows import tasks as dag_tasks
from cdyb_jxc.workflows.settings import DagSettings

INIT_DAG_ID = "cdyb_jxc_init"
DAILY_DAG_ID = "cdyb_jxc_daily"
TIMEZONE = "Asia/Shanghai"
INIT_ASSET = Asset("cdyb_jxc://initialization", group="cdyb_jxc")
TAGS = ["cdyb-jxc", "医保", "进销存"]
# Day D is the business day the run covers: the start of its data interval in Asia/Shanghai, or the
# ``business_date`` given when triggering (checked: it goes into the source SQL).
BUSINESS_DATE = "{{ cdyb_business_date(dag_run, data_interval_start) }}"


def init_asset(settings: DagSettings) -> Asset:
    """The Asset an institution's completed initialization emits (one per institution of a deployment)."""
    if not settings.institution_code:
        return INIT_ASSET
    return Asset(f"cdyb_jxc://initialization/{settings.institution_code}", group="cdyb_jxc")


def start_of(day: str) -> pendulum.DateTime:
    return pendulum.instance(datetime.fromisoformat(day), tz=TIMEZONE)


def dag_arguments(settings: DagSettings) -> dict:
    """What every packaged DAG of an institution is built with: its start, no catch-up, one run at a time,
    the tasks' retries."""
    return {
        "start_date": start_of(settings.start_date),
        "catchup": False,
        "max_active_runs": 1,
        "default_args": settings.default_args(),
    }


def build_init_dag(settings: DagSettings) -> DAG:
    """One-time initialization: upload the opening stock (JXC001), record completion, emit an Asset."""
    with DAG(
        settings.dag_id(INIT_DAG_ID),
        description="药品采购信息初始化 (JXC001): the counted opening stock, sent once",
        schedule=None,
        **dag_arguments(settings),
        tags=settings.tags(TAGS),
        template_searchpath=[settings.sql_dir],
        params={
            "force": Param(
                False,
                type="boolean",
                title="Run again after completion",
                description="Initialization is sent once. Set only to resend rows rejected or in doubt.",
            ),
        },
        doc_md=__doc__,
    ) as dag:
        check_not_initialized = PythonOperator(
            task_id="check_not_initialized",
            python_callable=dag_tasks.check_not_initialized,
            op_kwargs=settings.ledger_kwargs,
            retries=0,
        )
        upload_init = CdybJxcInitOperator(task_id="upload_init", sql="init.sql", **settings.upload_kwargs())
        record_initialization = PythonOperator(
            task_id="record_initialization",
            python_callable=dag_tasks.record_initialization,
            op_kwargs=settings.ledger_kwargs,
            outlets=[init_asset(settings)],
        )
        check_not_initialized >> upload_init >> record_initialization
    return dag


def build_daily_dag(settings: DagSettings) -> DAG:
    """Daily T+1 upload at 02:00 Asia/Shanghai: inbound, outbound, then the stock snapshot of day D."""
    with DAG(
        settings.dag_id(DAILY_DAG_ID),
        description="药品入库/出库/库存 daily T+1 upload (JXC002, JXC003, JXC004)",
        schedule=CronDataIntervalTimetable(settings.schedule, timezone=TIMEZONE),
        **dag_arguments(settings),
        tags=settings.tags(TAGS),
        template_searchpath=[settings.sql_dir],
        user_defined_macros={"cdyb_business_date": dag_tasks.business_date},
        params={"business_date": business_date_param()},
        doc_md=__doc__,
    ) as dag:
        wait_for_initialization = initialization_gate(settings)
        upload_inbound, upload_outbound, resend_returns = day_uploads(
            settings, BUSINESS_DATE, settings.recheck_days
        )
        common = _common(settings, BUSINESS_DATE, settings.recheck_days)
        upload_stock = CdybJxcStockOperator(task_id="upload_stock", sql="stock.sql", **common)
        audit_balance = _audit_balance(settings)
        check_partial_success = BranchPythonOperator(
            task_id="check_partial_success", python_callable=dag_tasks.choose_branch
        )
        report_rejects = _report_rejects(settings)
        all_accepted = EmptyOperator(task_id="all_accepted")
        done = EmptyOperator(task_id="done", trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
        wait_for_initialization >> upload_inbound >> upload_outbound >> resend_returns >> upload_stock
        upload_stock >> audit_balance >> check_partial_success
        check_partial_success >> [report_rejects, all_accepted] >> done
    return dag


def business_date_param() -> Param:
    return Param(
        None,
        type=["null", "string"],
        format="date",
        title="业务日期 business date",
        description="留空 = 本次运行的数据区间 (昨天); 补传某一天时填 YYYY-MM-DD",
    )


def initialization_gate(settings: DagSettings) -> ShortCircuitOperator:
    """Skips the rest of a run until the institution's initialization is recorded."""
    return ShortCircuitOperator(
        task_id="wait_for_initialization",
        python_callable=dag_tasks.initialization_done,
        op_kwargs=settings.ledger_kwargs,
        ignore_downstream_trigger_rules=True,
    )


def _common(settings: DagSettings, business_date: str, recheck_days: int) -> dict:
    """What every upload task of a run is given."""
    return {**settings.upload_kwargs(), "business_date": business_date, "recheck_days": recheck_days}


def day_uploads(
    settings: DagSettings, business_date: str, recheck_days: int
) -> tuple[CdybJxcInboundOperator, CdybJxcOutboundOperator, CdybJxcInboundOperator]:
    """The inbound and outbound upload tasks of day D, in the order they run (created inside the DAG's
    context). Inbound goes before outbound, so a patient return (入库类型 15) of the same day is refused
    【原出库记录不存在】 at first: ``resend_returns`` sends those again once the outbound is accepted, in the
    same run.

    :param business_date: the template of day D
    :param recheck_days: earlier days re-read while they have rows not accepted
    """
    common = _common(settings, business_date, recheck_days)
    return (
        CdybJxcInboundOperator(task_id="upload_inbound", sql="inbound.sql", **common),
        CdybJxcOutboundOperator(task_id="upload_outbound", sql="outbound.sql", **common),
        CdybJxcInboundOperator(
            task_id="resend_returns", sql="inbound.sql", resend_now=("original_missing",), **common
        ),
    )


def _audit_balance(settings: DagSettings) -> PythonOperator:
    """The 进销存平衡 audit of day D once its stock is uploaded (accepted rows beside the source's)."""
    return PythonOperator(
        task_id="audit_balance",
        python_callable=dag_tasks.audit_day,
        op_kwargs={
            **settings.ledger_kwargs,
            "report_dir": settings.report_dir,
            "business_date": BUSINESS_DATE,
            "mapping_file": settings.mapping_file,
        },
    )


def _report_rejects(settings: DagSettings) -> PythonOperator:
    """The task writing the reject report (day D and the open days before it) and sending the notification."""
    return PythonOperator(
        task_id="report_rejects",
        python_callable=dag_tasks.report_rejects,
        op_kwargs={
            **settings.ledger_kwargs,
            "report_dir": settings.report_dir,
            "notify": settings.notify,
            "business_date": BUSINESS_DATE,
            "recheck_days": settings.recheck_days,
            "institution_code": settings.institution_code,
        },
    )

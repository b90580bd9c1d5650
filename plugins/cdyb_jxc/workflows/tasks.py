"""Python callables of the packaged DAGs (gate, branch, report, milestones). Imports stay inside functions."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from cdyb_jxc.config import iso_day
from cdyb_jxc.wire.profile import DAILY_TRANSACTIONS

if TYPE_CHECKING:
    from cdyb_jxc.ledger.store import Ledger
    from cdyb_jxc.upload.reports import RejectReport

log = logging.getLogger(__name__)
INIT_MILESTONE = "initialization"
UPLOAD_TASKS = tuple(f"upload_{key}" for key in DAILY_TRANSACTIONS)
# the tasks whose results give the day's final states: the inbound rows as resend_returns last saw them
RESULT_TASKS = ("resend_returns", "upload_outbound", "upload_stock")


def business_date(dag_run: Any, data_interval_start: Any, timezone: str = "Asia/Shanghai") -> str:
    """Day D of a daily run (the ``cdyb_business_date`` macro): ``business_date`` from the trigger's conf
    or params, else the start of the data interval in Asia/Shanghai.

    :raises ValueError: a given date that is not ``YYYY-MM-DD``, or a run without data interval and date
    """
    conf = getattr(dag_run, "conf", None) or {}
    given = conf.get("business_date")
    if given not in (None, ""):
        try:
            return iso_day(str(given).strip())
        except ValueError:
            raise ValueError(f"business_date must be a date written YYYY-MM-DD, not {given!r}") from None
    if data_interval_start is None:
        raise ValueError(
            "this run has no data interval (triggered without a logical date): "
            'trigger it with conf {"business_date": "YYYY-MM-DD"}'
        )
    return str(data_interval_start.in_timezone(timezone).strftime("%Y-%m-%d"))


def _institution(conn_id: str, institution_code: str | None) -> str:

    return centre_hook(conn_id, institution_code).settings.institution_code


def centre_hook(conn_id: str, institution_code: str | None) -> Any:
    """The centre hook; its settings read now, so a connection for another institution fails the task
    at once, without retries (retrying cannot fix a configuration)."""
    from airflow.sdk.exceptions import AirflowFailException

    from cdyb_jxc.exceptions import ConnectionConfigError
    from cdyb_jxc.hooks.cdyb_jxc import CdybJxcHook

    hook = CdybJxcHook(conn_id, institution_code=institution_code)
    try:
        hook.settings  # noqa: B018 - read here so the error is this task's
    except ConnectionConfigError as err:
        raise AirflowFailException(str(err)) from err
    return hook


def check_not_initialized(
    *,
    conn_id: str,
    ledger_url: str | None,
    ledger_conn_id: str | None,
    params: Any,
    institution_code: str | None = None,
) -> str:
    """Refuse a second initialization unless the ``force`` param is set."""
    from airflow.sdk.exceptions import AirflowFailException

    from cdyb_jxc.hooks.cdyb_jxc import make_ledger

    institution = _institution(conn_id, institution_code)
    done = make_ledger(ledger_url, ledger_conn_id).milestone(institution, INIT_MILESTONE)
    if done and not params.get("force"):
        raise AirflowFailException(
            f"机构 {institution} 的药品采购信息初始化已于 {done['completed_at']:%Y-%m-%d %H:%M:%S} UTC 完成，"
            "初始化只能上传一次 (initialization already completed; JXC001 is sent once). "
            "Trigger with force=true only to resend rows that were rejected or are in doubt."
        )
    if done:
        log.warning("initialization already completed for %s; running again because force=true", institution)
    return institution


def record_initialization(
    *,
    conn_id: str,
    ledger_url: str | None,
    ledger_conn_id: str | None,
    ti: Any,
    institution_code: str | None = None,
) -> dict:
    """Record completion in the ledger (the task's outlet emits the Asset event)."""
    from cdyb_jxc.hooks.cdyb_jxc import make_ledger

    summary = ti.xcom_pull(task_ids="upload_init") or {}
    institution = _institution(conn_id, institution_code)
    make_ledger(ledger_url, ledger_conn_id).set_milestone(
        institution, INIT_MILESTONE, json.dumps(summary.get("states", {}), ensure_ascii=False)
    )
    log.info("initialization recorded for %s: %s", institution, summary.get("states"))
    return {"institution_code": institution, "states": summary.get("states", {})}


def initialization_done(
    *,
    conn_id: str,
    ledger_url: str | None,
    ledger_conn_id: str | None,
    institution_code: str | None = None,
) -> bool:
    """Gate of the daily DAG: False (skip everything) until the initialization has completed."""
    from cdyb_jxc.hooks.cdyb_jxc import make_ledger

    institution = _institution(conn_id, institution_code)
    done = make_ledger(ledger_url, ledger_conn_id).milestone(institution, INIT_MILESTONE) is not None
    if not done:
        log.warning(
            "initialization (JXC001) has not completed for %s; skipping the daily upload", institution
        )
    return done


def count_rejected(results: Sequence[dict | None]) -> int:
    from cdyb_jxc.ledger.states import ATTENTION_STATES, LedgerState

    # IN_DOUBT here: rows a finished run could not resend (their source can no longer be written)
    counted = (*ATTENTION_STATES, LedgerState.IN_DOUBT)
    total = 0
    for result in results:
        states = (result or {}).get("states", {})
        total += sum(int(states.get(s, 0)) for s in counted)
        total += int((result or {}).get("source_issues", 0))
    return total


def choose_branch(*, ti: Any) -> str:
    """``report_rejects`` when an upload left rows rejected or in conflict, or the day does not balance,
    else ``all_accepted``."""
    results = ti.xcom_pull(task_ids=list(RESULT_TASKS))
    rejected = count_rejected(results if isinstance(results, list) else [results])
    balance = ti.xcom_pull(task_ids="audit_balance") or {}
    imbalanced = int(balance.get("imbalance", 0)) + int(balance.get("source_imbalance", 0))
    log.info("rows rejected or in conflict in this run: %d; items out of balance: %d", rejected, imbalanced)
    return "report_rejects" if rejected or imbalanced else "all_accepted"


def audit_day(
    *,
    conn_id: str,
    ledger_url: str | None,
    ledger_conn_id: str | None,
    report_dir: str,
    business_date: str,
    mapping_file: str | None = None,
    institution_code: str | None = None,
    **_: Any,
) -> dict[str, Any]:
    """The day's 进销存平衡 audit and its report (:func:`cdyb_jxc.upload.balance.write_balance_report`)."""
    from cdyb_jxc.hooks.cdyb_jxc import make_ledger
    from cdyb_jxc.upload.balance import write_balance_report
    from cdyb_jxc.upload.registry import load_registry

    institution = _institution(conn_id, institution_code)
    try:
        registry = load_registry(mapping_file) if mapping_file else None
        ledger = make_ledger(ledger_url, ledger_conn_id)
        try:
            report = write_balance_report(ledger, institution, business_date, report_dir, registry=registry)
        finally:
            ledger.dispose()
    except Exception as err:  # the audit advises: it never keeps the day's reject report from being written
        log.exception("%s %s: the balance audit failed", institution, business_date)
        return {"items": 0, "imbalance": 0, "source_imbalance": 0, "error": f"{type(err).__name__}: {err}"}
    if report.imbalance or report.source_imbalance:
        log.warning(
            "%s %s: %d item(s) out of balance in the accepted rows, %d in the source's (report %s)",
            institution,
            business_date,
            report.imbalance,
            report.source_imbalance,
            report.csv_path,
        )
    return {
        "items": report.items,
        "imbalance": report.imbalance,
        "source_imbalance": report.source_imbalance,
        "csv": str(report.csv_path),
        "excel": str(report.excel_path),
    }


def report_rejects(
    *,
    conn_id: str,
    ledger_url: str | None,
    ledger_conn_id: str | None,
    report_dir: str,
    notify: str,
    business_date: str,
    recheck_days: int,
    institution_code: str | None = None,
    context: Any = None,
    **_: Any,
) -> dict:
    """Write the reject report (CSV and Excel) and send the notification."""
    from airflow.sdk import get_current_context

    from cdyb_jxc.hooks.cdyb_jxc import make_ledger
    from cdyb_jxc.notifications.reject import RejectNotifier
    from cdyb_jxc.upload.reports import write_reject_report

    hook = centre_hook(conn_id, institution_code)
    institution = hook.settings.institution_code
    codes = [hook.profile.transaction(key).code for key in DAILY_TRANSACTIONS]
    ledger = make_ledger(ledger_url, ledger_conn_id)
    days = _report_days(ledger, institution, codes, business_date, recheck_days)
    report = write_reject_report(
        ledger, institution, days, report_dir, f"rejects_{institution}_{business_date}"
    )
    message = _reject_message(institution, business_date, report)
    balance = (context or get_current_context())["ti"].xcom_pull(task_ids="audit_balance") or {}
    if balance.get("imbalance") or balance.get("source_imbalance"):
        message += (
            f" 进销存不平衡: 已接收数据 {balance['imbalance']} 项,"
            f" HIS 源数据 {balance['source_imbalance']} 项; 平衡报告 balance: {balance['csv']}"
        )
    RejectNotifier.from_spec(notify, message).notify(context or get_current_context())
    return {
        "rows": report.rows,
        "csv": str(report.csv_path) if report.csv_path else None,
        "excel": str(report.excel_path) if report.excel_path else None,
        "business_dates": days,
    }


def _report_days(
    ledger: Ledger, institution: str, codes: list[str], business_date: str, recheck_days: int
) -> list[str]:
    """Day D and every day of the ``recheck_days`` before it that still has rows open, sorted."""
    since = (date.fromisoformat(business_date) - timedelta(days=recheck_days)).isoformat()
    open_days = (d for code in codes for d in ledger.open_dates(institution, code, since, business_date))
    return sorted({business_date, *open_days})


def _reject_message(institution: str, business_date: str, report: RejectReport) -> str:
    return (
        f"医保进销存上传 {institution} 业务日期 {business_date}: {report.rows} 条记录被拒或冲突。"
        f" 报告 report: {report.csv_path} / {report.excel_path}"
    )

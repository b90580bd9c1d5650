"""Operators: one per transaction, on one shared base. Thin.

The work happens in :mod:`cdyb_jxc.upload.engine`."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, cast

from airflow.sdk import BaseHook, BaseOperator
from airflow.sdk.exceptions import AirflowException, AirflowFailException

from cdyb_jxc.exceptions import CdybJxcError
from cdyb_jxc.hooks.cdyb_jxc import CdybJxcHook, make_ledger

if TYPE_CHECKING:
    from airflow.sdk import Context

    from cdyb_jxc.ledger import Ledger
    from cdyb_jxc.upload.result import RunInfo, UploadResult
    from cdyb_jxc.wire.profile import TransactionSpec


def task_error(err: CdybJxcError) -> AirflowException:
    """The Airflow exception a task raises for ``err``: retried when ``err`` is retryable (the rows stay in
    the ledger for the next try), failed without retries when it is not (the same try fails again).

    :param err: what the upload raised
    """
    if err.retryable:
        if err.headline:
            return AirflowException(f"{err.headline}, rows kept in the ledger for the next try: {err}")
        return AirflowException(f"{err} (retried)")
    if err.headline:
        return AirflowFailException(f"{err.headline} (not retried): {err}")
    return AirflowFailException(str(err))


def checked_business_date(value: Any, task_id: str) -> str | None:
    """``value`` once rendered, if it is a real date written ``YYYY-MM-DD`` (exactly 10 characters).

    Checked after rendering, whatever template produced it: the SQL template receives it as text.

    :param value: the rendered ``business_date`` (text, a ``date``, or empty)
    :param task_id: named in the error
    :raises AirflowFailException: anything else (not retried: the same value fails again)
    """
    from datetime import date, datetime

    if value is None or value == "":
        return None
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str) and len(value) == 10 and re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError:
            pass  # 2026-02-30 and the like: reported below with the value
    shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:79] + "…"
    raise AirflowFailException(f"{task_id}: business_date must be a date written YYYY-MM-DD, not {shown}")


class CdybJxcUploadOperator(BaseOperator):
    """Upload one transaction's rows from a SQL query or a file, recording every row in the ledger.

    :param cdyb_jxc_conn_id: the centre connection (type ``cdyb_jxc``)
    :param sql: SQL (or a ``.sql`` template file) whose columns are the profile's logical names
    :param source_conn_id: any common-sql connection to run ``sql`` on
    :param source_file: a CSV, Parquet or Excel file instead of ``sql``
    :param sheet: the Excel sheet of ``source_file`` to read (default: the only sheet holding data; a workbook
        with more than one is refused)
    :param encoding: the text encoding of a CSV ``source_file``, e.g. ``gb18030`` (default UTF-8, with or
        without BOM)
    :param parameters: query parameters for ``sql``
    :param business_date: business day (``YYYY-MM-DD``) for rows without a usable date of their own
    :param ledger_url: SQLAlchemy URL of the ledger (default: ``$CDYB_JXC_LEDGER_URL``, else SQLite)
    :param ledger_conn_id: an Airflow connection for the ledger instead of ``ledger_url``
    :param mapping_file: CSV copy of the 对码 registry; rows it shows unmapped are held back
    :param chunk_size: source rows read at a time
    :param resend_attempts: resends of a batch within one try after a transport fault or lost reply
    :param resend_backoff: seconds before the first in-try resend (doubled each time)
    :param recheck_days: also re-read the previous N business days that still have rows not accepted, so
        rows fixed at the source go out on the next run (needs ``sql`` using ``{{ business_date }}``)
    :param max_in_flight: batches out at once, 1 to 8 (default: the connection's ``max_in_flight``, else 2)
    :param institution_code: the 定点机构编码 this task uploads for (a deployment file's): the connection
        must name the same one, or none
    :param resend_now: categories (profile keys) of unchanged rejected rows to send again in this run, e.g.
        ``("original_missing",)`` for returns whose outbound was accepted since

    SQL templates see ``{{ business_date }}``: the rendered ``business_date`` argument.
    """

    transaction: str = ""  # the transaction key: each subclass sets it (the validate operator, per task)
    template_fields: Sequence[str] = (
        "sql",
        "source_file",
        "parameters",
        "business_date",
        "ledger_url",
        "mapping_file",
    )
    template_ext: Sequence[str] = (".sql",)
    template_fields_renderers: ClassVar[dict[str, str]] = {"sql": "sql", "parameters": "json"}
    ui_color = "#e8f4ea"

    def __init__(
        self,
        *,
        cdyb_jxc_conn_id: str = CdybJxcHook.default_conn_name,
        sql: str | None = None,
        source_conn_id: str | None = None,
        source_file: str | None = None,
        sheet: str | None = None,
        encoding: str | None = None,
        parameters: Mapping[str, Any] | None = None,
        business_date: str | None = None,
        ledger_url: str | None = None,
        ledger_conn_id: str | None = None,
        mapping_file: str | None = None,
        chunk_size: int = 5000,
        resend_attempts: int = 2,
        resend_backoff: float = 1.0,
        recheck_days: int = 0,
        max_in_flight: int | None = None,
        institution_code: str | None = None,
        resend_now: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.cdyb_jxc_conn_id = cdyb_jxc_conn_id
        self.sql = sql
        self.source_conn_id = source_conn_id
        self.source_file = source_file
        self.sheet = sheet
        self.encoding = encoding
        self.parameters = parameters
        self.business_date = business_date
        self.ledger_url = ledger_url
        self.ledger_conn_id = ledger_conn_id
        self.mapping_file = mapping_file
        self.chunk_size = chunk_size
        self.resend_attempts = resend_attempts
        self.resend_backoff = resend_backoff
        self.recheck_days = recheck_days
        self.max_in_flight = max_in_flight
        self.institution_code = institution_code
        self.resend_now = tuple(resend_now)
        self._sql_source: str | None = None
        self._jinja_env: Any = None

    def render_template_fields(self, context: Context, jinja_env: Any = None) -> None:
        """Render ``business_date`` first and expose it to the SQL template as ``{{ business_date }}``."""
        self._sql_source = self.sql
        self._jinja_env = jinja_env
        if self.business_date:
            self.business_date = self.render_template(self.business_date, context, jinja_env)
        # before the SQL template sees it: a rendered value that is not a date never reaches SQL
        self.business_date = checked_business_date(self.business_date, self.task_id)
        context["business_date"] = self.business_date  # type: ignore[typeddict-unknown-key]
        super().render_template_fields(context, jinja_env)

    def _recheck_dates(self, ledger: Ledger, institution: str, txn_code: str) -> list[str]:
        if not (self.recheck_days and self.sql and self.business_date):
            return []
        from datetime import date, timedelta

        day = date.fromisoformat(self.business_date)
        since = (day - timedelta(days=self.recheck_days)).isoformat()
        return ledger.open_dates(institution, txn_code, since, day.isoformat())

    def _check_arguments(self) -> None:
        if not self.transaction:
            raise AirflowFailException(
                "use one of the transaction operators (init, inbound, outbound, stock)"
            )
        if bool(self.sql) == bool(self.source_file):
            raise AirflowFailException(f"{self.task_id}: give exactly one of sql or source_file")
        if self.sql and not self.source_conn_id:
            raise AirflowFailException(f"{self.task_id}: sql needs source_conn_id")
        if self.sql and (self.sheet or self.encoding):
            raise AirflowFailException(f"{self.task_id}: sheet and encoding apply to source_file only")
        if self.chunk_size <= 0:
            raise AirflowFailException(f"{self.task_id}: chunk_size must be positive")
        if self.max_in_flight is not None:
            from cdyb_jxc.wire.connection import check_max_in_flight

            try:
                check_max_in_flight(self.max_in_flight, self.task_id, "max_in_flight")
            except CdybJxcError as err:
                raise AirflowFailException(str(err)) from err

    def _source_identity(self, ti: Any) -> str:
        """What this task reads, for the keys of its row-numbered source issues (see
        :mod:`cdyb_jxc.upload.source_issues`)."""
        from cdyb_jxc.upload.source_issues import file_source, task_source

        if self.source_file:
            return file_source(self.source_file, sheet=self.sheet, encoding=self.encoding)
        return task_source(ti.dag_id, ti.task_id, getattr(ti, "map_index", None), self.source_conn_id)

    def _chunks(
        self, txn: Any, context: Context, extra_dates: Sequence[str]
    ) -> Iterator[list[dict[str, Any]]]:
        from cdyb_jxc.upload.sources import iter_cursor_chunks, iter_file_chunks

        if self.source_file:
            yield from iter_file_chunks(
                self.source_file, txn, self.chunk_size, sheet=self.sheet, encoding=self.encoding
            )
            return
        queries = [self.sql or ""]
        for day in extra_dates:
            self.log.info("re-reading business day %s, which still has rows not accepted", day)
            day_context = cast("Context", {**context, "business_date": day})
            queries.append(self.render_template(self._sql_source, day_context, self._jinja_env))
        db_hook = BaseHook.get_connection(self.source_conn_id).get_hook()  # type: ignore[arg-type]
        conn = db_hook.get_conn()
        try:
            for sql in queries:
                yield from iter_cursor_chunks(conn, sql, txn, self.parameters, self.chunk_size)
        finally:
            conn.close()

    def execute(self, context: Context) -> dict[str, Any]:
        self._check_arguments()
        self.business_date = checked_business_date(self.business_date, self.task_id)
        hook = CdybJxcHook(self.cdyb_jxc_conn_id, institution_code=self.institution_code)
        run = _run_info(context["ti"])
        try:
            txn, result = self._upload(hook, context, run)
        except CdybJxcError as err:
            raise task_error(err) from err
        finally:
            hook.close()
        summary = result.as_dict()
        self._log_result(txn, result, summary)
        return summary

    def _upload(
        self, hook: CdybJxcHook, context: Context, run: RunInfo
    ) -> tuple[TransactionSpec, UploadResult]:
        """Resolve the transaction and the ledger, then upload every chunk of the source."""
        txn = hook.profile.transaction(self.transaction)
        ledger = make_ledger(self.ledger_url, self.ledger_conn_id)
        extra = self._recheck_dates(ledger, hook.settings.institution_code, txn.code)
        # the SQL template selects whole business days: issues of those days not seen again are fixed
        whole = [self.business_date, *extra] if self.sql and self.business_date else []
        uploader = hook.uploader(
            self.transaction,
            ledger,
            mapping_file=self.mapping_file,
            business_date=self.business_date,
            run=run,
            resend_attempts=self.resend_attempts,
            backoff=self.resend_backoff,
            max_in_flight=self.max_in_flight,  # None: the connection's
            resend_now=self.resend_now,
            complete_days=whole,
            source=self._source_identity(context["ti"]),
        )
        self.log.info(
            "uploading %s %s from %s to ledger %s",
            txn.code,
            txn.name,
            self.source_file or self.source_conn_id,
            ledger.url,
        )
        return txn, uploader.run(self._chunks(txn, context, extra))

    def _log_result(self, txn: TransactionSpec, result: UploadResult, summary: dict[str, Any]) -> None:
        self.log.info(
            "%s done: %s; read %d, sent %d in %d batches, held back %d, already accepted %d, "
            "source issues %d",
            txn.code,
            summary["states"],
            result.rows_read,
            result.rows_sent,
            result.batches,
            result.held_back,
            result.already_accepted,
            result.source_issues,
        )
        for reject in result.rejects:
            self.log.warning("rejected %s", reject)


def _run_info(ti: Any) -> RunInfo:
    """Who this try is, for the ledger's batches: a token unique to the try, and where it runs."""
    from cdyb_jxc.upload.result import RunInfo

    return RunInfo(
        token=f"{ti.dag_id}:{ti.run_id}:{ti.task_id}:{ti.map_index}:{ti.try_number}",
        dag_id=ti.dag_id,
        run_id=ti.run_id,
        task_id=ti.task_id,
    )


class CdybJxcInitOperator(CdybJxcUploadOperator):
    """JXC001 药品采购信息初始化: the counted opening stock, sent once (科室备用药品 excluded)."""

    transaction = "init"


class CdybJxcInboundOperator(CdybJxcUploadOperator):
    """JXC002 药品入库信息上传: day D's inbound movements, uploaded by D+1."""

    transaction = "inbound"


class CdybJxcOutboundOperator(CdybJxcUploadOperator):
    """JXC003 药品出库信息上传: day D's outbound movements, uploaded by D+1."""

    transaction = "outbound"


class CdybJxcStockOperator(CdybJxcUploadOperator):
    """JXC004 药品实际库存信息上传: the daily actual stock snapshot (科室备用药品 excluded)."""

    transaction = "stock"

"""The preflight's operator: an upload's source and checks, without the upload. Thin.

The work happens in :mod:`cdyb_jxc.upload.validate`; the problems go to a part of the preflight report
(:mod:`cdyb_jxc.upload.preflight`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cdyb_jxc.exceptions import CdybJxcError
from cdyb_jxc.hooks.cdyb_jxc import CdybJxcHook
from cdyb_jxc.operators.upload import CdybJxcUploadOperator, checked_business_date, task_error

if TYPE_CHECKING:
    from airflow.sdk import Context


class CdybJxcValidateOperator(CdybJxcUploadOperator):
    """Read one transaction's rows as its upload would (same SQL template, ``business_date`` and 对码
    copy) and record what the upload would hold back; nothing is sent and the ledger is not touched.

    :param transaction: ``init``, ``inbound``, ``outbound`` or ``stock``
    :param report_dir: the report folder (the part is kept there until the preflight report is written)
    :param report_stem: the preflight report's file name without extension
    :param kwargs: the upload operator's arguments (``sql``, ``source_conn_id``, ``mapping_file``, …)
    """

    template_fields = (*CdybJxcUploadOperator.template_fields, "report_stem")
    ui_color = "#fff4e0"

    def __init__(self, *, transaction: str, report_dir: str, report_stem: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.transaction = transaction  # per task here, not per class as for the upload operators
        self.report_dir = report_dir
        self.report_stem = report_stem

    def execute(self, context: Context) -> dict[str, Any]:
        from cdyb_jxc.upload import preflight
        from cdyb_jxc.upload.registry import load_registry
        from cdyb_jxc.upload.validate import Validation, validate_rows

        self._check_arguments()
        self.business_date = checked_business_date(self.business_date, self.task_id)
        hook = CdybJxcHook(self.cdyb_jxc_conn_id, institution_code=self.institution_code)
        counts = Validation()
        try:
            txn = hook.profile.transaction(self.transaction)
            registry = load_registry(self.mapping_file) if self.mapping_file else None
            path = preflight.part_path(self.report_dir, self.report_stem, txn.code)
            problems = validate_rows(
                hook.profile,
                self.transaction,
                self._chunks(txn, context, []),
                registry=registry,
                counts=counts,
            )
            preflight.write_part(path, problems)
        except CdybJxcError as err:
            raise task_error(err) from err
        finally:
            hook.close()
        self.log.info(
            "%s preflight: %d rows read, %d would be held back", txn.code, counts.rows, counts.problems
        )
        return {"transaction": txn.code, "rows": counts.rows, "problems": counts.problems}

"""The insurance centre's business rules (SPEC §6): one ``inputXml`` in, one ``return`` string out."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cdyb_jxc.exceptions import CodecError
from cdyb_jxc.simulator.store import SimulatorStore
from cdyb_jxc.wire.codec import (
    FAILURE,
    PARTIAL,
    SUCCESS,
    ParsedRequest,
    RowFailure,
    build_reply,
    parse_request,
)
from cdyb_jxc.wire.profile import Profile, TransactionSpec
from cdyb_jxc.wire.rules import (
    MappingEntry,
    RowError,
    charset_error,
    field_error,
    future_error,
    mapping_error,
    row_is_clean,
    shanghai_now,
)

log = logging.getLogger(__name__)


class WholeCallRejected(Exception):
    """A W-rule: the whole call is refused with ``【category】detail``."""

    def __init__(self, category_key: str, detail: str = "") -> None:
        super().__init__(category_key, detail)
        self.category_key = category_key
        self.detail = detail


# Any: a row that passes the field rules has its required values set, which the store's set[str] look-ups
# rely on and the type of _row_values cannot say.
_Checked = tuple[dict[str, Any], RowError | None]


@dataclass
class _Lookups:
    """What the store rules compare one call's rows with, read inside its transaction."""

    stored: dict[str, tuple[str, str]]
    registry: dict[str, MappingEntry]
    initialized: set[str]
    originals: dict[str, tuple[str, str]]
    outbound_code: str | None


class Centre:
    """Applies every W and R rule and stores accepted rows.

    :param profile: the interface profile
    :param store: the persistent store
    :param environment: ``test`` or ``prod``; credentials are checked for this environment
    :param clock: returns the server's local (Asia/Shanghai) time, for R7
    """

    def __init__(
        self,
        profile: Profile,
        store: SimulatorStore,
        environment: str = "test",
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.profile = profile
        self.store = store
        self.environment = environment
        offset = int(profile.service["timezone_offset_hours"])
        self.clock = clock or (lambda: shanghai_now(offset))

    def handle(self, input_xml: str | None, *, after_store: Callable[[], None] | None = None) -> str:
        """Process one call and return the ``return`` string.

        :param after_store: called inside the store transaction after the rows were written (fault hooks)
        """
        try:
            return self._handle(input_xml, after_store)
        except WholeCallRejected as rej:
            log.info("call rejected: %s %s", rej.category_key, rej.detail)
            return build_reply(self.profile, FAILURE, self.profile.message(rej.category_key, rej.detail))

    def _parse(self, input_xml: str | None) -> tuple[ParsedRequest, TransactionSpec, str]:
        profile = self.profile
        try:
            parsed = parse_request(profile, input_xml)
        except CodecError as err:
            raise WholeCallRejected("malformed", str(err)) from err
        if parsed.control_extra:
            raise WholeCallRejected(
                "malformed", f"<{profile.request['control']}>含多余节点<{parsed.control_extra[0]}>"
            )
        tags = profile.control_tags
        ctl = parsed.control
        txn = profile.transaction_by_code(ctl.get(tags["transaction_code"]) or "")
        if txn is None:
            raise WholeCallRejected("unknown_transaction", f"{ctl.get(tags['transaction_code']) or ''}")
        institution = ctl.get(tags["institution_code"]) or ""
        if not self.store.institution_known(institution):
            raise WholeCallRejected("unknown_institution", institution)
        user = ctl.get(tags["user"]) or ""
        secret = ctl.get(tags["verification_code"]) or ""
        if not self.store.credentials_ok(institution, self.environment, user, secret):
            raise WholeCallRejected("bad_credentials")
        nums = (ctl.get(tags["row_count"]) or "").strip()
        if not parsed.rows or not nums.isdigit() or int(nums) != len(parsed.rows):
            raise WholeCallRejected(
                "count_mismatch", f"{tags['row_count']}={nums or '空'}, 实际{len(parsed.rows)}条"
            )
        if len(parsed.rows) > profile.batch_limit:
            raise WholeCallRejected("too_many_rows", f"本次{len(parsed.rows)}条")
        if txn.once_per_item and not self.store.has_mapping(institution):
            raise WholeCallRejected("no_mapping")
        return parsed, txn, institution

    def _row_values(
        self, txn: TransactionSpec, elements: list[tuple[str, str | None]]
    ) -> tuple[dict[str, str | None], RowError | None]:
        by_tag = txn.by_tag
        values: dict[str, str | None] = {}
        structural: RowError | None = None
        for tag, text in elements:
            spec = by_tag.get(tag)
            if spec is None:
                structural = structural or RowError("field_invalid", f"未定义的字段{tag}")
            elif spec.name in values:
                structural = structural or RowError("field_invalid", f"字段{spec.display}重复", spec.name)
            else:
                values[spec.name] = text
        return values, structural

    def _handle(self, input_xml: str | None, after_store: Callable[[], None] | None) -> str:
        profile = self.profile
        parsed, txn, institution = self._parse(input_xml)
        checked = self._check_rows(txn, parsed)
        with self.store.transaction() as conn:
            lookups = self._lookups(conn, txn, institution, [v for v, e in checked if e is None])
            accepted, failures = self._apply_store_rules(txn, checked, lookups)
            if accepted:
                self.store.insert_rows(conn, self.environment, institution, txn.code, accepted)
            if after_store is not None:
                after_store()
        total, ok, bad = len(checked), len(accepted), len(failures)
        status = SUCCESS if not failures else PARTIAL if accepted else FAILURE
        log.info("%s %s: %d rows, %d accepted, %d failed", institution, txn.code, total, ok, bad)
        return build_reply(
            profile,
            status,
            f"本次上传{total}条，成功{ok}条，失败{bad}条",
            succnum=ok,
            failnum=bad,
            failures=failures,
        )

    def _check_rows(self, txn: TransactionSpec, parsed: ParsedRequest) -> list[_Checked]:
        """Apply the field rules (R6, R1, R7) to every row, in request order."""
        enc = self.profile.inner_encoding
        now = self.clock()
        tolerance = int(self.profile.service["future_tolerance_seconds"])
        checked: list[_Checked] = []
        for elements in parsed.rows:
            values, structural = self._row_values(txn, elements)
            if structural is None and row_is_clean(txn, values, enc):
                error = future_error(txn, values, now, tolerance)
            else:
                error = (
                    charset_error(txn, values, enc)
                    or structural
                    or field_error(txn, values, enc)
                    or future_error(txn, values, now, tolerance)
                )
            checked.append((values, error))
        return checked

    def _lookups(
        self, conn: sqlite3.Connection, txn: TransactionSpec, institution: str, valid: list[dict[str, Any]]
    ) -> _Lookups:
        """Read, inside the call's transaction, what the store rules compare the valid rows with."""
        env = self.environment
        reversal = txn.reversal_field
        outbound_code = (
            self.profile.transactions[reversal.reverses].code if reversal and reversal.reverses else None
        )
        serials = {v["serial_no"] for v in valid}
        stored = self.store.stored_serials(conn, env, institution, serials)
        registry = self.store.mapping_for(conn, institution, {v["mapping_serial_no"] for v in valid})
        initialized: set[str] = set()
        if txn.once_per_item:
            items = {v["mapping_serial_no"] for v in valid}
            initialized = self.store.initialized_items(conn, env, institution, txn.code, items)
        originals: dict[str, tuple[str, str]] = {}
        if reversal is not None:
            wanted = {v[reversal.name] for v in valid if v.get(reversal.name)}
            originals = self.store.stored_serials(conn, env, institution, wanted)
        return _Lookups(stored, registry, initialized, originals, outbound_code)

    def _apply_store_rules(
        self, txn: TransactionSpec, checked: list[_Checked], lookups: _Lookups
    ) -> tuple[list[dict[str, str]], list[RowFailure]]:
        """Apply the store rules (R2–R5) row by row; return the accepted rows and the failures."""
        seen: set[str] = set()
        accepted: list[dict[str, str]] = []
        failures: list[RowFailure] = []
        for values, error in checked:
            serial = values.get("serial_no") or ""
            if error is None:
                error = self._store_rules(txn, values, seen, lookups)
            if serial:
                seen.add(serial)
            if error is None:
                accepted.append({k: v for k, v in values.items() if v})
                if txn.once_per_item:
                    lookups.initialized.add(values["mapping_serial_no"] or "")
            else:
                failures.append(RowFailure(serial, error.message(self.profile)))
        return accepted, failures

    def _store_rules(
        self, txn: TransactionSpec, values: dict[str, str | None], seen: set[str], lookups: _Lookups
    ) -> RowError | None:
        serial = values.get("serial_no") or ""
        serial_spec = txn.by_name["serial_no"]
        if serial in lookups.stored:
            return RowError("duplicate", f"{serial_spec.display}'{serial}'已上传", "serial_no")
        if serial in seen:
            return RowError("duplicate", f"{serial_spec.display}'{serial}'在本次上传中重复", "serial_no")
        error = mapping_error(txn, values, lookups.registry)
        if error is not None:
            return error
        item = values.get("mapping_serial_no") or ""
        if txn.once_per_item and item in lookups.initialized:
            spec = txn.by_name["mapping_serial_no"]
            return RowError("duplicate_init", f"{spec.display}'{item}'已完成初始化", spec.name)
        reversal = txn.reversal_field
        if (
            reversal is not None
            and reversal.when
            and all(values.get(k) == v for k, v in reversal.when.items())
        ):
            original = values.get(reversal.name) or ""
            if lookups.originals.get(original) != (lookups.outbound_code, item):
                return RowError(
                    "original_missing", f"{reversal.display}'{original}'不存在或不属于同一项目", reversal.name
                )
        return None

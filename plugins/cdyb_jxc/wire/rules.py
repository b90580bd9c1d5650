"""Row rules shared by the client (to hold back rows that would certainly fail) and the simulator.

Rows here are mappings of logical field name → wire text (``None`` or ``""`` = absent). Both sides build the
same :class:`RowError`, so the client's hold-back reason is the text the server would have sent.
Rule names follow SPEC §6: R6 character set, R1 field checks, R7 future time, R3 对码.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from functools import lru_cache

from cdyb_jxc.wire.profile import FieldSpec, Profile, TransactionSpec

NUMBER_RE = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
DATETIME_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}")
# Characters XML 1.0 cannot carry at all (not even as a character reference).
XML_ILLEGAL_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
MAX_ECHO = 40


@dataclass(frozen=True)
class RowError:
    """Why one row is (or would be) rejected.

    :param category_key: key into the profile's ``categories``
    :param detail: text after the bracketed category, naming field and reason
    :param field: logical field name, when one field is to blame
    """

    category_key: str
    detail: str
    field: str | None = None

    def message(self, profile: Profile) -> str:
        return profile.message(self.category_key, self.detail)


@dataclass(frozen=True)
class MappingEntry:
    """One 对码 registry entry."""

    insurance_item_code: str
    off_hospital_delivery: bool = False


def echo(value: str) -> str:
    """A value quoted for an error message: shortened, control characters escaped."""
    shown = value if len(value) <= MAX_ECHO else value[:MAX_ECHO] + "…"
    return "'" + XML_ILLEGAL_RE.sub(lambda m: f"\\x{ord(m.group()):02x}", shown) + "'"


def charset_error(txn: TransactionSpec, values: Mapping[str, str | None], encoding: str) -> RowError | None:
    """R6: the first text value the inner encoding cannot represent."""
    for spec in txn.fields:
        value = values.get(spec.name)
        if not value or value.isascii():
            continue
        try:
            value.encode(encoding)
        except UnicodeEncodeError as err:
            bad = value[err.start]
            shown = f"'{bad}'" if bad.isprintable() and not 0xD800 <= ord(bad) <= 0xDFFF else ""
            detail = f"{spec.display}含{encoding}无法表示的字符{shown}(U+{ord(bad):04X})"
            return RowError("charset", detail, spec.name)
    return None


def _number_error(spec: FieldSpec, value: str, condition_holds: bool) -> str | None:
    if not NUMBER_RE.fullmatch(value):
        return f"{spec.display}不是合法的数值: {echo(value)}"
    integer, _, fraction = value.lstrip("-").partition(".")
    scale = spec.scale or 0
    if len(fraction) > scale:
        return f"{spec.display}小数位数超过{scale}位: {echo(value)}"
    if len(integer) > (spec.precision or 0) - scale:
        return f"{spec.display}整数位数超过{(spec.precision or 0) - scale}位: {echo(value)}"
    try:
        number = Decimal(value)
    except InvalidOperation:  # pragma: no cover - the regex already guarantees a decimal
        return f"{spec.display}不是合法的数值: {echo(value)}"
    if spec.min is not None and number < spec.min:
        return f"{spec.display}不能小于{spec.min}: {echo(value)}"
    if spec.min_exclusive is not None and number <= spec.min_exclusive:
        return f"{spec.display}必须大于{spec.min_exclusive}: {echo(value)}"
    if (
        condition_holds
        and spec.conditional_min_exclusive is not None
        and number <= spec.conditional_min_exclusive
    ):
        return f"{spec.display}必须大于{spec.conditional_min_exclusive}: {echo(value)}"
    return None


def _date_error(spec: FieldSpec, value: str) -> str | None:
    if spec.type == "D":
        pattern, shape = DATE_RE, "yyyy-MM-dd"
    else:
        pattern, shape = DATETIME_RE, "yyyy-MM-dd HH:mm:ss"
    if pattern.fullmatch(value):
        try:
            (date if spec.type == "D" else datetime).fromisoformat(value)
            return None
        except ValueError:
            pass
    return f"{spec.display}不是合法的{shape}: {echo(value)}"


def value_error(spec: FieldSpec, value: str, encoding: str, condition_holds: bool = False) -> str | None:
    """R1 for one present value: length, format, code set, range. Returns the detail text or ``None``."""
    if spec.type == "code":  # the code set holds no control characters: membership settles it
        if value in spec.codes:
            return None
    elif not value.isprintable():  # fast path: printable text has no control characters
        bad = XML_ILLEGAL_RE.search(value)
        if bad:
            return f"{spec.display}含控制字符U+{ord(bad.group()):04X}"
    if spec.type == "C":
        if value.isascii():
            size = len(value)
        else:
            try:
                size = len(value.encode(encoding))
            except UnicodeEncodeError:
                size = len(value.encode("gb18030", errors="replace"))
        if spec.length is not None and size > spec.length:
            return f"{spec.display}长度超过{spec.length}字节(实际{size}字节)"
        return None
    if spec.type == "N":
        return _number_error(spec, value, condition_holds)
    if spec.type in ("D", "DT"):
        return _date_error(spec, value)
    bad = XML_ILLEGAL_RE.search(value)
    if bad:
        return f"{spec.display}含控制字符U+{ord(bad.group()):04X}"
    return f"{spec.display}取值{echo(value)}不在代码表内({'/'.join(spec.codes)})"


def _condition_holds(spec: FieldSpec, values: Mapping[str, str | None]) -> bool:
    return bool(spec.when) and all(values.get(k) == v for k, v in spec.when.items())


def field_error(txn: TransactionSpec, values: Mapping[str, str | None], encoding: str) -> RowError | None:
    """R1: the first field, in profile order, that is missing or malformed."""
    for spec in txn.fields:
        value = values.get(spec.name)
        holds = bool(spec.when) and _condition_holds(spec, values)
        if not value:
            if spec.required == "Y" or (spec.required == "C" and holds):
                reason = "不能为空"
                if spec.required == "C":
                    cond = "、".join(f"{txn.by_name[k].display}={v}" for k, v in spec.when.items())
                    reason = f"在{cond}时不能为空"
                return RowError("field_invalid", f"{spec.display}{reason}", spec.name)
            continue
        detail = value_error(spec, value, encoding, holds)
        if detail:
            return RowError("field_invalid", detail, spec.name)
    return None


def shanghai_now(offset_hours: int) -> datetime:
    """The server's wall-clock time in its own zone, naive."""
    return datetime.now(timezone(timedelta(hours=offset_hours))).replace(tzinfo=None)


@lru_cache(maxsize=16)
def _future_limit(now: datetime, tolerance_seconds: int) -> str:
    # valid DT text in its fixed yyyy-MM-dd HH:mm:ss shape compares like the time it denotes
    return (now + timedelta(seconds=tolerance_seconds)).strftime("%Y-%m-%d %H:%M:%S")


def future_error(
    txn: TransactionSpec, values: Mapping[str, str | None], now: datetime, tolerance_seconds: int
) -> RowError | None:
    """R7: a DT value more than ``tolerance_seconds`` after ``now`` (values already passed R1)."""
    limit = _future_limit(now, tolerance_seconds)
    for spec in txn.datetime_fields:
        value = values.get(spec.name)
        if value and value > limit:
            return RowError("field_invalid", f"{spec.display}晚于服务器当前时间: {echo(value)}", spec.name)
    return None


def mapping_error(
    txn: TransactionSpec, values: Mapping[str, str | None], registry: Mapping[str, MappingEntry]
) -> RowError | None:
    """R3 against a 对码 registry keyed by 医院对码流水号."""
    spec = txn.by_name["mapping_serial_no"]
    key = values.get("mapping_serial_no") or ""
    entry = registry.get(key)
    if entry is None:
        return RowError("unmapped", f"{spec.display}{echo(key)}未对码", spec.name)
    code = values.get("insurance_item_code") or ""
    if entry.insurance_item_code != code:
        item = txn.by_name["insurance_item_code"]
        detail = f"{item.display}{echo(code)}与对码信息{echo(entry.insurance_item_code)}不一致"
        return RowError("mapping_mismatch", detail, item.name)
    return None


def precheck_row(
    profile: Profile,
    txn: TransactionSpec,
    values: Mapping[str, str | None],
    registry: Mapping[str, MappingEntry] | None = None,
    *,
    clean: bool | None = None,
) -> RowError | None:
    """Client-side hold-back: R6, R1 and, given a local 对码 registry, R3, in the server's order.

    :param clean: what :func:`row_is_clean` says of the row, when the caller knows it already (see
        :func:`~cdyb_jxc.wire.clean_rows.clean_rows`)
    """
    enc = profile.inner_encoding
    error = None
    if not (row_is_clean(txn, values, enc) if clean is None else clean):
        error = charset_error(txn, values, enc) or field_error(txn, values, enc)
    if error is None and registry is not None:
        error = mapping_error(txn, values, registry)
    return error


# (name, scale, integer digits, min, exclusive min, conditional exclusive min, values that passed)
NumberCheck = tuple[str, int, int, Decimal | None, Decimal | None, Decimal | None, set[str]]
# (name, pattern, date or datetime, values that passed)
TemporalCheck = tuple[str, re.Pattern[str], type[date], set[str]]


@dataclass(frozen=True)
class CleanPlan:
    """The checks of :func:`row_is_clean` for one transaction, grouped by kind."""

    txn: TransactionSpec
    required: tuple[str, ...]
    conditional: tuple[tuple[str, tuple[tuple[str, str], ...]], ...]
    text: tuple[tuple[str, int], ...]
    codes: tuple[tuple[str, frozenset[str]], ...]
    numbers: tuple[NumberCheck, ...]
    temporals: tuple[TemporalCheck, ...]


# Numbers and dates repeat (prices, quantities, expiry dates): a value that passed once passes again, so each
# field keeps up to this many passing values and checks only the others.
PASSED_MAX = 1024


_PLANS: dict[tuple[int, str], CleanPlan] = {}


def clean_plan(txn: TransactionSpec, encoding: str) -> CleanPlan:
    """The checks of :func:`row_is_clean` for ``txn``, built once per transaction and encoding."""
    key = (id(txn), encoding)
    cached = _PLANS.get(key)
    if cached is None or cached.txn is not txn:
        fields = txn.fields
        cached = _PLANS[key] = CleanPlan(
            txn=txn,
            required=tuple(s.name for s in fields if s.required == "Y"),
            conditional=tuple((s.name, tuple(s.when.items())) for s in fields if s.required == "C"),
            text=tuple((s.name, s.length or 0) for s in fields if s.type == "C"),
            codes=tuple((s.name, frozenset(s.codes)) for s in fields if s.type == "code"),
            numbers=tuple(
                (
                    s.name,
                    s.scale or 0,
                    (s.precision or 0) - (s.scale or 0),
                    s.min,
                    s.min_exclusive,
                    s.conditional_min_exclusive,
                    set(),
                )
                for s in fields
                if s.type == "N"
            ),
            temporals=tuple(
                (s.name, DATE_RE, date, set()) if s.type == "D" else (s.name, DATETIME_RE, datetime, set())
                for s in fields
                if s.type in ("D", "DT")
            ),
        )
    return cached


# one flat pass per row on the hot path (both sides run it for every row): helpers would cost a call each
def row_is_clean(txn: TransactionSpec, values: Mapping[str, str | None], encoding: str) -> bool:  # noqa: C901
    """Fast check that a row passes R6 and R1. ``False`` means "maybe not": call the exact checks for the
    message. Never ``True`` for a row the exact checks would reject."""
    plan = clean_plan(txn, encoding)
    get = values.get
    for name in plan.required:
        if not get(name):
            return False
    for name, when in plan.conditional:
        if not get(name):
            for key, expected in when:
                if get(key) != expected:
                    break
            else:
                return False
    for name, length in plan.text:
        value = get(name)
        if not value:
            continue
        if not value.isprintable():
            return False
        if value.isascii():
            if len(value) > length:
                return False
        else:
            try:
                if len(value.encode(encoding)) > length:
                    return False
            except UnicodeEncodeError:
                return False
    for name, codes in plan.codes:
        value = get(name)
        if value and value not in codes:
            return False
    for number in plan.numbers:
        value = get(number[0])
        if value and value not in number[-1] and not number_passes(number, value):
            return False
    for temporal in plan.temporals:
        value = get(temporal[0])
        if value and value not in temporal[-1] and not temporal_passes(temporal, value):
            return False
    return True


def number_passes(check: NumberCheck, value: str) -> bool:
    """Whether ``value`` (text, not empty) passes a number field's fast check; a value that does is kept
    among the field's passed values."""
    _name, scale, int_digits, lo, lo_excl, cond_excl, passed = check
    if not NUMBER_RE.fullmatch(value):
        return False
    integer, _, fraction = value.lstrip("-").partition(".")
    if len(fraction) > scale or len(integer) > int_digits:
        return False
    negative = value[0] == "-"
    if lo == 0 and lo_excl is None and cond_excl is None:
        if negative:
            return False
    elif lo is None and lo_excl == 0 and cond_excl is None:
        if negative or not value.strip("0."):
            return False
    elif lo is not None or lo_excl is not None or cond_excl is not None:
        number = Decimal(value)
        if (lo is not None and number < lo) or (lo_excl is not None and number <= lo_excl):
            return False
        if cond_excl is not None and number <= cond_excl:
            return False  # the exact check decides whether the condition applies
    if len(passed) < PASSED_MAX:
        passed.add(value)
    return True


def temporal_passes(check: TemporalCheck, value: str) -> bool:
    """Whether ``value`` (text, not empty) passes a date or date-time field's fast check; a value that does
    is kept among the field's passed values."""
    _name, pattern, kind, passed = check
    if not pattern.fullmatch(value):
        return False
    try:
        kind.fromisoformat(value)
    except ValueError:
        return False
    if len(passed) < PASSED_MAX:
        passed.add(value)
    return True

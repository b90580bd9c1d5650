"""The interface profile: every uncertain item of the wire contract, loaded from one declarative TOML file.

Nothing here imports Airflow. Code reads tag names, codes, limits and messages from a :class:`Profile`;
a deployment overrides them by pointing at its own file (connection extra ``profile`` or the
``CDYB_JXC_PROFILE`` environment variable).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property, lru_cache
from typing import Any

from cdyb_jxc.config import PROFILE_VAR, EnvironmentSettings
from cdyb_jxc.exceptions import ProfileError
from cdyb_jxc.wire import profile_checks as check
from cdyb_jxc.wire.profile_checks import require as _require
from cdyb_jxc.wire.profile_load import parse_toml, read_default, read_file

PROFILE_ENV_VAR = PROFILE_VAR  # read by cdyb_jxc.config, like every setting
PROFILE_VERSION = 1  # the only layout this code reads; absent means 1
TOP_KEYS: tuple[str, ...] = ("profile_version", "name", "service", "request", "reply", "return_codes")
TOP_KEYS += ("categories", "fields", "transactions")
REPLY_KEYS = ("root", "retcode", "retmsg", "succnum", "failnum", "dataset", "row", "serial_no", "errmsg")
CONTROL_KEYS = ("transaction_code", "user", "verification_code", "institution_code", "row_count")
FIELD_TYPES = ("C", "N", "D", "DT", "code")
REQUIRED_LEVELS = ("Y", "N", "C")
TRANSACTIONS = ("init", "inbound", "outbound", "stock")
MAX_TEXT_LENGTH = 4000  # GBK bytes of a C field; the longest in the SPEC is 500
DAILY_TRANSACTIONS = TRANSACTIONS[1:]  # uploaded every business day; init is sent once
CATEGORY_KEYS = (
    "duplicate",
    "unmapped",
    "mapping_mismatch",
    "field_invalid",
    "charset",
    "duplicate_init",
    "original_missing",
    "malformed",
    "unknown_transaction",
    "bad_credentials",
    "unknown_institution",
    "count_mismatch",
    "too_many_rows",
    "no_mapping",
)


@dataclass(frozen=True)
class FieldSpec:
    """One row element of one transaction, with its rules."""

    name: str
    tag: str
    label: str
    type: str
    required: str
    length: int | None = None
    precision: int | None = None
    scale: int | None = None
    min: Decimal | None = None
    min_exclusive: Decimal | None = None
    codes: dict[str, str] = field(default_factory=dict)
    when: dict[str, str] = field(default_factory=dict)
    conditional_min_exclusive: Decimal | None = None
    reverses: str | None = None

    @property
    def display(self) -> str:
        """Name used in error details: ``流水号(yka105)``."""
        return f"{self.label}({self.tag})"


@dataclass(frozen=True)
class TransactionSpec:
    """One transaction (交易) of the interface."""

    key: str
    code: str
    name: str
    fields: tuple[FieldSpec, ...]
    once_per_item: bool = False

    @cached_property
    def by_name(self) -> dict[str, FieldSpec]:
        return {f.name: f for f in self.fields}

    @cached_property
    def by_tag(self) -> dict[str, FieldSpec]:
        return {f.tag: f for f in self.fields}

    @cached_property
    def required_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.required == "Y")

    @cached_property
    def datetime_fields(self) -> tuple[FieldSpec, ...]:
        """Fields of type ``DT`` (date and time), in profile order."""
        return tuple(f for f in self.fields if f.type == "DT")

    @cached_property
    def reversal_field(self) -> FieldSpec | None:
        return next((f for f in self.fields if f.reverses), None)


@dataclass(frozen=True)
class Profile:
    """A loaded, checked interface profile."""

    name: str
    source: str
    service: dict[str, Any]
    request: dict[str, str]
    control_tags: dict[str, str]
    reply: dict[str, str]
    return_codes: dict[str, str]
    categories: dict[str, str]
    transactions: dict[str, TransactionSpec]

    @property
    def batch_limit(self) -> int:
        return int(self.service["batch_limit"])

    @property
    def operation(self) -> str:
        return str(self.service["operation"])

    @property
    def namespace(self) -> str:
        return str(self.service["namespace"])

    @property
    def inner_encoding(self) -> str:
        return str(self.service["inner_encoding"])

    def category(self, key: str) -> str:
        """Category text for ``key``, with ``{limit}`` filled in."""
        return self.categories[key].replace("{limit}", str(self.batch_limit))

    def message(self, key: str, detail: str = "") -> str:
        """Full message ``【category】detail`` as the server sends it."""
        return f"【{self.category(key)}】{detail}"

    def transaction(self, key_or_code: str) -> TransactionSpec:
        """Look a transaction up by key (``outbound``) or wire code (``JXC003``)."""
        if key_or_code in self.transactions:
            return self.transactions[key_or_code]
        for txn in self.transactions.values():
            if txn.code == key_or_code:
                return txn
        raise KeyError(key_or_code)

    def transaction_by_code(self, code: str) -> TransactionSpec | None:
        return next((t for t in self.transactions.values() if t.code == code), None)

    def all_logical_fields(self) -> list[str]:
        """Every logical field name, in first-seen transaction order."""
        seen: dict[str, None] = {}
        for txn in self.transactions.values():
            for f in txn.fields:
                seen.setdefault(f.name, None)
        return list(seen)


def _string_table(
    raw: dict[str, Any], key: str, names: tuple[str, ...], checker: Callable[[str, str], str]
) -> dict[str, str]:
    table = _require(raw, key, "profile", dict)
    check.known_keys(table, key, names)
    return {n: checker(_require(table, n, key), f"{key}.{n}") for n in names}


_FIELD_SETTINGS = ("tag", "label", "type", "length", "precision", "scale", "min", "min_exclusive", "codes")


def _field_base(name: str, raw: dict[str, Any]) -> dict[str, Any]:
    where = f"fields.{name}"
    ftype = _require(raw, "type", where)
    if ftype not in FIELD_TYPES:
        raise ProfileError(f"profile key {where}.type must be one of {', '.join(FIELD_TYPES)}, not {ftype!r}")
    base: dict[str, Any] = {
        "name": name,
        "tag": check.xml_name(_require(raw, "tag", where), f"{where}.tag"),
        "label": check.label(_require(raw, "label", where), f"{where}.label"),
        "type": ftype,
    }
    if ftype == "C":
        base["length"] = _text_length(raw, where)
    elif ftype == "N":
        base.update(_number_bounds(raw, where))
    elif ftype == "code":
        base["codes"] = _code_set(raw, where)
    unknown = set(raw) - set(_FIELD_SETTINGS)
    if unknown:
        raise ProfileError(f"profile key {where}.{sorted(unknown)[0]} is not a known field setting")
    return base


def _text_length(raw: dict[str, Any], where: str) -> int:
    length = _require(raw, "length", where, int)
    if length <= 0:
        raise ProfileError(f"profile key {where}.length must be positive")
    return check.int_range(length, f"{where}.length", 1, MAX_TEXT_LENGTH)


def _number_bounds(raw: dict[str, Any], where: str) -> dict[str, Any]:
    precision = check.int_range(_require(raw, "precision", where, int), f"{where}.precision", 1, 38)
    scale = _require(raw, "scale", where, int)
    if not 0 <= scale < precision:
        raise ProfileError(f"profile key {where}.scale must be between 0 and precision-1")
    return {
        "precision": precision,
        "scale": scale,
        "min": check.decimal(raw.get("min"), f"{where}.min"),
        "min_exclusive": check.decimal(raw.get("min_exclusive"), f"{where}.min_exclusive"),
    }


def _code_set(raw: dict[str, Any], where: str) -> dict[str, str]:
    codes = _require(raw, "codes", where, dict)
    if not codes or not all(isinstance(k, str) and isinstance(v, str) for k, v in codes.items()):
        raise ProfileError(f"profile key {where}.codes must map code strings to names")
    for code, label in codes.items():
        check.code_text(code, f"{where}.codes key {check.shown(code)}")
        check.label(label, f"{where}.codes.{code}")
    return dict(codes)


def _field_spec(entry: Any, ewhere: str, bases: dict[str, dict[str, Any]]) -> FieldSpec:
    if not isinstance(entry, dict):
        raise ProfileError(f"profile key {ewhere} must be a table")
    name = _require(entry, "name", ewhere)
    if name not in bases:
        raise ProfileError(f"profile key {ewhere}.name names an undefined field {name!r}")
    required = _require(entry, "required", ewhere)
    if required not in REQUIRED_LEVELS:
        raise ProfileError(f"profile key {ewhere}.required must be Y, N or C, not {required!r}")
    when = entry.get("when", {})
    if required == "C" and not when:
        raise ProfileError(f"profile key {ewhere}.when is missing for a conditional field")
    if not isinstance(when, dict) or not all(isinstance(v, str) for v in when.values()):
        raise ProfileError(f"profile key {ewhere}.when must map field names to code strings")
    for cond, code in when.items():
        check.code_text(code, f"{ewhere}.when.{cond}")
    unknown = set(entry) - {"name", "required", "when", "min_exclusive", "label", "reverses"}
    if unknown:
        raise ProfileError(f"profile key {ewhere}.{sorted(unknown)[0]} is not a known setting")
    base = dict(bases[name])
    if "label" in entry:
        base["label"] = check.label(_require(entry, "label", ewhere), f"{ewhere}.label")
    reverses = entry.get("reverses")
    if reverses is not None and reverses not in TRANSACTIONS:
        raise ProfileError(f"profile key {ewhere}.reverses must name a transaction")
    return FieldSpec(
        **base,
        required=required,
        when=dict(when),
        conditional_min_exclusive=check.decimal(entry.get("min_exclusive"), f"{ewhere}.min_exclusive"),
        reverses=reverses,
    )


def _transaction(key: str, raw: Any, bases: dict[str, dict[str, Any]]) -> TransactionSpec:
    where = f"transactions.{key}"
    if not isinstance(raw, dict):
        raise ProfileError(f"profile key {where} must be a table")
    entries = _require(raw, "fields", where, list)
    specs = [_field_spec(entry, f"{where}.fields[{i}]", bases) for i, entry in enumerate(entries)]
    names = [s.name for s in specs]
    if twice := check.first_repeat(names):
        raise ProfileError(f"profile key {where}.fields lists the field {twice!r} twice")
    tags = [s.tag for s in specs]
    if twice := check.first_repeat(tags):
        both = " and ".join(repr(s.name) for s in specs if s.tag == twice)
        raise ProfileError(f"profile key {where}.fields uses the tag {twice!r} for two fields: {both}")
    check.known_keys(raw, where, ("code", "name", "fields", "once_per_item"))
    for spec in specs:
        for cond, wanted in spec.when.items():
            if cond not in names:
                raise ProfileError(
                    f"profile key {where}: {spec.name}.when names {cond!r}, not in this transaction"
                )
            if wanted not in (codes := next(s for s in specs if s.name == cond).codes):
                raise ProfileError(  # the condition could never hold: the field would never be required
                    f"profile key {where}: {spec.name}.when.{cond} is {wanted!r}, not a code of {cond}"
                    f" ({', '.join(codes) or 'it has no codes'})"
                )
    if "serial_no" not in names or "mapping_serial_no" not in names or "insurance_item_code" not in names:
        raise ProfileError(
            f"profile key {where}.fields must include serial_no, mapping_serial_no, insurance_item_code"
        )
    code = _require(raw, "code", where)
    if check.text(code, f"{where}.code", check.CODE_MAX) != code.strip() or " " in code:
        raise ProfileError(f"profile key {where}.code must not contain spaces, not {code!r}")
    return TransactionSpec(
        key=key,
        code=code,
        name=check.label(_require(raw, "name", where), f"{where}.name"),
        fields=tuple(specs),
        once_per_item=_require(raw, "once_per_item", where, bool) if "once_per_item" in raw else False,
    )


def parse_profile(raw: dict[str, Any], source: str = "<memory>") -> Profile:
    """Check a raw profile mapping and build a :class:`Profile`.

    :param raw: the parsed TOML document
    :param source: where it came from, for messages
    """
    check.known_keys(raw, "", TOP_KEYS)
    if (version := raw.get("profile_version", PROFILE_VERSION)) != PROFILE_VERSION or version is True:
        raise ProfileError(
            f"profile key profile_version must be {PROFILE_VERSION}, not {check.shown(version)}"
        )
    service = check.service_table(raw)
    req, ctl = _request_tags(raw)
    reply = _string_table(raw, "reply", REPLY_KEYS, check.xml_name)
    codes = _string_table(raw, "return_codes", ("success", "partial", "failure"), check.code_text)
    if twice := check.first_repeat(list(codes.values())):
        raise ProfileError(f"profile key return_codes uses {twice!r} for two outcomes")
    categories = _string_table(raw, "categories", CATEGORY_KEYS, check.category_text)
    transactions = _transactions(raw, _field_bases(raw))
    name = raw.get("name", "unnamed")
    if not isinstance(name, str):
        raise ProfileError(f"profile key name must be text, not {check.shown(name)}")
    return Profile(
        name=check.label(name, "name"),
        source=source,
        service=service,
        request=req,
        control_tags=ctl,
        reply=reply,
        return_codes=codes,
        categories=categories,
        transactions=transactions,
    )


def _request_tags(raw: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """The ``[request]`` tags and its ``control_tags``."""
    request = _require(raw, "request", "profile", dict)
    check.known_keys(request, "request", ("root", "control", "data", "row", "control_tags"))
    control_tags = _require(request, "control_tags", "request", dict)
    check.known_keys(control_tags, "request.control_tags", CONTROL_KEYS)
    req = check.tag_table(request, "request", ("root", "control", "data", "row"))
    return req, check.tag_table(control_tags, "request.control_tags", CONTROL_KEYS)


def _field_bases(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every ``[fields.*]`` definition, checked, as :class:`FieldSpec` keyword arguments."""
    raw_fields = _require(raw, "fields", "profile", dict)
    bases = {}
    for name, fraw in raw_fields.items():
        if not isinstance(fraw, dict):
            raise ProfileError(f"profile key fields.{name} must be a table")
        bases[name] = _field_base(name, fraw)
    return bases


def _transactions(raw: dict[str, Any], bases: dict[str, dict[str, Any]]) -> dict[str, TransactionSpec]:
    """The four transactions, in :data:`TRANSACTIONS` order, no two with the same code."""
    raw_txns = _require(raw, "transactions", "profile", dict)
    transactions = {}
    for key in TRANSACTIONS:
        if key not in raw_txns:
            raise ProfileError(f"profile key transactions.{key} is missing")
        transactions[key] = _transaction(key, raw_txns[key], bases)
    extra = set(raw_txns) - set(TRANSACTIONS)
    if extra:
        raise ProfileError(f"profile key transactions.{sorted(extra)[0]} is not a known transaction")
    txn_codes = [t.code for t in transactions.values()]
    if twice := check.first_repeat(txn_codes):
        both = " and ".join(k for k, t in transactions.items() if t.code == twice)
        raise ProfileError(f"profile key transactions.*.code: {both} share the code {twice!r}")
    return transactions


@lru_cache(maxsize=16)
def _load_cached(path: str | None) -> Profile:
    text, source = read_default() if path is None else read_file(path)
    return parse_profile(parse_toml(text, source), source)


def load_profile(path: str | os.PathLike[str] | None = None) -> Profile:
    """Load a profile: ``path``, else ``$CDYB_JXC_PROFILE``, else the packaged default.

    :param path: a TOML profile file
    """
    chosen = path if path is not None else EnvironmentSettings.from_environ().profile
    return _load_cached(None if chosen is None else str(chosen))

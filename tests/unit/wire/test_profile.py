"""The declarative interface profile: the packaged default, custom files, and malformed profiles."""

from __future__ import annotations

import copy
import re
import tomllib
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from cdyb_jxc.exceptions import ProfileError
from cdyb_jxc.wire.profile import PROFILE_ENV_VAR, Profile, load_profile, parse_profile

DEFAULT_TEXT = resources.files("cdyb_jxc").joinpath("data/default_profile.toml").read_text(encoding="utf-8")
DEFAULT_RAW = tomllib.loads(DEFAULT_TEXT)


def exactly(message: str) -> str:
    return f"^{re.escape(message)}$"


def raw_default() -> dict[str, Any]:
    return copy.deepcopy(DEFAULT_RAW)


def field_entry(raw: dict[str, Any], txn: str, name: str) -> dict[str, Any]:
    return next(e for e in raw["transactions"][txn]["fields"] if e["name"] == name)


def field_index(txn: str, name: str) -> int:
    return [e["name"] for e in DEFAULT_RAW["transactions"][txn]["fields"]].index(name)


def custom_text(batch_limit: int, name: str, outbound_code: str = "JXC003") -> str:
    text = DEFAULT_TEXT.replace("batch_limit = 100", f"batch_limit = {batch_limit}")
    text = text.replace('name = "chengdu-jxc-default"', f'name = "{name}"')
    text = text.replace('code = "JXC003"', f'code = "{outbound_code}"')
    assert f"batch_limit = {batch_limit}" in text
    return text


# --- the packaged default -------------------------------------------------------------------------------


def test_default_profile_has_four_transactions_with_their_codes(profile: Profile) -> None:
    assert {key: txn.code for key, txn in profile.transactions.items()} == {
        "init": "JXC001",
        "inbound": "JXC002",
        "outbound": "JXC003",
        "stock": "JXC004",
    }
    assert profile.name == "chengdu-jxc-default"
    assert profile.source == "default_profile.toml"


def test_default_profile_batch_limit_is_100_and_fills_the_limit_message(profile: Profile) -> None:
    assert profile.batch_limit == 100
    assert profile.message("too_many_rows") == "【单次上传明细条数超过最大限制100条】"


def test_default_profile_service_settings_match_the_spec(profile: Profile) -> None:
    assert profile.operation == "callBusiness"
    assert profile.namespace == "http://webservice.sjcj.cdyb/"
    assert profile.inner_encoding == "GBK"
    assert profile.return_codes == {"success": "1", "partial": "2", "failure": "-1"}
    assert profile.control_tags == {
        "transaction_code": "jyfwbm",
        "user": "jyfwyh",
        "verification_code": "jyfwyzm",
        "institution_code": "akb020",
        "row_count": "nums",
    }


def test_transaction_lookup_by_key_or_wire_code(profile: Profile) -> None:
    assert profile.transaction("JXC003") is profile.transaction("outbound")
    assert profile.transaction_by_code("JXC002") is profile.transactions["inbound"]
    assert profile.transaction_by_code("JXC999") is None
    with pytest.raises(KeyError):
        profile.transaction("JXC999")


def test_common_fields_come_first_in_every_transaction(profile: Profile) -> None:
    common = [
        "serial_no",
        "insurance_item_code",
        "hospital_item_name",
        "mapping_serial_no",
        "split_flag",
        "unit",
        "pack_ratio",
        "operator_name",
        "remark",
    ]
    for txn in profile.transactions.values():
        assert [f.name for f in txn.fields[: len(common)]] == common


def test_per_transaction_labels_override_the_field_label(profile: Profile) -> None:
    assert profile.transaction("init").by_name["quantity"].display == "采购数量(akc226)"
    assert profile.transaction("outbound").by_name["quantity"].display == "出库数量(akc226)"
    assert profile.transaction("outbound").by_name["event_time"].display == "出库时间(aae036)"


def test_only_init_is_once_per_item_and_only_inbound_reverses_outbound(profile: Profile) -> None:
    assert [t.key for t in profile.transactions.values() if t.once_per_item] == ["init"]
    reversal = profile.transaction("inbound").reversal_field
    assert reversal is not None
    assert (reversal.name, reversal.tag, reversal.reverses) == ("original_serial_no", "yyka105", "outbound")
    assert profile.transaction("outbound").reversal_field is None


# --- custom files -------------------------------------------------------------------------------------------


def test_load_custom_profile_from_path(tmp_path: Path) -> None:
    path = tmp_path / "custom_by_path.toml"
    path.write_text(custom_text(50, "site-a", outbound_code="CK003"), encoding="utf-8")

    loaded = load_profile(path)

    assert loaded.name == "site-a"
    assert loaded.source == str(path)
    assert loaded.batch_limit == 50
    assert loaded.transaction("CK003").key == "outbound"
    assert loaded.message("too_many_rows") == "【单次上传明细条数超过最大限制50条】"


def test_load_custom_profile_from_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "custom_by_env.toml"
    path.write_text(custom_text(20, "site-env"), encoding="utf-8")
    monkeypatch.setenv(PROFILE_ENV_VAR, str(path))

    loaded = load_profile()

    assert loaded.name == "site-env"
    assert loaded.batch_limit == 20


def test_explicit_path_wins_over_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_path = tmp_path / "custom_env_loser.toml"
    env_path.write_text(custom_text(20, "from-env"), encoding="utf-8")
    arg_path = tmp_path / "custom_arg_winner.toml"
    arg_path.write_text(custom_text(30, "from-arg"), encoding="utf-8")
    monkeypatch.setenv(PROFILE_ENV_VAR, str(env_path))

    assert load_profile(arg_path).name == "from-arg"


def test_empty_environment_variable_means_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PROFILE_ENV_VAR, "")
    assert load_profile().name == "chengdu-jxc-default"


def test_missing_profile_file_fails_at_load(tmp_path: Path) -> None:
    path = tmp_path / "does_not_exist.toml"
    with pytest.raises(ProfileError, match=exactly(f"profile file {path} does not exist")):
        load_profile(path)


def test_missing_profile_file_named_by_environment_variable_fails_at_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "env_does_not_exist.toml"
    monkeypatch.setenv(PROFILE_ENV_VAR, str(path))
    with pytest.raises(ProfileError, match=exactly(f"profile file {path} does not exist")):
        load_profile()


def test_invalid_toml_fails_at_load(tmp_path: Path) -> None:
    path = tmp_path / "invalid_toml.toml"
    path.write_text("[service]\nbatch_limit = = 100\n", encoding="utf-8")
    with pytest.raises(ProfileError, match=f"^{re.escape(f'profile file {path} is not valid TOML: ')}"):
        load_profile(path)


def test_profile_file_with_a_bad_key_fails_at_load(tmp_path: Path) -> None:
    path = tmp_path / "bad_key_file.toml"
    path.write_text(DEFAULT_TEXT.replace("batch_limit = 100\n", ""), encoding="utf-8")
    with pytest.raises(ProfileError, match=exactly("profile key service.batch_limit is missing")):
        load_profile(path)


# --- malformed profiles -------------------------------------------------------------------------------------


def _drop_batch_limit(raw: dict[str, Any]) -> None:
    del raw["service"]["batch_limit"]


def _batch_limit_as_text(raw: dict[str, Any]) -> None:
    raw["service"]["batch_limit"] = "100"


def _batch_limit_as_bool(raw: dict[str, Any]) -> None:
    raw["service"]["batch_limit"] = True


def _batch_limit_zero(raw: dict[str, Any]) -> None:
    raw["service"]["batch_limit"] = 0


def _unknown_field_type(raw: dict[str, Any]) -> None:
    raw["fields"]["unit"]["type"] = "X"


def _length_as_text(raw: dict[str, Any]) -> None:
    raw["fields"]["lot_no"]["length"] = "30"


def _unknown_field_setting(raw: dict[str, Any]) -> None:
    raw["fields"]["unit"]["maxlen"] = 20


def _undefined_field_in_transaction(raw: dict[str, Any]) -> None:
    field_entry(raw, "outbound", "serial_no")["name"] = "serial_number"


def _conditional_without_when(raw: dict[str, Any]) -> None:
    del field_entry(raw, "inbound", "supplier_name")["when"]


def _bad_required_level(raw: dict[str, Any]) -> None:
    field_entry(raw, "stock", "remark")["required"] = "maybe"


def _when_names_field_outside_transaction(raw: dict[str, Any]) -> None:
    field_entry(raw, "stock", "pack_ratio")["when"] = {"inbound_type": "11"}


def _missing_transaction(raw: dict[str, Any]) -> None:
    del raw["transactions"]["stock"]


def _field_listed_twice(raw: dict[str, Any]) -> None:
    raw["transactions"]["stock"]["fields"].append({"name": "remark", "required": "N"})


def _one_tag_for_two_fields(raw: dict[str, Any]) -> None:
    raw["fields"]["lot_no"]["tag"] = "aae013"


def _two_transactions_one_code(raw: dict[str, Any]) -> None:
    raw["transactions"]["stock"]["code"] = "JXC001"


def _missing_category(raw: dict[str, Any]) -> None:
    del raw["categories"]["charset"]


def _missing_control_tag(raw: dict[str, Any]) -> None:
    del raw["request"]["control_tags"]["row_count"]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (_drop_batch_limit, "profile key service.batch_limit is missing"),
        (_batch_limit_as_text, "profile key service.batch_limit must be an integer, not '100' (text)"),
        (_batch_limit_as_bool, "profile key service.batch_limit must be an integer, not True (a boolean)"),
        (_batch_limit_zero, "profile key service.batch_limit must be positive"),
        (_unknown_field_type, "profile key fields.unit.type must be one of C, N, D, DT, code, not 'X'"),
        (_length_as_text, "profile key fields.lot_no.length must be an integer, not '30' (text)"),
        (_unknown_field_setting, "profile key fields.unit.maxlen is not a known field setting"),
        (
            _undefined_field_in_transaction,
            "profile key transactions.outbound.fields[0].name names an undefined field 'serial_number'",
        ),
        (
            _conditional_without_when,
            (
                f"profile key transactions.inbound.fields[{field_index('inbound', 'supplier_name')}].when "
                "is missing for a conditional field"
            ),
        ),
        (
            _bad_required_level,
            (
                f"profile key transactions.stock.fields[{field_index('stock', 'remark')}].required "
                "must be Y, N or C, not 'maybe'"
            ),
        ),
        (
            _when_names_field_outside_transaction,
            "profile key transactions.stock: pack_ratio.when names 'inbound_type', not in this transaction",
        ),
        (_missing_transaction, "profile key transactions.stock is missing"),
        (_field_listed_twice, "profile key transactions.stock.fields lists the field 'remark' twice"),
        (
            _one_tag_for_two_fields,
            (
                "profile key transactions.init.fields uses the tag 'aae013' for two fields: "
                "'remark' and 'lot_no'"
            ),
        ),
        (
            _two_transactions_one_code,
            "profile key transactions.*.code: init and stock share the code 'JXC001'",
        ),
        (_missing_category, "profile key categories.charset is missing"),
        (_missing_control_tag, "profile key request.control_tags.row_count is missing"),
    ],
)
def test_malformed_profile_names_the_bad_key(mutate: Callable[[dict[str, Any]], None], message: str) -> None:
    raw = raw_default()
    mutate(raw)
    with pytest.raises(ProfileError, match=exactly(message)):
        parse_profile(raw)


def test_unmodified_default_dict_parses() -> None:
    parsed = parse_profile(raw_default(), "test")
    assert parsed.source == "test"
    assert parsed.batch_limit == 100


# --- complete validation at load: encodings, XML names, ranges, text, nesting, size -------------------------


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Set ``a.b.c`` (a number picks a list entry) to ``value``."""

    def mutate(raw: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = raw
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value

    return mutate


GBK_HOLD = "must hold every GBK character in two bytes (GBK or GB18030)"
XML_NAME = (
    "must be an XML name (ASCII letters, digits, '_', '-', '.', not starting with a digit, '-' or '.'; "
    "at most 64)"
)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        # the inner encoding: exists, and holds every GBK character in two bytes
        (
            _set("service.inner_encoding", "latin-1"),
            f"profile key service.inner_encoding {GBK_HOLD}, not 'latin-1'",
        ),
        (
            _set("service.inner_encoding", "ascii"),
            f"profile key service.inner_encoding {GBK_HOLD}, not 'ascii'",
        ),
        (
            _set("service.inner_encoding", "UTF-8"),
            f"profile key service.inner_encoding {GBK_HOLD}, not 'UTF-8'",
        ),
        (
            _set("service.inner_encoding", "utf-16"),
            f"profile key service.inner_encoding {GBK_HOLD}, not 'utf-16'",
        ),
        (
            _set("service.inner_encoding", "GB2312"),
            f"profile key service.inner_encoding {GBK_HOLD}, not 'GB2312'",
        ),
        (
            _set("service.inner_encoding", "big5"),
            f"profile key service.inner_encoding {GBK_HOLD}, not 'big5'",
        ),
        (
            _set("service.inner_encoding", "rot13"),
            f"profile key service.inner_encoding {GBK_HOLD}, not 'rot13'",
        ),
        (
            _set("service.inner_encoding", "no-such-codec"),
            "profile key service.inner_encoding names an unknown encoding 'no-such-codec'",
        ),
        (
            _set("service.inner_encoding", 'GBK"?><x'),
            "profile key service.inner_encoding names an unknown encoding 'GBK\"?><x'",
        ),
        (
            _set("service.accepted_inner_encodings", ["GBK", "nope"]),
            "profile key service.accepted_inner_encodings[1] names an unknown encoding 'nope'",
        ),
        (
            _set("service.accepted_inner_encodings", "GBK"),
            "profile key service.accepted_inner_encodings must be a list, not 'GBK' (text)",
        ),
        (
            _set("service.accepted_inner_encodings", []),
            "profile key service.accepted_inner_encodings must not be empty",
        ),
        # every tag and WSDL name is an XML name
        (_set("request.root", "in put"), f"profile key request.root {XML_NAME}, not 'in put'"),
        (_set("request.row", "ns:row"), f"profile key request.row {XML_NAME}, not 'ns:row'"),
        (_set("request.data", ""), f"profile key request.data {XML_NAME}, not ''"),
        (_set("request.control", "1control"), f"profile key request.control {XML_NAME}, not '1control'"),
        (
            _set("request.control_tags.user", "u><x"),
            f"profile key request.control_tags.user {XML_NAME}, not 'u><x'",
        ),
        (_set("reply.retmsg", "ret msg"), f"profile key reply.retmsg {XML_NAME}, not 'ret msg'"),
        (_set("reply.serial_no", "流水号"), f"profile key reply.serial_no {XML_NAME}, not '流水号'"),
        (_set("fields.unit.tag", "dw/"), f"profile key fields.unit.tag {XML_NAME}, not 'dw/'"),
        (_set("fields.unit.tag", "d" * 65), f"profile key fields.unit.tag {XML_NAME}, not '{'d' * 58}…"),
        (
            _set("service.operation", "call Business"),
            f"profile key service.operation {XML_NAME}, not 'call Business'",
        ),
        (
            _set("request.control_tags.verification_code", "jyfwyh"),
            "profile key request.control_tags uses the tag 'jyfwyh' for user and verification_code",
        ),
        (
            _set("service.namespace", 'http://x/" y'),
            "profile key service.namespace must be an absolute URI, not 'http://x/\" y'",
        ),
        (
            _set("service.path", "services/x"),
            "profile key service.path must be a URL path starting with '/', not 'services/x'",
        ),
        # numeric settings in range
        (
            _set("service.batch_limit", 10001),
            "profile key service.batch_limit must be between 1 and 10000, not 10001",
        ),
        (
            _set("service.future_tolerance_seconds", -1),
            "profile key service.future_tolerance_seconds must be between 0 and 86400, not -1",
        ),
        (
            _set("service.timezone_offset_hours", 99),
            "profile key service.timezone_offset_hours must be between -12 and 14, not 99",
        ),
        (_set("fields.unit.length", 0), "profile key fields.unit.length must be positive"),
        (
            _set("fields.unit.length", 10**9),
            "profile key fields.unit.length must be between 1 and 4000, not 1000000000",
        ),
        (
            _set("fields.quantity.precision", 0),
            "profile key fields.quantity.precision must be between 1 and 38, not 0",
        ),
        (
            _set("fields.quantity.precision", 99),
            "profile key fields.quantity.precision must be between 1 and 38, not 99",
        ),
        (
            _set("fields.quantity.min_exclusive", float("inf")),
            "profile key fields.quantity.min_exclusive must be a finite number below 10^38, not Infinity",
        ),
        (
            _set("fields.stock_quantity.min", float("nan")),
            "profile key fields.stock_quantity.min must be a finite number below 10^38, not NaN",
        ),
        (
            _set("fields.stock_quantity.min", "1e999"),
            "profile key fields.stock_quantity.min must be a finite number below 10^38, not 1E+999",
        ),
        # text settings: not empty, sane length, no control characters
        (_set("categories.duplicate", ""), "profile key categories.duplicate must not be empty"),
        (
            _set("categories.unmapped", "未" * 201),
            "profile key categories.unmapped must be at most 200 characters, not 201",
        ),
        (
            _set("fields.unit.label", "计量\x00单位"),
            "profile key fields.unit.label must not contain control characters: '计量\\x00单位'",
        ),
        (_set("return_codes.success", ""), "profile key return_codes.success must not be empty"),
        (_set("return_codes.partial", "1"), "profile key return_codes uses '1' for two outcomes"),
        (
            _set("transactions.outbound.code", "JXC 003"),
            "profile key transactions.outbound.code must not contain spaces, not 'JXC 003'",
        ),
        (
            _set("transactions.outbound.code", "J" * 17),
            "profile key transactions.outbound.code must be at most 16 characters, not 17",
        ),
        (
            _set("transactions.init.once_per_item", "false"),
            "profile key transactions.init.once_per_item must be a boolean, not 'false' (text)",
        ),
        (_set("name", ["a"]), "profile key name must be text, not ['a']"),
        (
            _set("fields.outbound_type.codes", {"": "空"}),
            "profile key fields.outbound_type.codes key '' must not be empty",
        ),
        (
            _set("transactions.outbound.fields.0.label", "x" * 101),
            "profile key transactions.outbound.fields[0].label must be at most 100 characters, not 101",
        ),
    ],
)
def test_profile_is_validated_completely_at_load(
    mutate: Callable[[dict[str, Any]], None], message: str
) -> None:
    raw = raw_default()
    mutate(raw)
    with pytest.raises(ProfileError, match=exactly(message)):
        parse_profile(raw)


@pytest.mark.parametrize("encoding", ["GBK", "gbk", "CP936", "GB18030", "gb18030"])
def test_gbk_and_gb18030_are_accepted_as_inner_encoding(encoding: str) -> None:
    raw = raw_default()
    raw["service"]["inner_encoding"] = encoding
    assert parse_profile(raw).inner_encoding == encoding


def test_deeply_nested_profile_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "deep.toml"
    path.write_text(DEFAULT_TEXT + "\nx = " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    line = DEFAULT_TEXT.count("\n") + 2
    with pytest.raises(
        ProfileError,
        match=exactly(f"profile file {path} nests lists or tables 5000 deep at line {line} (at most 32)"),
    ):
        load_profile(path)
    with pytest.raises(RecursionError):  # what tomllib would do with it
        tomllib.loads("x = " + "[" * 5000 + "]" * 5000)


def test_deeply_nested_inline_tables_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "deep_tables.toml"
    path.write_text("x = " + "{a = " * 40 + "1" + "}" * 40 + "\n", encoding="utf-8")
    with pytest.raises(
        ProfileError,
        match=exactly(f"profile file {path} nests lists or tables 40 deep at line 1 (at most 32)"),
    ):
        load_profile(path)


def test_brackets_inside_strings_and_comments_do_not_count_as_nesting(tmp_path: Path) -> None:
    path = tmp_path / "brackets_in_text.toml"
    text = DEFAULT_TEXT.replace(
        'name = "chengdu-jxc-default"',
        'name = "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["  # {{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{',
    )
    # a multi-line string (every key must be a known setting: the stock transaction's name)
    text = text.replace('name = "药品实际库存信息上传"', "name = '''" + "[" * 40 + "'''")
    path.write_text(text, encoding="utf-8")
    loaded = load_profile(path)
    assert loaded.name == "[" * 34
    assert loaded.transactions["stock"].name == "[" * 40


def test_profile_file_too_large_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge.toml"
    path.write_text(DEFAULT_TEXT + "\n# " + "x" * (1024 * 1024) + "\n", encoding="utf-8")
    with pytest.raises(ProfileError, match=exactly(f"profile file {path} is larger than 1048576 bytes")):
        load_profile(path)


# --- unknown keys, padded codes, impossible conditions, the layout version (issue 10 re-attack) -----------


def _when_code(code: str) -> Callable[[dict[str, Any]], None]:
    def mutate(raw: dict[str, Any]) -> None:
        field_entry(raw, "init", "pack_ratio")["when"] = {"split_flag": code}

    return mutate


def _when_on_text_field(raw: dict[str, Any]) -> None:
    field_entry(raw, "init", "pack_ratio")["when"] = {"serial_no": "1"}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        # a misspelt key would be ignored and the default used: refused, naming the key path
        (_set("servce", {"batch_limit": 10}), "profile key servce is not a known setting"),
        (_set("service.batch_limt", 10), "profile key service.batch_limt is not a known setting"),
        (_set("request.rows", "x"), "profile key request.rows is not a known setting"),
        (
            _set("request.control_tags.rowcount", "x"),
            "profile key request.control_tags.rowcount is not a known setting",
        ),
        (_set("reply.errmsgs", "x"), "profile key reply.errmsgs is not a known setting"),
        (_set("return_codes.sucess", "7"), "profile key return_codes.sucess is not a known setting"),
        (_set("categories.dupe", "x"), "profile key categories.dupe is not a known setting"),
        (
            _set("transactions.outbound.cod", "x"),
            "profile key transactions.outbound.cod is not a known setting",
        ),
        # codes and texts compared exactly with the centre's: surrounding whitespace is refused
        (
            _set("return_codes.success", " 1"),
            "profile key return_codes.success must not start or end with whitespace: ' 1'",
        ),
        (
            _set("categories.unmapped", "未对码 "),
            "profile key categories.unmapped must not start or end with whitespace: '未对码 '",
        ),
        (
            _set("fields.split_flag.codes", {"0": "整包装", "1 ": "拆零"}),
            "profile key fields.split_flag.codes key '1 ' must not start or end with whitespace: '1 '",
        ),
        (_set("request.row", " row"), f"profile key request.row {XML_NAME}, not ' row'"),
        # a condition that can never hold
        (
            _when_code("9"),
            (
                "profile key transactions.init: pack_ratio.when.split_flag is '9', not a code of"
                " split_flag (0, 1)"
            ),
        ),
        (
            _when_on_text_field,
            (
                "profile key transactions.init: pack_ratio.when.serial_no is '1', not a code of serial_no"
                " (it has no codes)"
            ),
        ),
        (_set("profile_version", 2), "profile key profile_version must be 1, not 2"),
        (_set("profile_version", "1"), "profile key profile_version must be 1, not '1'"),
        (_set("profile_version", True), "profile key profile_version must be 1, not True"),
    ],
)
def test_profile_unknown_keys_padded_codes_and_impossible_conditions_are_refused(
    mutate: Callable[[dict[str, Any]], None], message: str
) -> None:
    raw = raw_default()
    mutate(raw)
    with pytest.raises(ProfileError, match=exactly(message)):
        parse_profile(raw)


def test_profile_unknown_key_in_a_file_is_refused_at_load(tmp_path: Path) -> None:
    file = tmp_path / "p.toml"
    file.write_text(DEFAULT_TEXT.replace("batch_limit = 100", "batch_limit = 100\nbatch_limt = 10"), "utf-8")
    with pytest.raises(ProfileError, match=exactly("profile key service.batch_limt is not a known setting")):
        load_profile(file)


def test_profile_without_a_version_is_read_as_version_1() -> None:
    raw = raw_default()
    del raw["profile_version"]
    assert parse_profile(raw).batch_limit == 100

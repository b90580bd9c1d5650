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
from cdyb_jxc.profile import PROFILE_ENV_VAR, Profile, load_profile, parse_profile

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

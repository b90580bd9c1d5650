"""The deployment file: many institutions' uploads from one YAML file under version control (no Airflow).

Found at ``$CDYB_JXC_CONFIG``, else ``$AIRFLOW_HOME/cdyb_jxc.yaml``; without one, the single institution the
``CDYB_JXC_*`` variables describe (:class:`~cdyb_jxc.config.EnvironmentSettings`) keeps its DAG ids. The file
is read when the DAGs are parsed, so it is checked here completely and locally (no network, no database):
every problem is named by its key path (``institutions[1].conn_id: missing``) and all of them are raised at
once, as one :class:`~cdyb_jxc.exceptions.DeploymentConfigError`.

Shape (every ``defaults`` key may also be set per institution, which wins)::

    defaults:
      ledger_conn_id: cdyb_jxc_ledger     # or ledger_url
      report_dir: /data/cdyb_jxc/reports
      schedule: "0 2 * * *"               # cron, Asia/Shanghai
      start_date: 2026-01-01
      recheck_days: 7
      notify: log                         # log | webhook:URL | email:ADDRESS
      pool: cdyb_jxc_centre               # optional Airflow pool shared by all uploads
    institutions:
      - code: H51010400001                # 定点机构编码
        name: 示例医院本部
        conn_id: cdyb_jxc_h51010400001
        source_conn_id: his_main
        sql_dir: sql/main                 # relative to this file; default: the packaged templates
        mapping_file: mapping_main.csv    # relative to this file
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from cdyb_jxc.config import (
    CONFIG_VAR,
    DEFAULT_RECHECK_DAYS,
    DEFAULT_RETRY_DELAY_SECONDS,
    DEFAULT_SOURCE_CONN_ID,
    DEFAULT_TASK_TIMEOUT_MINUTES,
    MAX_TASK_TIMEOUT_MINUTES,
    REPORT_FOLDER,
    EnvironmentSettings,
    InstitutionSettings,
    clock,
    iso_day,
)
from cdyb_jxc.exceptions import DeploymentConfigError

CONFIG_FILE = "cdyb_jxc.yaml"  # in $AIRFLOW_HOME
PACKAGED_SQL = Path(__file__).resolve().parent / "data" / "sql"
DEFAULT_SCHEDULE = "0 2 * * *"
DEFAULT_PREFLIGHT_SCHEDULE = "0 22 * * *"  # the evening of day D, before the 02:00 upload
SQL_TEMPLATES = ("init.sql", "inbound.sql", "outbound.sql", "stock.sql")
# A 定点机构编码 goes into DAG ids (letters, digits, ``_ - .`` only there): letters and digits, as issued.
CODE_RE = re.compile(r"[A-Za-z0-9]{1,40}")
_CRON_FIELD = re.compile(r"[0-9A-Za-z*/,\-?LW#]+")
_MAX_RETRIES = 20
_PATH_KEYS = ("sql_dir", "mapping_file", "report_dir")

_Check = Callable[[Any], Any]  # the value checked and converted; raises ValueError with the reason


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be text" if not isinstance(value, str) else "empty")
    return value.strip()


def _code(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError(f"must be text: write it in quotes ('{value}'), or leading zeros are lost")
    text = _text(value)
    if not CODE_RE.fullmatch(text):
        raise ValueError(f"{text!r} is not a 定点机构编码 (letters and digits only)")
    return text


def _whole(low: int, high: int) -> _Check:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"must be a whole number from {low} to {high}, not {value!r}")
        return value

    return check


def _positive(high: float) -> _Check:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= high:
            raise ValueError(f"must be a number above 0 and at most {high:g}, not {value!r}")
        return float(value)

    return check


def _day(value: Any) -> str:
    if isinstance(value, date):
        return value.isoformat()
    try:
        return iso_day(_text(value))
    except ValueError:
        raise ValueError(f"must be a date written YYYY-MM-DD, not {value!r}") from None


def _cron(value: Any) -> str:
    """Five cron fields; Airflow parses them again when the DAG is built (values out of range)."""
    text = _text(value)
    parts = text.split()
    if text.startswith("@") or len(parts) != 5 or not all(_CRON_FIELD.fullmatch(p) for p in parts):
        raise ValueError(f"must be a cron expression of five fields (e.g. '0 2 * * *'), not {value!r}")
    return " ".join(parts)


def _deadline(value: Any) -> str:
    return clock(_text(value) if isinstance(value, str) else str(value), "deadline")


def _notify(value: Any) -> str:
    text = _text(value)
    channel, _, target = text.partition(":")
    if channel == "log" and not target:
        return text
    if channel == "webhook" and re.match(r"https?://\S+$", target.strip()):
        return text
    if channel == "email" and re.fullmatch(r"[^@\s,]+@[^@\s,]+", target.strip()):
        return text
    raise ValueError(f"must be log, webhook:URL or email:ADDRESS, not {value!r}")


# Keys a deployment file may set, per institution or (but for the first three) under ``defaults``.
INSTITUTION_ONLY: dict[str, _Check] = {"code": _code, "name": _text, "conn_id": _text}
SHARED: dict[str, _Check] = {
    "source_conn_id": _text,
    "ledger_conn_id": _text,
    "ledger_url": _text,
    "report_dir": _text,
    "sql_dir": _text,
    "mapping_file": _text,
    "schedule": _cron,
    "preflight_schedule": _cron,
    "intraday_schedule": _cron,
    "start_date": _day,
    "recheck_days": _whole(0, 366),
    "notify": _notify,
    "notify_data": _notify,
    "notify_ops": _notify,
    "deadline": _deadline,
    "pool": _text,
    "retries": _whole(0, _MAX_RETRIES),
    "retry_delay_seconds": _positive(24 * 3600),
    "task_timeout_minutes": _positive(MAX_TASK_TIMEOUT_MINUTES),
}
REQUIRED = ("code", "conn_id")
TOP_LEVEL = ("defaults", "institutions")


@dataclass(frozen=True, kw_only=True)
class InstitutionConfig:
    """One institution of a deployment file, every default applied and every path made absolute.

    :param settings: what its uploads run with (``institution_code`` and ``name`` set)
    :param sql_dir: the folder of its SQL templates
    :param schedule: cron of its daily DAG (Asia/Shanghai)
    :param preflight_schedule: cron of its preflight DAG (Asia/Shanghai)
    :param intraday_schedule: cron of its intraday DAG (Asia/Shanghai); ``None``: no intraday uploads
    :param pool: the Airflow pool its upload tasks run in (``None``: the default pool)
    :param retries: retries of each of its tasks
    :param path: where it is in the file (``institutions[0]``), for errors found later
    """

    settings: InstitutionSettings
    sql_dir: str
    schedule: str = DEFAULT_SCHEDULE
    preflight_schedule: str = DEFAULT_PREFLIGHT_SCHEDULE
    intraday_schedule: str | None = None
    pool: str | None = None
    retries: int = 3
    path: str = ""

    @property
    def code(self) -> str:
        return self.settings.institution_code or ""


@dataclass(frozen=True)
class Deployment:
    """A deployment file read and checked: its institutions, in file order."""

    path: Path
    institutions: tuple[InstitutionConfig, ...]


def find_config(environ: Mapping[str, str] = os.environ) -> Path | None:
    """The deployment file: ``$CDYB_JXC_CONFIG`` (which must exist), else ``$AIRFLOW_HOME/cdyb_jxc.yaml``
    when it exists, else ``None`` (the environment's single institution).

    :raises DeploymentConfigError: ``$CDYB_JXC_CONFIG`` names no file
    """
    env = EnvironmentSettings.from_environ(environ)
    named = (env.config_file or "").strip()
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise DeploymentConfigError(f"{CONFIG_VAR}={named}: no such file")
        return path
    default = env.home / CONFIG_FILE
    return default if default.is_file() else None


def load_deployment(path: str | Path, environ: Mapping[str, str] = os.environ) -> Deployment:
    """Read and check the deployment file at ``path``.

    :param path: the YAML file
    :param environ: where ``$AIRFLOW_HOME`` (the default report folder and ledger) is read
    :raises DeploymentConfigError: every problem, one per line, each named by its key path
    """
    path, document = _read(path)
    problems: list[str] = []
    institutions = _institutions(document, path.parent, EnvironmentSettings.from_environ(environ), problems)
    if problems:
        raise DeploymentConfigError(f"{path}: " + "; ".join(problems), problems=problems)
    return Deployment(path, tuple(institutions))


def deployment_institutions(path: str | Path) -> list[tuple[str, str]]:
    """The (code, name) of each institution the file at ``path`` names, without the rest of
    :func:`load_deployment`'s checks (the upload monitor lists institutions; the DAGs check the rest).

    :raises DeploymentConfigError: the file cannot be read, is not YAML, or an institution has no valid code
    """
    path, document = _read(path)
    listed = document.get("institutions") if isinstance(document, dict) else None
    if not isinstance(listed, list) or not listed:
        raise DeploymentConfigError(f"{path}: institutions: must be a non-empty list")
    out = []
    for n, entry in enumerate(listed):
        try:
            code = _code(entry.get("code") if isinstance(entry, dict) else None)
        except ValueError as err:
            raise DeploymentConfigError(f"{path}: institutions[{n}].code: {err}") from err
        name = entry.get("name")
        out.append((code, name.strip() if isinstance(name, str) and name.strip() else code))
    return out


def _read(path: str | Path) -> tuple[Path, Any]:
    """The file's absolute path and its YAML document.

    :raises DeploymentConfigError: it cannot be read or is not YAML
    """
    import yaml

    path = Path(path).resolve()
    try:
        return path, yaml.load(path.read_text(encoding="utf-8"), Loader=_loader())
    except (OSError, UnicodeDecodeError) as err:
        raise DeploymentConfigError(f"{path}: cannot be read: {err}") from err
    except yaml.YAMLError as err:
        raise DeploymentConfigError(f"{path}: not valid YAML: {err}") from err


def _loader() -> Any:
    """YAML's safe loader without its date resolver: a date stays text and is checked here, so that an
    impossible one (2026-13-01) is reported by its key path instead of failing the whole file."""
    import yaml

    class Loader(yaml.SafeLoader):  # type: ignore[misc]  # PyYAML ships no type hints
        pass

    Loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    return Loader


def _institutions(
    document: Any, base: Path, env: EnvironmentSettings, problems: list[str]
) -> list[InstitutionConfig]:
    if not isinstance(document, dict):
        problems.append("the file must be a mapping with 'institutions' (and optional 'defaults')")
        return []
    problems += [
        f"{key}: unknown key (expected {', '.join(TOP_LEVEL)})" for key in document if key not in TOP_LEVEL
    ]
    defaults = _mapping(document.get("defaults") or {}, "defaults", SHARED, problems)
    listed = document.get("institutions")
    if not isinstance(listed, list) or not listed:
        problems.append(
            "institutions: missing" if listed is None else "institutions: must be a non-empty list"
        )
        return []
    out: list[InstitutionConfig] = []
    seen: dict[tuple[str, str], str] = {}  # (key, value) → where it was first given, for code and conn_id
    for n, entry in enumerate(listed):
        institution = _entry(entry, f"institutions[{n}]", defaults, seen, base, env, problems)
        if institution is not None:
            out.append(institution)
    return out


def _entry(
    entry: Any,
    where: str,
    defaults: Mapping[str, Any],
    seen: dict[tuple[str, str], str],
    base: Path,
    env: EnvironmentSettings,
    problems: list[str],
) -> InstitutionConfig | None:
    """One institution of the list, or ``None`` with its problems added."""
    values = _mapping(entry, where, {**INSTITUTION_ONLY, **SHARED}, problems)
    if not isinstance(entry, dict):
        return None  # _mapping said so
    missing = [key for key in REQUIRED if key not in values and key not in entry]
    problems += [f"{where}.{key}: missing" for key in missing]
    for key in ("code", "conn_id"):  # each institution its own code, and its own credentials
        value = values.get(key)
        if value and (key, value.upper()) in seen:
            problems.append(f"{where}.{key}: {value} is already used by {seen[(key, value.upper())]}")
        elif value:
            seen[(key, value.upper())] = f"{where}.{key}"
    merged = {**defaults, **values}
    if "ledger_url" in merged and "ledger_conn_id" in merged:
        problems.append(f"{where}: set ledger_url or ledger_conn_id, not both (here or under defaults)")
    if missing or len(values) != len(entry):
        return None
    institution = _institution(merged, where, base, env)
    problems += _missing_files(institution, where, values)
    return institution


def _missing_files(institution: InstitutionConfig, where: str, given: Mapping[str, Any]) -> list[str]:
    """The local files an institution names that are not there (read at run time, checked now)."""

    def key(name: str) -> str:
        return f"{where}.{name}" if name in given else f"defaults.{name} (for {where})"

    sql_dir = Path(institution.sql_dir)
    if not sql_dir.is_dir():
        return [f"{key('sql_dir')}: {sql_dir}: no such folder"]
    problems = [
        f"{key('sql_dir')}: {sql_dir / name} is missing"
        for name in SQL_TEMPLATES
        if not (sql_dir / name).is_file()
    ]
    mapping = institution.settings.mapping_file
    if mapping and not Path(mapping).is_file():
        problems.append(f"{key('mapping_file')}: {mapping}: no such file")
    return problems


def _mapping(entry: Any, where: str, allowed: Mapping[str, _Check], problems: list[str]) -> dict[str, Any]:
    """The keys of ``entry`` that are allowed and valid, converted; a problem for each other key."""
    if not isinstance(entry, dict):
        problems.append(f"{where}: must be a mapping of keys to values")
        return {}
    values: dict[str, Any] = {}
    for key, value in entry.items():
        check = allowed.get(key) if isinstance(key, str) else None
        if check is None:
            problems.append(f"{where}.{key}: unknown key")
            continue
        try:
            values[key] = check(value)
        except ValueError as err:
            problems.append(f"{where}.{key}: {err}")
    return values


def _institution(
    values: Mapping[str, Any], where: str, base: Path, env: EnvironmentSettings
) -> InstitutionConfig:
    """One institution's settings: its keys over ``defaults`` over the built-in defaults."""
    paths = {key: str((base / values[key]).resolve()) for key in _PATH_KEYS if key in values}
    settings = replace(
        InstitutionSettings(),
        conn_id=values["conn_id"],
        source_conn_id=values.get("source_conn_id", DEFAULT_SOURCE_CONN_ID),
        ledger_url=values.get("ledger_url"),
        ledger_conn_id=values.get("ledger_conn_id"),
        report_dir=paths.get("report_dir", str(env.home / REPORT_FOLDER)),
        notify=values.get("notify", InstitutionSettings.notify),
        notify_data=values.get("notify_data"),
        notify_ops=values.get("notify_ops"),
        deadline=values.get("deadline", InstitutionSettings.deadline),
        start_date=values.get("start_date", InstitutionSettings.start_date),
        recheck_days=values.get("recheck_days", DEFAULT_RECHECK_DAYS),
        mapping_file=paths.get("mapping_file"),
        retry_delay=timedelta(seconds=values.get("retry_delay_seconds", DEFAULT_RETRY_DELAY_SECONDS)),
        task_timeout=timedelta(minutes=values.get("task_timeout_minutes", DEFAULT_TASK_TIMEOUT_MINUTES)),
        institution_code=values["code"],
        institution_name=values.get("name", values["code"]),
    )
    return InstitutionConfig(
        settings=settings,
        sql_dir=paths.get("sql_dir", str(PACKAGED_SQL)),
        schedule=values.get("schedule", DEFAULT_SCHEDULE),
        preflight_schedule=values.get("preflight_schedule", DEFAULT_PREFLIGHT_SCHEDULE),
        intraday_schedule=values.get("intraday_schedule"),
        pool=values.get("pool"),
        retries=values.get("retries", 3),
        path=where,
    )

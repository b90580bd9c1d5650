"""Where a run's settings, ledger and profile come from: the one module that reads the environment.

Every variable the product reads is named in :class:`EnvironmentSettings` and read by its
:meth:`~EnvironmentSettings.from_environ`. The DAGs, operators, CLI and monitor resolve their ledger and
profile here, in one order: what the caller names (an operator argument, a CLI option), then the connection
(a ledger connection; the centre connection's ``profile`` extra), then the environment, then the default.

No Airflow here: the glue passes in how to look a connection up (``get_connection``). What one institution's
uploads run with is an :class:`InstitutionSettings`; today the environment gives one, a deployment file will
give one per institution.

Airflow's own variables are read the way Airflow reads them, by :func:`env_connection`: a connection in
``AIRFLOW_CONN_<ID>`` (JSON or URI form), so that the CLI can use one without importing Airflow, and whether
a secrets backend is configured (Airflow asks it first, so then only Airflow can say which connection wins).
"""

from __future__ import annotations

import configparser
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

if TYPE_CHECKING:
    from sqlalchemy import URL

    from cdyb_jxc.wire.profile import Profile

CENTRE_CONN_TYPE = "cdyb_jxc"
DEFAULT_CONN_ID = "cdyb_jxc_default"
DEFAULT_SOURCE_CONN_ID = "cdyb_jxc_his"
DEFAULT_NOTIFY = "log"
DEFAULT_DEADLINE = "18:00"  # on D+1, Asia/Shanghai: day D fully accepted by then (T+1)
DEFAULT_START_DATE = "2026-01-01"
DEFAULT_RECHECK_DAYS = 7
DEFAULT_RETRY_DELAY_SECONDS = 120.0
DEFAULT_TASK_TIMEOUT_MINUTES = 120
MAX_TASK_TIMEOUT_MINUTES = 24 * 60
LEDGER_FILE = "cdyb_jxc_ledger.db"  # the default SQLite ledger, in $AIRFLOW_HOME
REPORT_FOLDER = "cdyb_jxc_reports"  # the default reject-report folder, in $AIRFLOW_HOME

PROFILE_VAR = "CDYB_JXC_PROFILE"
LEDGER_URL_VAR = "CDYB_JXC_LEDGER_URL"
TASK_TIMEOUT_VAR = "CDYB_JXC_TASK_TIMEOUT_MINUTES"
CONFIG_VAR = "CDYB_JXC_CONFIG"  # the deployment file (cdyb_jxc.deployment)


def _variable(name: str, default: str | None = None) -> Any:
    """A setting read from environment variable ``name``; ``default`` when it is unset or empty."""
    return field(default=default, metadata={"variable": name})


@dataclass(frozen=True)
class EnvironmentSettings:
    """The environment's settings, as text. Numbers are read by :meth:`institution` only, so a bad DAG
    setting fails the DAGs (naming the variable) and never the monitor, the CLI or a ledger."""

    conn_id: str = _variable("CDYB_JXC_CONN_ID", DEFAULT_CONN_ID)
    source_conn_id: str = _variable("CDYB_JXC_SOURCE_CONN_ID", DEFAULT_SOURCE_CONN_ID)
    ledger_url: str | None = _variable(LEDGER_URL_VAR)
    ledger_conn_id: str | None = _variable("CDYB_JXC_LEDGER_CONN_ID")
    profile: str | None = _variable(PROFILE_VAR)
    report_dir: str | None = _variable("CDYB_JXC_REPORT_DIR")
    notify: str = _variable("CDYB_JXC_NOTIFY", DEFAULT_NOTIFY)
    notify_data: str | None = _variable("CDYB_JXC_NOTIFY_DATA")
    notify_ops: str | None = _variable("CDYB_JXC_NOTIFY_OPS")
    deadline: str = _variable("CDYB_JXC_DEADLINE", DEFAULT_DEADLINE)
    start_date: str = _variable("CDYB_JXC_START_DATE", DEFAULT_START_DATE)
    recheck_days: str | None = _variable("CDYB_JXC_RECHECK_DAYS")
    mapping_file: str | None = _variable("CDYB_JXC_MAPPING_FILE")
    retry_delay_seconds: str | None = _variable("CDYB_JXC_RETRY_DELAY_SECONDS")
    task_timeout_minutes: str | None = _variable(TASK_TIMEOUT_VAR)
    intraday_schedule: str | None = _variable("CDYB_JXC_INTRADAY_SCHEDULE")  # a DAG setting (workflows)
    airflow_home: str | None = _variable("AIRFLOW_HOME")
    config_file: str | None = _variable(CONFIG_VAR)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> EnvironmentSettings:
        """Read every variable (an empty one counts as unset).

        :param environ: the environment (default: this process's)
        """
        given = {f.name: environ.get(f.metadata["variable"]) for f in fields(cls)}
        return cls(**{name: value for name, value in given.items() if value})

    @property
    def home(self) -> Path:
        """``$AIRFLOW_HOME``, else ``~/airflow``."""
        return Path(self.airflow_home or Path.home() / "airflow")

    def institution(self) -> InstitutionSettings:
        """The one institution the environment describes.

        :raises ValueError: ``CDYB_JXC_RECHECK_DAYS``, ``CDYB_JXC_RETRY_DELAY_SECONDS`` or
            ``CDYB_JXC_TASK_TIMEOUT_MINUTES`` is not a number (the last one says so by name)
        """
        return InstitutionSettings(
            conn_id=self.conn_id,
            source_conn_id=self.source_conn_id,
            ledger_url=self.ledger_url,
            ledger_conn_id=self.ledger_conn_id,
            report_dir=self.report_dir or str(self.home / REPORT_FOLDER),
            notify=self.notify,
            notify_data=self.notify_data,
            notify_ops=self.notify_ops,
            deadline=clock(self.deadline, "CDYB_JXC_DEADLINE"),
            start_date=self.start_date,
            recheck_days=int(self.recheck_days or DEFAULT_RECHECK_DAYS),
            mapping_file=self.mapping_file,
            retry_delay=timedelta(seconds=float(self.retry_delay_seconds or DEFAULT_RETRY_DELAY_SECONDS)),
            task_timeout=task_timeout_from_env(self.task_timeout_minutes),
        )


ENVIRONMENT_VARIABLES = tuple(f.metadata["variable"] for f in fields(EnvironmentSettings))


@dataclass(frozen=True, kw_only=True)
class InstitutionSettings:
    """What one institution's uploads run with.

    :param conn_id: the centre connection (credentials, 定点机构编码, optional ``profile``)
    :param source_conn_id: the connection the SQL templates run on (the HIS)
    :param ledger_url: SQLAlchemy URL of the ledger (default: a SQLite file in ``$AIRFLOW_HOME``)
    :param ledger_conn_id: an Airflow connection for the ledger instead of ``ledger_url``
    :param report_dir: where reject reports are written
    :param notify: ``log``, ``webhook:URL`` or ``email:ADDRESS``
    :param start_date: first business day of the DAGs (``YYYY-MM-DD``)
    :param recheck_days: previous business days re-read while they have rows not accepted
    :param mapping_file: local CSV copy of the 对码 registry (optional)
    :param retry_delay: first delay before a failed task is retried
    :param task_timeout: an upload task running longer fails (and is retried)
    :param institution_code: the 定点机构编码 a deployment file names (``None``: the connection's); a
        connection naming another one is refused
    :param institution_name: its name, shown in the DAGs' tags
    :param notify_data: where the T+1 watch sends data problems (``None``: ``notify``)
    :param notify_ops: where it sends transport and configuration problems (``None``: ``notify``)
    :param deadline: the T+1 deadline on D+1, ``HH:MM`` Asia/Shanghai
    """

    conn_id: str = DEFAULT_CONN_ID
    source_conn_id: str = DEFAULT_SOURCE_CONN_ID
    ledger_url: str | None = None
    ledger_conn_id: str | None = None
    report_dir: str = ""
    notify: str = DEFAULT_NOTIFY
    start_date: str = DEFAULT_START_DATE
    recheck_days: int = DEFAULT_RECHECK_DAYS
    mapping_file: str | None = None
    retry_delay: timedelta = timedelta(seconds=DEFAULT_RETRY_DELAY_SECONDS)
    task_timeout: timedelta = timedelta(minutes=DEFAULT_TASK_TIMEOUT_MINUTES)
    institution_code: str | None = None
    institution_name: str | None = None
    notify_data: str | None = None
    notify_ops: str | None = None
    deadline: str = DEFAULT_DEADLINE


def clock(text: str, name: str) -> str:
    """``text`` if it is a time of day written ``HH:MM`` (00:00 to 23:59), written back zero-padded.

    :param text: the setting's text
    :param name: the setting, named in the error
    :raises ValueError: anything else
    """
    hour, _, minute = text.strip().partition(":")
    if not (hour.isdigit() and minute.isdigit() and len(minute) == 2 and int(hour) < 24 and int(minute) < 60):
        raise ValueError(f"{name} must be a time of day written HH:MM, not {text!r}")
    return f"{int(hour):02d}:{minute}"


def iso_day(text: str) -> str:
    """``text`` if it is a date written exactly ``YYYY-MM-DD`` (what goes into SQL and DAG settings).

    :raises ValueError: anything else (``2026-1-5``, ``20260105``, ``2026-13-01``)
    """
    if len(text) != 10:
        raise ValueError(text)
    return date.fromisoformat(text).isoformat()


def task_timeout_from_env(raw: str | None) -> timedelta:
    """``CDYB_JXC_TASK_TIMEOUT_MINUTES`` read and checked (a positive number of minutes, at most a day).

    :param raw: the variable's text; unset or blank: the default (120 minutes)
    :raises ValueError: anything else, naming the variable and the value
    """
    if raw is None or not raw.strip():
        return timedelta(minutes=DEFAULT_TASK_TIMEOUT_MINUTES)
    try:
        minutes = float(raw)
    except ValueError as err:
        raise ValueError(f"{TASK_TIMEOUT_VAR} must be a number of minutes, not {raw!r}") from err
    if not 0 < minutes <= MAX_TASK_TIMEOUT_MINUTES:
        raise ValueError(
            f"{TASK_TIMEOUT_VAR} must be between 0 and {MAX_TASK_TIMEOUT_MINUTES} minutes, not {raw!r}"
        )
    return timedelta(minutes=minutes)


def default_ledger_url(environ: Mapping[str, str] = os.environ) -> str:
    """``$CDYB_JXC_LEDGER_URL``, else a SQLite file in ``$AIRFLOW_HOME`` (``~/airflow``, created if missing).

    :param environ: the environment (default: this process's)
    """
    env = EnvironmentSettings.from_environ(environ)
    if env.ledger_url:
        return env.ledger_url
    env.home.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{env.home / LEDGER_FILE}"


def resolve_ledger_url(
    ledger_url: str | None = None,
    ledger_conn_id: str | None = None,
    *,
    get_connection: Callable[[str], URL],
) -> URL:
    """The ledger's database: connection ``ledger_conn_id``, else ``ledger_url``, else the default.

    A URL object, not text: ``str()`` of a SQLAlchemy URL masks the password, which would lock a reader out of
    a password-protected ledger.

    :param ledger_url: a SQLAlchemy URL
    :param ledger_conn_id: an Airflow connection naming a database (e.g. PostgreSQL)
    :param get_connection: the database URL of a connection, password kept (the glue's lookup)
    """
    from sqlalchemy import make_url

    if ledger_conn_id:
        return get_connection(ledger_conn_id)
    return make_url(ledger_url or default_ledger_url())


def connection_profile(extra: Mapping[str, Any] | None) -> str | None:
    """The ``profile`` extra of a centre connection (plain or as the UI's form writes it), if it has one.

    :param extra: the connection's extras (``extra_dejson``); None: no such connection
    """
    from cdyb_jxc.wire.connection import read_extra

    value = read_extra(extra or {}, CENTRE_CONN_TYPE).get("profile")
    return None if value is None else str(value)


def resolve_profile(
    override: str | os.PathLike[str] | None = None, *, connection: str | None = None
) -> Profile:
    """The interface profile of a run: ``override``, else the centre connection's ``profile`` extra, else
    ``$CDYB_JXC_PROFILE``, else the packaged default.

    :param override: a TOML profile file chosen by the caller (the hook's ``profile_path``)
    :param connection: the centre connection's ``profile`` extra (see :func:`connection_profile`)
    :raises ProfileError: the chosen profile cannot be read or is not valid
    """
    # imported here: the profile module reads $CDYB_JXC_PROFILE through this module
    from cdyb_jxc.wire.profile import load_profile

    return load_profile(override or connection)


# -- a connection in AIRFLOW_CONN_<ID>, read as Airflow's environment-variables backend reads it ------------

CONN_ENV_PREFIX = "AIRFLOW_CONN_"
# [secrets] backend in each form Airflow's configuration accepts from the environment (value, _CMD, _SECRET)
SECRETS_BACKEND_VARS = (
    "AIRFLOW__SECRETS__BACKEND",
    "AIRFLOW__SECRETS__BACKEND_CMD",
    "AIRFLOW__SECRETS__BACKEND_SECRET",
)
_JSON_FIELDS = frozenset({"conn_type", "description", "host", "schema", "login", "password", "port", "extra"})
_EXTRA_KEY = "__extra__"  # the URI query parameter that holds all extras as JSON text
_TEAM_SEP = "___"  # multi-team names (AIRFLOW_CONN__<TEAM>___<ID>) are Airflow's to resolve


@dataclass(frozen=True)
class ConnectionFields:
    """The fields of an Airflow connection, with the values Airflow's ``Connection`` gives them.

    :param conn_type: connection type, normalised as Airflow does (``-`` → ``_``, ``postgresql`` →
        ``postgres``)
    :param host: host (for the centre: the endpoint URL)
    :param schema: schema (a URI's path)
    :param login: login
    :param password: password; never in ``repr``
    :param port: port
    :param extra: the extras, parsed (Airflow's ``extra_dejson``); never in ``repr``
    """

    conn_type: str | None = None
    host: str | None = None
    schema: str | None = None
    login: str | None = None
    password: str | None = field(default=None, repr=False)
    port: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)


def env_connection(conn_id: str, environ: Mapping[str, str] = os.environ) -> ConnectionFields | None:
    """Connection ``conn_id`` from ``AIRFLOW_CONN_<ID>`` without Airflow; None when only Airflow can answer.

    None when the variable is unset or blank (Airflow tries its other sources then), when a secrets backend
    is configured (Airflow asks it before the environment), for a multi-team name, and for a value Airflow
    would refuse or read differently (see :func:`parse_connection`): asked then, Airflow answers as it
    always did.

    :param conn_id: the connection id
    :param environ: the environment (default: this process's)
    """
    value = environ.get(CONN_ENV_PREFIX + conn_id.upper(), "")
    if not value.strip() or _TEAM_SEP in conn_id or secrets_backend_configured(environ):
        return None
    try:
        return parse_connection(value)
    except (TypeError, ValueError):
        return None


def secrets_backend_configured(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether Airflow's configuration names a ``[secrets] backend`` (environment or ``airflow.cfg``).

    An ``airflow.cfg`` that cannot be read counts as naming one: Airflow is asked then.

    :param environ: the environment (default: this process's)
    """
    if any(environ.get(name, "").strip() for name in SECRETS_BACKEND_VARS):
        return True
    home = EnvironmentSettings.from_environ(environ).home
    path = Path(environ.get("AIRFLOW_CONFIG") or home / "airflow.cfg")
    if not path.exists():
        return False
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    try:
        parser.read(path, encoding="utf-8")
    except (OSError, UnicodeError, configparser.Error):
        return True
    keys = ("backend", "backend_cmd", "backend_secret")
    return any(parser.get("secrets", key, fallback="").strip() for key in keys)


def parse_connection(value: str) -> ConnectionFields:
    """A serialised connection as Airflow's secrets backends read it: JSON if it starts with ``{``, else a URI
    (``cdyb-jxc://login:password@host:port/schema?extra=value``, percent-encoded; ``__extra__`` holds all
    extras as JSON).

    :param value: the text, e.g. the value of ``AIRFLOW_CONN_<ID>``
    :raises ValueError: text Airflow refuses (bad JSON, unknown field, bad port, three ``://``), or extras
        that are not a JSON object (Airflow logs and drops those)
    :raises TypeError: a JSON field of a type Airflow cannot take (e.g. a list as ``port``)
    """
    text = value.strip()
    return _from_json(text) if text.startswith("{") else _from_uri(text)


def _from_json(text: str) -> ConnectionFields:
    """``Connection.from_json``: the fields as given, falsy ``extra``/``port``/``conn_type`` dropped."""
    given = json.loads(text)
    if not isinstance(given, dict) or not set(given) <= _JSON_FIELDS:
        raise ValueError("not the fields of a connection")  # Airflow's Connection(**fields) refuses it
    conn_type, port, extra = given.get("conn_type"), given.get("port"), given.get("extra")
    if conn_type and not isinstance(conn_type, str):
        raise TypeError("conn_type is not text")
    return ConnectionFields(
        conn_type=_conn_type(conn_type) if conn_type else None,
        host=given.get("host"),
        schema=given.get("schema"),
        login=given.get("login"),
        password=given.get("password"),
        port=int(port) if port else None,
        extra=_extra(extra) if extra else {},
    )


def _from_uri(uri: str) -> ConnectionFields:
    """``Connection.from_uri``, step by step: a host may carry its own protocol (``type://http://host``)."""
    schemes = uri.count("://")
    if schemes > 2:
        raise ValueError("invalid connection URI")
    conn_type = urlsplit(uri).scheme
    rest = uri.replace(f"{conn_type}://", "" if schemes == 2 else "//")
    if schemes == 2 and any(ch in rest.split("://", 1)[0] for ch in "@:"):
        raise ValueError("invalid connection URI")
    parts = urlsplit(rest)
    host = _uri_hostname(parts.hostname, parts.netloc)
    protocol = parts.scheme if schemes == 2 else None
    schema = parts.path[1:]
    query = dict(parse_qsl(parts.query, keep_blank_values=True)) if parts.query else {}
    return ConnectionFields(
        conn_type=_conn_type(conn_type),
        host=f"{protocol}://{host}" if host and protocol else host,
        schema=unquote(schema) if schema else schema,
        login=unquote(parts.username) if parts.username else parts.username,
        password=unquote(parts.password) if parts.password else parts.password,
        port=parts.port,
        extra=_extra(query[_EXTRA_KEY]) if _EXTRA_KEY in query else query,
    )


def _uri_hostname(hostname: str | None, netloc: str) -> str:
    """The host of a URI, percent-decoded; a host holding a ``/`` (an encoded URL) keeps its case."""
    host = unquote(hostname or "")
    if "/" in host:
        host = netloc.rsplit("@", 1)[1] if "@" in netloc else netloc
        host = unquote(host.split(":", 1)[0])
    return host


def _conn_type(conn_type: str) -> str:
    return "postgres" if conn_type == "postgresql" else conn_type.replace("-", "_")


def _extra(extra: Any) -> Mapping[str, Any]:
    """Airflow's ``extra_dejson`` of a connection's ``extra`` (JSON text, or a JSON value)."""
    if not extra:
        return {}
    parsed = json.loads(extra) if isinstance(extra, str) else extra
    if not isinstance(parsed, dict):
        raise ValueError("extras are not a JSON object")
    return parsed

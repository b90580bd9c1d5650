"""Connection settings of the centre, read by name from an allowlist and checked (no Airflow)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from cdyb_jxc.exceptions import ConnectionConfigError

EXTRA_KEYS = (
    "institution_code",
    "environment",
    "profile",
    "timeout",
    "batch_limit",
    "verify",
    "max_in_flight",
)
ENVIRONMENTS = ("test", "prod")
DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_IN_FLIGHT = 2  # requests of one transaction out at once
MAX_IN_FLIGHT = 8  # more would only queue at the centre and hold more rows in doubt after a crash


@dataclass(frozen=True)
class CentreSettings:
    """Everything needed to call the centre. ``verification_code`` never appears in ``repr``."""

    endpoint: str
    user: str
    institution_code: str
    environment: str = "test"
    profile: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    batch_limit: int | None = None
    verify: bool = True
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    verification_code: str = field(default="", repr=False)


def read_extra(extra: Mapping[str, Any], conn_type: str) -> dict[str, Any]:
    """Pick the allowlisted extras by name (plain or UI-prefixed ``extra__<type>__<name>``)."""
    picked: dict[str, Any] = {}
    for key in EXTRA_KEYS:
        for candidate in (key, f"extra__{conn_type}__{key}"):
            value = extra.get(candidate)
            if value not in (None, ""):
                picked[key] = value
                break
    return picked


def _bool(value: Any, name: str, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ConnectionConfigError(f"{where}: extra {name!r} must be true or false, not {value!r}")


def _endpoint(host: str | None, where: str) -> str:
    endpoint = (host or "").strip()
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConnectionConfigError(
            f"{where}: host must be the endpoint URL (http:// or https://), got {endpoint!r}"
        )
    return endpoint


def _environment(values: dict[str, Any], where: str) -> str:
    environment = str(values.get("environment", "test")).strip().lower()
    if environment not in ENVIRONMENTS:
        raise ConnectionConfigError(f"{where}: extra 'environment' must be test or prod, not {environment!r}")
    return environment


def _institution(values: dict[str, Any], where: str, expected: str | None) -> str:
    given = str(values.get("institution_code", "")).strip()
    if given and expected and given != expected:
        raise ConnectionConfigError(
            f"{where}: extra 'institution_code' is {given}, but the deployment file uses this connection for "
            f"定点机构编码 {expected}; give each institution its own connection, or correct the code"
        )
    if not (given or expected):
        raise ConnectionConfigError(f"{where}: extra 'institution_code' (定点机构编码) is required")
    return given or str(expected)


def _timeout(values: dict[str, Any], where: str) -> float:
    try:
        timeout = float(values.get("timeout", DEFAULT_TIMEOUT))
    except (TypeError, ValueError) as err:
        raise ConnectionConfigError(f"{where}: extra 'timeout' must be a number of seconds") from err
    if not 0 < timeout <= 3600:
        raise ConnectionConfigError(
            f"{where}: extra 'timeout' must be between 0 and 3600 seconds, not {timeout}"
        )
    return timeout


def _batch_limit(values: dict[str, Any], where: str) -> int | None:
    batch_limit = _whole_number(values, "batch_limit", where)
    if batch_limit is not None and batch_limit <= 0:
        raise ConnectionConfigError(f"{where}: extra 'batch_limit' must be positive, not {batch_limit}")
    return batch_limit


def _whole_number(values: dict[str, Any], name: str, where: str) -> int | None:
    """The extra ``name`` as a whole number, ``None`` when it is not given."""
    if name not in values:
        return None
    raw = values[name]
    text = str(raw).strip()
    if isinstance(raw, bool) or not text.lstrip("-").isdigit():
        raise ConnectionConfigError(f"{where}: extra {name!r} must be a whole number, not {raw!r}")
    return int(text)


def check_max_in_flight(value: int, where: str, name: str = "extra 'max_in_flight'") -> int:
    """``value`` if it is a number of requests in flight this client allows (1 to :data:`MAX_IN_FLIGHT`).

    :param value: the number asked for
    :param where: who asks, named in the error (``connection 'x'``, ``--max-in-flight``, a task)
    :param name: what the value is called there
    :raises ConnectionConfigError: outside 1..8
    """
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_IN_FLIGHT:
        raise ConnectionConfigError(
            f"{where}: {name} must be a whole number from 1 to {MAX_IN_FLIGHT}, not {value!r}"
        )
    return value


def _max_in_flight(values: dict[str, Any], where: str) -> int:
    given = _whole_number(values, "max_in_flight", where)
    return DEFAULT_MAX_IN_FLIGHT if given is None else check_max_in_flight(given, where)


def build_settings(
    *,
    conn_id: str,
    host: str | None,
    login: str | None,
    password: str | None,
    extra: Mapping[str, Any],
    conn_type: str,
    institution_code: str | None = None,
) -> CentreSettings:
    """Check a connection's fields; every error names the connection and the field.

    :param institution_code: the 定点机构编码 the connection is configured for (a deployment file): used
        when the extra names none, and an extra naming another one is refused
    """
    where = f"connection {conn_id!r}"
    endpoint = _endpoint(host, where)
    if not login:
        raise ConnectionConfigError(f"{where}: login (交易访问用户) is empty")
    if not password:
        raise ConnectionConfigError(f"{where}: password (交易访问验证码) is empty")
    values = read_extra(extra, conn_type)
    institution = _institution(values, where, institution_code)
    environment = _environment(values, where)
    timeout = _timeout(values, where)
    batch_limit = _batch_limit(values, where)
    max_in_flight = _max_in_flight(values, where)
    return CentreSettings(
        endpoint=endpoint,
        user=login,
        institution_code=institution,
        environment=environment,
        profile=str(values["profile"]) if "profile" in values else None,
        timeout=timeout,
        batch_limit=batch_limit,
        verify=_bool(values.get("verify", True), "verify", where),
        max_in_flight=max_in_flight,
        verification_code=password,
    )

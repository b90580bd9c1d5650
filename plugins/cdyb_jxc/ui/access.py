"""Which institutions a monitor user may see, by Airflow's own DAG permissions.

An institution is seen by whoever may read its daily DAG (the auth manager's DAG check, so a team granted
some institutions' DAGs sees those only). The deployment file names the institutions and their DAG ids
(``cdyb_jxc_daily__<code>``); without one, the single institution of the environment uploads through
``cdyb_jxc_daily``. An institution the ledger holds rows of but no DAG of this deployment uploads (one
taken out of the file) is seen only by those who may read every DAG.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from cdyb_jxc.deployment import find_config, load_deployment

DAILY_DAG_BASE = "cdyb_jxc_daily"  # the packaged daily DAG (cdyb_jxc.workflows.builder.DAILY_DAG_ID)


@dataclass(frozen=True)
class Institution:
    """One institution as the monitor lists it.

    :param code: its 定点机构编码
    :param name: its name in the deployment file (``None``: not named there)
    :param daily_dag_id: the DAG that uploads its days (``None``: none of this deployment's)
    """

    code: str
    name: str | None
    daily_dag_id: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def directory(ledger_codes: Iterable[str], environ: Mapping[str, str] = os.environ) -> list[Institution]:
    """The deployment's institutions, then those only the ledger knows, by code.

    :param ledger_codes: the institutions the ledger holds rows of
    :raises DeploymentConfigError: the deployment file is not valid
    """
    path = find_config(environ)
    if path is None:
        named: dict[str, Institution] = {}
        orphan_dag: str | None = DAILY_DAG_BASE  # one institution: whatever the ledger holds is its
    else:
        stat = path.stat()
        named = dict(_deployment(str(path.resolve()), stat.st_mtime_ns, stat.st_size))
        orphan_dag = None
    found = dict(named)
    for code in ledger_codes:
        found.setdefault(code, Institution(code, None, orphan_dag))
    return sorted(found.values(), key=lambda i: i.code)


@lru_cache(maxsize=8)
def _deployment(path: str, mtime_ns: int, size: int) -> tuple[tuple[str, Institution], ...]:
    """The institutions of the file at ``path`` as it was at (``mtime_ns``, ``size``): read again once
    edited."""
    out = []
    for entry in load_deployment(Path(path)).institutions:
        code = entry.settings.institution_code or ""
        out.append((code, Institution(code, entry.settings.institution_name, f"{DAILY_DAG_BASE}__{code}")))
    return tuple(out)


def visible(user: Any, institutions: list[Institution]) -> tuple[list[Institution], bool]:
    """The institutions ``user`` may see, and whether that is all of them.

    :param user: the logged-in Airflow user
    """
    from airflow.api_fastapi.app import get_auth_manager

    auth = get_auth_manager()
    dag_ids = {i.daily_dag_id for i in institutions if i.daily_dag_id}
    readable = auth.filter_authorized_dag_ids(dag_ids=dag_ids, user=user, method="GET") if dag_ids else set()
    every_dag = any(i.daily_dag_id is None for i in institutions) and auth.is_authorized_dag(
        method="GET", user=user
    )
    seen = [i for i in institutions if i.daily_dag_id in readable or (i.daily_dag_id is None and every_dag)]
    return seen, len(seen) == len(institutions)


def may_read_dag(user: Any, dag_id: str) -> bool:
    """Whether ``user`` may read the DAG ``dag_id`` (a run's page shows what that run uploaded)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails

    return bool(get_auth_manager().is_authorized_dag(method="GET", details=DagDetails(id=dag_id), user=user))

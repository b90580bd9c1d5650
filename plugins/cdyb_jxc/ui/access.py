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

from cdyb_jxc.deployment import deployment_institutions, find_config

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
    """The institutions the file at ``path`` names, as it was at (``mtime_ns``, ``size``): read again once
    edited. Only their codes and names: the monitor does not need the SQL templates or mapping files the
    DAGs check for, which the api-server's host may not hold."""
    out = []
    for code, name in deployment_institutions(Path(path)):
        out.append((code, Institution(code, name, f"{DAILY_DAG_BASE}__{code}")))
    return tuple(out)


def visible(user: Any, institutions: list[Institution]) -> tuple[list[Institution], bool]:
    """The institutions ``user`` may see, and whether the user may read every DAG (then every institution,
    including one whose rows arrive after this check, is theirs to see).

    :param user: the logged-in Airflow user
    """
    from airflow.api_fastapi.app import get_auth_manager

    auth = get_auth_manager()
    every_dag = bool(auth.is_authorized_dag(method="GET", user=user))
    if every_dag:
        return list(institutions), True
    dag_ids = {i.daily_dag_id for i in institutions if i.daily_dag_id}
    readable = auth.filter_authorized_dag_ids(dag_ids=dag_ids, user=user, method="GET") if dag_ids else set()
    return [i for i in institutions if i.daily_dag_id in readable], False


def may_read_dag(user: Any, dag_id: str) -> bool:
    """Whether ``user`` may read the DAG ``dag_id`` (a run's page shows what that run uploaded)."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagDetails

    return bool(get_auth_manager().is_authorized_dag(method="GET", details=DagDetails(id=dag_id), user=user))

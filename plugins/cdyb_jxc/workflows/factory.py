"""Every institution's DAGs from the deployment file: what a DAG file of a few lines calls.

``build_dags()`` finds the deployment file (:func:`cdyb_jxc.deployment.find_config`), checks it, and
builds ``cdyb_jxc_init__<code>``, ``cdyb_jxc_daily__<code>``, ``cdyb_jxc_preflight__<code>``,
``cdyb_jxc_watch__<code>`` and, with an ``intraday_schedule``, ``cdyb_jxc_intraday__<code>`` for each
institution; without a file, the single institution of the ``CDYB_JXC_*`` variables keeps the ids
``cdyb_jxc_init`` and ``cdyb_jxc_daily`` (and has ``cdyb_jxc_preflight``).
A bad file fails the DAG file's import with one error that names each bad key, which Airflow shows as the
file's import error. Nothing here reaches the network or a database.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from airflow.sdk import DAG

from cdyb_jxc.deployment import PACKAGED_SQL, find_config, load_deployment
from cdyb_jxc.exceptions import DeploymentConfigError
from cdyb_jxc.workflows.builder import TIMEZONE, build_daily_dag, build_init_dag
from cdyb_jxc.workflows.intraday import build_intraday_dag
from cdyb_jxc.workflows.preflight import build_preflight_dag
from cdyb_jxc.workflows.settings import DagSettings
from cdyb_jxc.workflows.watch import build_watch_dag


def build_dags(config: str | Path | None = None, environ: Mapping[str, str] | None = None) -> dict[str, DAG]:
    """The DAGs of every institution, by DAG id (put them in the DAG file's globals).

    :param config: the deployment file (default: ``$CDYB_JXC_CONFIG``, else ``$AIRFLOW_HOME/cdyb_jxc.yaml``)
    :param environ: the environment (default: this process's)
    :raises DeploymentConfigError: the file is missing or not valid (every problem named by its key path)
    """
    env = os.environ if environ is None else environ
    path = Path(config) if config else find_config(env)
    if path is None:
        return _dags(DagSettings.from_env(PACKAGED_SQL, env), "")
    dags: dict[str, DAG] = {}
    for institution in load_deployment(path, env).institutions:
        settings = DagSettings.from_deployment(institution)
        try:
            dags.update(_dags(settings, institution.path))
        except DeploymentConfigError as err:
            raise DeploymentConfigError(f"{path}: {err}", problems=err.problems) from err
    return dags


def _dags(settings: DagSettings, where: str) -> dict[str, DAG]:
    crons = {
        "schedule": settings.schedule,
        "preflight_schedule": settings.preflight_schedule,
        "intraday_schedule": settings.intraday_schedule,
    }
    for key, cron in crons.items():
        if cron is not None:
            _check_schedule(cron, f"{where}.{key}" if where else key)
    built: list[DAG | None] = [build_init_dag(settings), build_daily_dag(settings)]
    built += [build_preflight_dag(settings), build_watch_dag(settings), build_intraday_dag(settings)]
    return {dag.dag_id: dag for dag in built if dag is not None}


def _check_schedule(cron: str, key: str) -> None:
    """Airflow's own check of the cron expression (a value out of range), named by its key path."""
    from airflow.sdk import CronDataIntervalTimetable
    from airflow.sdk.exceptions import AirflowTimetableInvalid

    try:
        CronDataIntervalTimetable(cron, timezone=TIMEZONE).validate()
    except AirflowTimetableInvalid as err:
        raise DeploymentConfigError(f"{key}: {err}", problems=[f"{key}: {err}"]) from err

"""Deployment settings of the packaged DAGs: an institution's settings (:mod:`cdyb_jxc.config`), the folder
of its SQL templates and the task arguments built from them. Nothing here touches the network or a database.
The variables and their defaults are listed in :mod:`cdyb_jxc.workflows.builder` (the DAGs' documentation).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import timedelta
from pathlib import Path

from cdyb_jxc.config import EnvironmentSettings, InstitutionSettings
from cdyb_jxc.deployment import DEFAULT_PREFLIGHT_SCHEDULE, DEFAULT_SCHEDULE, InstitutionConfig


@dataclass(frozen=True, kw_only=True)
class DagSettings(InstitutionSettings):
    """An institution's settings as its DAGs use them.

    :param sql_dir: the folder of the SQL templates (``init.sql``, ``inbound.sql``, …)
    :param retries: retries of each task (with exponential back-off from ``retry_delay``)
    :param schedule: cron of the daily DAG, Asia/Shanghai
    :param pool: the Airflow pool of the upload tasks (``None``: the default pool)
    :param preflight_schedule: cron of the preflight DAG, Asia/Shanghai
    :param intraday_schedule: cron of the intraday DAG, Asia/Shanghai (``None``: no intraday DAG)
    """

    sql_dir: str
    retries: int = 3
    schedule: str = DEFAULT_SCHEDULE
    pool: str | None = None
    preflight_schedule: str = DEFAULT_PREFLIGHT_SCHEDULE
    intraday_schedule: str | None = None

    @classmethod
    def from_env(cls, sql_dir: str | Path, environ: Mapping[str, str] | None = None) -> DagSettings:
        """The settings the ``CDYB_JXC_*`` environment variables give.

        :param sql_dir: the folder of the SQL templates
        :param environ: the environment (default: this process's)
        :raises ValueError: a number setting that is not one
        """
        env = EnvironmentSettings.from_environ(os.environ if environ is None else environ)
        intraday = " ".join((env.intraday_schedule or "").split()) or None
        return replace(cls.for_institution(env.institution(), sql_dir), intraday_schedule=intraday)

    @classmethod
    def for_institution(cls, institution: InstitutionSettings, sql_dir: str | Path) -> DagSettings:
        """The DAG settings of ``institution``, its SQL templates in ``sql_dir``."""
        given = {f.name: getattr(institution, f.name) for f in fields(InstitutionSettings)}
        return cls(sql_dir=str(sql_dir), **given)

    @classmethod
    def from_deployment(cls, institution: InstitutionConfig) -> DagSettings:
        """The DAG settings of one institution of a deployment file."""
        given = {f.name: getattr(institution.settings, f.name) for f in fields(InstitutionSettings)}
        return cls(
            sql_dir=institution.sql_dir,
            retries=institution.retries,
            schedule=institution.schedule,
            preflight_schedule=institution.preflight_schedule,
            intraday_schedule=institution.intraday_schedule,
            pool=institution.pool,
            **given,
        )

    @property
    def deadline_time(self) -> tuple[int, int]:
        """The T+1 deadline on D+1 as (hour, minute), Asia/Shanghai."""
        hour, minute = self.deadline.split(":")
        return int(hour), int(minute)

    def dag_id(self, base: str) -> str:
        """``base`` for the environment's single institution, ``<base>__<code>`` for a deployment file's."""
        return f"{base}__{self.institution_code}" if self.institution_code else base

    def tags(self, base: list[str]) -> list[str]:
        """``base`` and, for a deployment file's institution, its code and name."""
        extra = [self.institution_code, self.institution_name] if self.institution_code else []
        return [*base, *dict.fromkeys(t for t in extra if t)]

    @property
    def ledger_kwargs(self) -> dict[str, str | None]:
        return {
            "conn_id": self.conn_id,
            "ledger_url": self.ledger_url,
            "ledger_conn_id": self.ledger_conn_id,
            "institution_code": self.institution_code,
        }

    def default_args(self) -> dict:
        return {
            "owner": "cdyb-jxc",
            "retries": self.retries,
            "retry_delay": self.retry_delay,
            "retry_exponential_backoff": 2.0,
            "max_retry_delay": timedelta(minutes=30),
        }

    def upload_kwargs(self) -> dict:
        return {
            "execution_timeout": self.task_timeout,
            "cdyb_jxc_conn_id": self.conn_id,
            "source_conn_id": self.source_conn_id,
            "ledger_url": self.ledger_url,
            "ledger_conn_id": self.ledger_conn_id,
            "mapping_file": self.mapping_file,
            "institution_code": self.institution_code,
            **({"pool": self.pool} if self.pool else {}),
        }

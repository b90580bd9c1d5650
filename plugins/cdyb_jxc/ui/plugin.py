"""Airflow plugin: the 医保上传监控 page in the nav bar and an upload tab on every DAG run.

Registered once, through the ``airflow.plugins`` entry point of the distribution.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from cdyb_jxc.ui.app import app

URL_PREFIX = "/cdyb-jxc"


class CdybJxcPlugin(AirflowPlugin):
    name = "cdyb_jxc"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "医保上传监控"}]  # noqa: RUF012
    external_views = [  # noqa: RUF012
        {
            "name": "医保上传监控",
            "href": "cdyb-jxc/",
            "destination": "nav",
            "category": "browse",
            "url_route": "cdyb_jxc_monitor",
        },
        {
            "name": "医保上传",
            "href": "cdyb-jxc/run?dag_id={DAG_ID}&run_id={RUN_ID}",
            "destination": "dag_run",
            "url_route": "cdyb_jxc_run",
        },
    ]

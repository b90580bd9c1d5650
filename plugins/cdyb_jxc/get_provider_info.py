"""Provider metadata read by Airflow's providers manager (entry point ``apache_airflow_provider``)."""

from __future__ import annotations

from typing import Any

from cdyb_jxc import __version__


def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-cdyb-jxc",
        "name": "Chengdu medical-insurance 药品进销存 (cdyb-jxc)",
        "description": "Upload drug purchase, inbound, outbound and stock data to the Chengdu "
        "medical-insurance "
        "data-collection WebService (成都市基本医疗保险基础数据采集接口).",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Chengdu Medical Insurance JXC",
                "tags": ["service"],
            }
        ],
        "hooks": [
            {
                "integration-name": "Chengdu Medical Insurance JXC",
                "python-modules": ["cdyb_jxc.hooks.cdyb_jxc"],
            }
        ],
        "operators": [
            {
                "integration-name": "Chengdu Medical Insurance JXC",
                "python-modules": ["cdyb_jxc.operators.upload", "cdyb_jxc.operators.validate"],
            }
        ],
        "connection-types": [
            {
                "hook-class-name": "cdyb_jxc.hooks.cdyb_jxc.CdybJxcHook",
                "hook-name": "成都医保进销存 (cdyb-jxc)",
                "connection-type": "cdyb_jxc",
                "conn-fields": {
                    "institution_code": {
                        "label": "定点机构编码 (institution code)",
                        "schema": {"type": ["string", "null"]},
                        "description": "akb020, e.g. H51010400001",
                    },
                    "environment": {
                        "label": "Environment",
                        "schema": {"type": ["string", "null"], "default": "test", "enum": ["test", "prod"]},
                        "description": "test or prod; each has its own user and verification code",
                    },
                    "profile": {
                        "label": "Interface profile (TOML path)",
                        "schema": {"type": ["string", "null"]},
                        "description": "Leave empty for the packaged default profile",
                    },
                    "timeout": {
                        "label": "Timeout (seconds)",
                        "schema": {"type": ["number", "null"], "default": 60},
                    },
                    "batch_limit": {
                        "label": "Rows per request",
                        "schema": {"type": ["integer", "null"]},
                        "description": "At most the profile's limit (100)",
                    },
                    "verify": {
                        "label": "Verify TLS certificate",
                        "schema": {"type": ["boolean", "null"], "default": True},
                    },
                    "max_in_flight": {
                        "label": "Requests in flight",
                        "schema": {"type": ["integer", "null"], "default": 2, "minimum": 1, "maximum": 8},
                        "description": "Batches of one transaction sent at once, 1 to 8 (default 2)",
                    },
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "extra"],
                    "relabeling": {
                        "host": "Endpoint URL",
                        "login": "交易访问用户 (user)",
                        "password": "交易访问验证码 (verification code)",
                    },
                    "placeholders": {
                        "host": "https://centre.example/services/SjcjService",
                        "login": "jyfwyh",
                        "password": "jyfwyzm",
                    },
                },
            }
        ],
    }

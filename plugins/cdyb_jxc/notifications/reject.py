"""Notifier for reject reports: log (default), webhook or e-mail."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseNotifier

log = logging.getLogger(__name__)
CHANNELS = ("log", "webhook", "email")


class RejectNotifier(BaseNotifier):
    """Tell people that a business day has rejected rows and where the report is.

    :param message: the text (templated)
    :param channel: ``log``, ``webhook`` (POST JSON to ``target``) or ``email`` (to ``target``, via the
        SMTP provider's notifier and its ``smtp_default`` connection)
    :param target: webhook URL or e-mail address(es)
    """

    template_fields: Sequence[str] = ("message", "target")

    def __init__(self, *, message: str, channel: str = "log", target: str | None = None) -> None:
        super().__init__()
        if channel not in CHANNELS:
            raise ValueError(f"notification channel must be one of {', '.join(CHANNELS)}, not {channel!r}")
        if channel != "log" and not target:
            raise ValueError(f"notification channel {channel!r} needs a target")
        self.message = message
        self.channel = channel
        self.target = target

    @classmethod
    def from_spec(cls, spec: str, message: str) -> RejectNotifier:
        """Build from ``log``, ``webhook:URL`` or ``email:ADDRESS``."""
        channel, _, target = spec.partition(":")
        return cls(message=message, channel=channel.strip() or "log", target=target.strip() or None)

    def notify(self, context: Any) -> None:
        if self.channel == "log":
            log.warning("%s", self.message)
        elif self.channel == "webhook":
            import requests

            resp = requests.post(self.target or "", json={"text": self.message}, timeout=10)
            resp.raise_for_status()
            log.info("reject notification posted to webhook (HTTP %s)", resp.status_code)
        else:
            from airflow.providers.smtp.notifications.smtp import SmtpNotifier

            subject = "医保进销存上传有被拒记录"
            SmtpNotifier(to=self.target or "", subject=subject, html_content=self.message).notify(context)

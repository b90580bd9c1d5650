"""Airflow notifiers."""

from cdyb_jxc.notifications.reject import RejectNotifier

__all__ = ["RejectNotifier"]

"""Airflow hooks of cdyb-jxc."""

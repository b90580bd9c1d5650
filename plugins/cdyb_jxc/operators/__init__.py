"""Airflow operators of cdyb-jxc."""

"""Airflow DAGs: settings, builders and the task callables they run."""

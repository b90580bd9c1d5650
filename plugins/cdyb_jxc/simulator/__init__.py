"""A faithful local simulator of the Chengdu insurance centre's data-collection WebService (no Airflow)."""

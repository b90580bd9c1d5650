"""The upload monitor in the Airflow UI (FastAPI app + external views)."""

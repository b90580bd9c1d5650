"""Fixtures live in tests/conftest.py (shared with tests/dags)."""

from tests.conftest import write_csv

__all__ = ["write_csv"]

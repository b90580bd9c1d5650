"""Test DAG files built from data: tests name their tasks, this module writes the DAG file.

A test says what it runs (``upload_task("outbound", task_id=..., source_file=...)``) instead of pasting DAG
source into an f-string, so a path, a Jinja template (``"{{ params.day }}"``) or a quote needs no escaping
and every DAG file has the same head. :func:`write_dag_file` writes one into a dags folder; the ``run_dag``
fixture of ``tests/conftest.py`` writes, loads and runs it with ``dag.test()``.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

UPLOAD_OPERATORS = {
    "init": "CdybJxcInitOperator",
    "inbound": "CdybJxcInboundOperator",
    "outbound": "CdybJxcOutboundOperator",
    "stock": "CdybJxcStockOperator",
}
HEAD = """\
from datetime import datetime, timedelta

from airflow.sdk import DAG

from cdyb_jxc.operators.upload import {operators}
"""


@dataclass(frozen=True)
class TaskSpec:
    """One task of a test DAG: an operator class of ``cdyb_jxc.operators.upload`` and its arguments."""

    operator: str
    kwargs: Mapping[str, Any]


def upload_task(txn: str, /, **kwargs: Any) -> TaskSpec:
    """The upload operator of ``txn`` (``init``, ``inbound``, ``outbound`` or ``stock``) with ``kwargs``."""
    return TaskSpec(UPLOAD_OPERATORS[txn], kwargs)


def _literal(value: Any) -> str:
    """``value`` as Python source; a value that would not read back the same is refused."""
    if isinstance(value, Path):
        return repr(str(value))
    if isinstance(value, timedelta):
        return f"timedelta(seconds={value.total_seconds()!r})"
    text = repr(value)
    try:
        same = ast.literal_eval(text) == value
    except (ValueError, SyntaxError):
        same = False
    if not same:
        raise TypeError(f"a test DAG argument must be a literal, a Path or a timedelta, not {value!r}")
    return text


def _call(name: str, args: list[str], kwargs: Mapping[str, Any]) -> str:
    return f"{name}({', '.join([*args, *(f'{key}={_literal(value)}' for key, value in kwargs.items())])})"


def dag_source(dag_id: str, *tasks: TaskSpec, chain: bool = False, **dag_kwargs: Any) -> str:
    """The source of a DAG file defining ``dag`` with ``tasks`` (in this order, ``>>`` between them if
    ``chain``); ``dag_kwargs`` go to ``DAG(...)`` after ``schedule=None`` and a fixed ``start_date``."""
    operators = ", ".join(sorted({task.operator for task in tasks}))
    dag_args = [repr(dag_id), "schedule=None", "start_date=datetime(2026, 1, 1)"]
    lines = [HEAD.format(operators=operators), f"with {_call('DAG', dag_args, dag_kwargs)} as dag:"]
    lines += [f"    t{n} = {_call(task.operator, [], task.kwargs)}" for n, task in enumerate(tasks)]
    if chain:
        lines.append("    " + " >> ".join(f"t{n}" for n in range(len(tasks))))
    return "\n".join(lines) + "\n"


def write_dag_file(
    folder: Path, dag_id: str, *tasks: TaskSpec, chain: bool = False, **dag_kwargs: Any
) -> Path:
    """Write :func:`dag_source` to ``folder/<dag_id>.py`` and return the path."""
    path = folder / f"{dag_id}.py"
    path.write_text(dag_source(dag_id, *tasks, chain=chain, **dag_kwargs), encoding="utf-8")
    return path

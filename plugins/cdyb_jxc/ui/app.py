"""The upload monitor: a FastAPI app mounted in Airflow's api-server (see :mod:`cdyb_jxc.ui.plugin`).

It reads the ledger only, with short timeouts, and says so on the page when the ledger cannot be reached.
Every route needs an Airflow login: the UI's session cookie or a ``Bearer`` token; anonymous requests get 401.
"""

from __future__ import annotations

import io
import logging
import os
from datetime import date
from functools import lru_cache
from importlib import resources
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy import URL, Engine, create_engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from cdyb_jxc.ui import queries

log = logging.getLogger(__name__)
COOKIE = "_token"


async def require_user(request: Request) -> Any:
    """The logged-in Airflow user, from the ``Authorization: Bearer`` header or the UI's ``_token`` cookie."""
    from airflow.api_fastapi.app import get_auth_manager

    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else request.cookies.get(COOKIE)
    if not token:
        raise HTTPException(status_code=401, detail="请先登录 Airflow (not authenticated)")
    try:
        return await get_auth_manager().get_user_from_token(token)
    except Exception as err:  # expired, forged or unreadable token
        raise HTTPException(status_code=401, detail="登录已失效 (invalid or expired token)") from err


User = Annotated[Any, Depends(require_user)]


def ledger_url() -> URL:
    """The ledger the uploads write: ``$CDYB_JXC_LEDGER_CONN_ID``, ``$CDYB_JXC_LEDGER_URL`` or the default.

    A URL object, not text: ``str()`` of a SQLAlchemy URL masks the password, which would lock the monitor
    out of a password-protected ledger.
    """
    conn_id = os.environ.get("CDYB_JXC_LEDGER_CONN_ID")
    if conn_id:
        from airflow.sdk import BaseHook

        hook = BaseHook.get_connection(conn_id).get_hook()
        return make_url(getattr(hook, "sqlalchemy_url", None) or hook.get_uri())
    from cdyb_jxc.ledger import default_ledger_url

    return make_url(default_ledger_url())


@lru_cache(maxsize=4)
def _engine(url: URL) -> Engine:
    args: dict[str, Any] = {}
    if url.get_backend_name() == "sqlite":
        args = {"timeout": 2}
    elif url.get_backend_name() == "postgresql":
        args = {
            "connect_timeout": 3,
            "options": "-c statement_timeout=10000 -c default_transaction_read_only=on",
        }
    return create_engine(url, pool_pre_ping=True, connect_args=args)


def engine() -> Engine:
    return _engine(ledger_url())


class LedgerUnavailable(Exception):
    pass


def _ask(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        eng = engine()
        if not queries.ledger_ready(eng):
            raise LedgerUnavailable("账本中还没有数据 (the ledger has no tables yet: nothing was uploaded)")
        return fn(eng, *args, **kwargs)
    except SQLAlchemyError as err:
        log.warning("upload monitor cannot read the ledger: %s", err)
        raise LedgerUnavailable(f"账本不可达 (ledger unreachable): {type(err).__name__}") from err


app = FastAPI(
    title="cdyb-jxc 医保上传监控", description="Upload monitor of the Chengdu insurance 进销存 uploads"
)


@app.exception_handler(LedgerUnavailable)
async def _unavailable(request: Request, exc: LedgerUnavailable) -> JSONResponse:
    return JSONResponse(status_code=503, content={"detail": str(exc)})


def _page(name: str) -> str:
    return resources.files("cdyb_jxc.ui").joinpath(name).read_text(encoding="utf-8")


@app.get("/", response_class=HTMLResponse, include_in_schema=False)
def page(user: User) -> str:
    """医保上传监控: the page people open every morning."""
    return _page("monitor.html")


@app.get("/run", response_class=HTMLResponse, include_in_schema=False)
def run_page(user: User) -> str:
    """The tab on a DAG run: that run's upload."""
    return _page("run.html")


@app.get("/api/summary")
def api_summary(user: User) -> dict:
    """Counts per state, T+1 compliance rate, queue sizes."""
    return _ask(queries.summary)


@app.get("/api/calendar")
def api_calendar(
    user: User, days: Annotated[int, Query(ge=1, le=366)] = 31, today: date | None = None
) -> dict:
    """Business days × transaction coloured by status (complete, partial, failed, late, missing)."""
    return _ask(queries.calendar, days, today)


@app.get("/api/trend")
def api_trend(user: User, days: Annotated[int, Query(ge=1, le=366)] = 31, today: date | None = None) -> dict:
    """Rows per day and reject rate per transaction."""
    return _ask(queries.trend, days, today)


@app.get("/api/rejects")
def api_rejects(
    user: User,
    day: str | None = None,
    transaction: str | None = None,
    category: str | None = None,
    item: str | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 200,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict:
    """Rejected and conflicting rows with their reasons; filter by day, transaction, category, item."""
    filters = {"day": day, "transaction": transaction, "category": category, "item": item}
    return _ask(queries.rejects, limit=limit, offset=offset, **filters)


@app.get("/api/rejects/export")
def api_rejects_export(
    user: User,
    fmt: Annotated[str, Query(pattern="^(csv|xlsx)$")] = "csv",
    day: str | None = None,
    transaction: str | None = None,
    category: str | None = None,
    item: str | None = None,
) -> Response:
    """The filtered reject list as CSV (UTF-8 with BOM, opens in Excel) or an Excel workbook."""
    import pandas as pd

    from cdyb_jxc.reports import COLUMNS

    filters = {"day": day, "transaction": transaction, "category": category, "item": item}
    records = _ask(queries.all_rejects, **filters)
    frame = pd.DataFrame.from_records(records, columns=list(COLUMNS)).rename(columns=COLUMNS)
    stem = f"cdyb_jxc_rejects_{day or 'all'}"
    if fmt == "csv":
        body = frame.to_csv(index=False).encode("utf-8-sig")
        media = "text/csv; charset=utf-8"
    else:
        buf = io.BytesIO()
        frame.to_excel(buf, index=False, sheet_name="rejects", engine="openpyxl")
        body = buf.getvalue()
        media = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    headers = {"Content-Disposition": f'attachment; filename="{stem}.{fmt}"'}
    return Response(content=body, media_type=media, headers=headers)


@app.get("/api/queues")
def api_queues(user: User) -> dict:
    """IN_DOUBT (and not yet finished) rows and DUPLICATE_CONFLICT rows."""
    return _ask(queries.queues)


@app.get("/api/run")
def api_run(user: User, dag_id: str, run_id: str) -> dict:
    """One DAG run's upload: states per transaction, requests, rejects."""
    return _ask(queries.run_view, dag_id, run_id)

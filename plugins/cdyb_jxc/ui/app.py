"""The upload monitor: a FastAPI app mounted in Airflow's api-server (see :mod:`cdyb_jxc.ui.plugin`).

It reads the ledger only, with short timeouts, and says so on the page when the ledger cannot be reached.
Every route needs an Airflow login: the UI's session cookie or a ``Bearer`` token; anonymous requests get 401.
A user sees the institutions whose daily DAG Airflow lets them read (:mod:`cdyb_jxc.ui.access`): every
route answers for those, or for the one ``institution`` names (403 when it is not one of them).
Every query parameter is checked before it reaches SQL or a response header: a bad one is a 422. The app
publishes no ``/docs``, ``/redoc`` or ``/openapi.json`` (they would be served without the login).
"""

from __future__ import annotations

import io
import logging
import re
from datetime import date
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import AfterValidator, BeforeValidator
from sqlalchemy import URL, Engine, create_engine
from sqlalchemy.exc import SQLAlchemyError

from cdyb_jxc.config import EnvironmentSettings, connection_profile, resolve_ledger_url, resolve_profile
from cdyb_jxc.exceptions import DeploymentConfigError, ProfileError
from cdyb_jxc.ui import access, drilldown, queries, rejects

if TYPE_CHECKING:
    from cdyb_jxc.wire.profile import Profile

log = logging.getLogger(__name__)
COOKIE = "_token"
TEXT_MAX = 200  # category and item filters: longer than any category, item code or name the profile allows
ID_MAX = 250  # Airflow's limit for dag_id and run_id
OFFSET_MAX = 10**9  # far beyond any ledger; bigger numbers overflow the database's integer
_NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"  # NUL and other control characters never reach the database
_DATE = r"^([0-9]{4}-[0-9]{2}-[0-9]{2})?$"  # or empty: no filter
EARLIEST, LATEST = date(2000, 1, 1), date(2999, 12, 31)  # ``today`` outside this is a typo, not a day


def _real_day(value: str | None) -> str | None:
    if value:
        date.fromisoformat(value)  # ValueError (a 422) for 2026-02-30
    return value


def _today(value: Any) -> date | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        raise ValueError("today must be a date written YYYY-MM-DD")
    day = date.fromisoformat(value)
    if not EARLIEST <= day <= LATEST:
        raise ValueError(f"today must be between {EARLIEST} and {LATEST}")
    return day


Day = Annotated[str | None, Query(max_length=10, pattern=_DATE), AfterValidator(_real_day)]
Today = Annotated[date | None, Query(), BeforeValidator(_today)]
Days = Annotated[int, Query(ge=1, le=366)]  # business days back from today
Text = Annotated[str | None, Query(max_length=TEXT_MAX, pattern=_NO_CONTROL)]
Transaction = Annotated[str | None, Query(max_length=16, pattern=_NO_CONTROL)]
RunKey = Annotated[str, Query(min_length=1, max_length=ID_MAX, pattern=_NO_CONTROL)]


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
InstitutionCode = Annotated[str | None, Query(max_length=30, pattern=r"^[0-9A-Za-z_-]*$")]


def ledger_url() -> URL:
    """The ledger the uploads write: ``$CDYB_JXC_LEDGER_CONN_ID``, ``$CDYB_JXC_LEDGER_URL`` or the default.

    A URL object, not text: ``str()`` of a SQLAlchemy URL masks the password, which would lock the monitor
    out of a password-protected ledger.
    """
    from cdyb_jxc.hooks.cdyb_jxc import connection_url

    env = EnvironmentSettings.from_environ()
    return resolve_ledger_url(env.ledger_url, env.ledger_conn_id, get_connection=connection_url)


def profile() -> Profile:
    """The profile the uploads use, for codes, names and the centre's day: the ``profile`` extra of the
    centre connection (``$CDYB_JXC_CONN_ID``, default ``cdyb_jxc_default``), else ``$CDYB_JXC_PROFILE``, else
    the packaged one. Read on every request, like the ledger: an edited connection shows at once.
    """
    from cdyb_jxc.hooks.cdyb_jxc import connection_extra

    centre = connection_extra(EnvironmentSettings.from_environ().conn_id)
    return resolve_profile(connection=connection_profile(centre))


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
    title="cdyb-jxc 医保上传监控",
    description="Upload monitor of the Chengdu insurance 进销存 uploads",
    # FastAPI serves these without our login dependency: they stay off
    docs_url=None,
    redoc_url=None,
    openapi_url=None,
)


@app.exception_handler(LedgerUnavailable)
async def _unavailable(request: Request, exc: LedgerUnavailable) -> JSONResponse:
    return JSONResponse(status_code=503, content={"detail": str(exc)})


@app.exception_handler(DeploymentConfigError)
async def _bad_deployment(request: Request, exc: DeploymentConfigError) -> JSONResponse:
    return JSONResponse(status_code=503, content={"detail": f"部署文件错误 (deployment file): {exc}"})


@app.exception_handler(ProfileError)
async def _bad_profile(request: Request, exc: ProfileError) -> JSONResponse:
    return JSONResponse(status_code=503, content={"detail": f"接口配置文件错误 (profile): {exc}"})


def _institutions(user: Any) -> tuple[list[access.Institution], bool]:
    """The institutions ``user`` may see, and whether that is every institution."""
    return access.visible(user, access.directory(_ask(queries.institution_codes)))


def scope(user: User, institution: InstitutionCode = None) -> queries.Scope:
    """The institutions a request is about: the one named, else every one the user may see (``None``
    when that is all of them: no filter)."""
    seen, everything = _institutions(user)
    codes = [i.code for i in seen]
    if institution:
        if institution not in codes:
            raise HTTPException(status_code=403, detail=f"无权查看机构 {institution} (cannot read its DAGs)")
        return (institution,)
    if everything:
        return None
    if not codes:
        raise HTTPException(status_code=403, detail="无权查看任何机构 (cannot read any institution's DAGs)")
    return tuple(codes)


Scoped = Annotated[queries.Scope, Depends(scope)]


def _filters(day: str | None, transaction: str | None, category: str | None, item: str | None) -> dict:
    """The reject-list filters, with ``transaction`` checked against the profile's wire codes."""
    names = queries.transaction_names(profile()) if transaction else {}
    if transaction and transaction not in names:
        known = ", ".join(sorted(names))
        raise HTTPException(status_code=422, detail=f"transaction must be one of {known}")
    return {"day": day or None, "transaction": transaction, "category": category, "item": item}


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


STATIC = {  # the page's assets: name → (file under ui/, media type, cache); nothing else is served
    # the page's own script changes with the package: asked again on every load (it is small)
    "monitor.js": ("static/monitor.js", "text/javascript; charset=utf-8", "no-cache"),
    "echarts.min.js": (
        "static/echarts/echarts.common.min.js",
        "text/javascript; charset=utf-8",
        "private, max-age=3600",
    ),
    "echarts-LICENSE": ("static/echarts/LICENSE", "text/plain; charset=utf-8", "private, max-age=3600"),
    "echarts-NOTICE": ("static/echarts/NOTICE", "text/plain; charset=utf-8", "private, max-age=3600"),
}


@app.get("/static/{name}", include_in_schema=False)
def static(user: User, name: Literal[tuple(STATIC)]) -> Response:  # type: ignore[valid-type]
    """The page's script and the vendored Apache ECharts with its licence."""
    path, media, cache = STATIC[name]
    body = resources.files("cdyb_jxc.ui").joinpath(path).read_bytes()
    return Response(content=body, media_type=media, headers={"Cache-Control": cache})


@app.get("/api/institutions")
def api_institutions(user: User) -> dict:
    """The institutions the user may see, with the daily DAG that uploads each (for 补传)."""
    seen, _ = _institutions(user)
    return {"institutions": [i.as_dict() for i in seen]}


@app.get("/api/summary")
def api_summary(user: User, institutions: Scoped) -> dict:
    """Counts per state, T+1 compliance rate, queue sizes."""
    return _ask(queries.summary, profile=profile(), institutions=institutions)


@app.get("/api/calendar")
def api_calendar(
    user: User,
    institutions: Scoped,
    days: Days = 31,
    today: Today = None,
) -> dict:
    """Business days × transaction coloured by status (complete, partial, failed, late, missing)."""
    return _ask(queries.calendar, days, today, profile=profile(), institutions=institutions)


@app.get("/api/balance")
def api_balance(user: User, institutions: Scoped, day: Annotated[date, Query()]) -> dict:
    """The day's 进销存平衡 audit: its status and the items that did not balance."""
    return _ask(queries.balance, day, institutions=institutions)


@app.get("/api/day")
def api_day(
    user: User,
    institutions: Scoped,
    day: Annotated[date, Query()],
    transaction: Annotated[str, Query(max_length=16)],
) -> dict:
    """One calendar cell opened: counts per state and category, rejects, rows in doubt, source issues, the
    day's balance items and the DAG runs that wrote its rows."""
    code = _filters(None, transaction, None, None)["transaction"]
    return _ask(drilldown.day_detail, day, code, institutions=institutions)


@app.get("/api/trend")
def api_trend(
    user: User,
    institutions: Scoped,
    days: Days = 31,
    today: Today = None,
) -> dict:
    """Rows per day, reject rate and T+1 lateness per transaction."""
    return _ask(queries.trend, days, today, profile=profile(), institutions=institutions)


@app.get("/api/rejects")
def api_rejects(
    user: User,
    institutions: Scoped,
    day: Day = None,
    transaction: Transaction = None,
    category: Text = None,
    item: Text = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 200,
    offset: Annotated[int, Query(ge=0, le=OFFSET_MAX)] = 0,
) -> dict:
    """Rejected and conflicting rows with their reasons; filter by day, transaction, category, item."""
    filters = _filters(day, transaction, category, item)
    return _ask(rejects.rejects, limit=limit, offset=offset, institutions=institutions, **filters)


@app.get("/api/rejects/export")
def api_rejects_export(
    user: User,
    institutions: Scoped,
    fmt: Annotated[Literal["csv", "xlsx"], Query()] = "csv",
    day: Day = None,
    transaction: Transaction = None,
    category: Text = None,
    item: Text = None,
) -> Response:
    """The filtered reject list as CSV (UTF-8 with BOM, opens in Excel) or an Excel workbook."""
    from cdyb_jxc.safety.spreadsheet import write_csv, write_xlsx
    from cdyb_jxc.upload.reports import COLUMNS, SHEET_NAME, report_rows

    filters = _filters(day, transaction, category, item)
    rows = report_rows(_ask(rejects.all_rejects, institutions=institutions, **filters))
    buf = io.BytesIO()
    if fmt == "csv":
        write_csv(buf, list(COLUMNS.values()), rows)
        media = "text/csv; charset=utf-8"
    else:
        write_xlsx(buf, list(COLUMNS.values()), rows, SHEET_NAME)
        media = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    # the file name is built from checked values only (a real date, a known format), never from raw input
    stem = f"cdyb_jxc_rejects_{date.fromisoformat(day).isoformat() if day else 'all'}"
    headers = {"Content-Disposition": f'attachment; filename="{stem}.{fmt}"'}
    return Response(content=buf.getvalue(), media_type=media, headers=headers)


@app.get("/api/queues")
def api_queues(user: User, institutions: Scoped) -> dict:
    """IN_DOUBT (and not yet finished) rows and DUPLICATE_CONFLICT rows."""
    return _ask(queries.queues, institutions=institutions)


@app.get("/api/run")
def api_run(user: User, dag_id: RunKey, run_id: RunKey) -> dict:
    """One DAG run's upload: states per transaction, requests, rejects (403 unless the user may read the
    DAG)."""
    if not access.may_read_dag(user, dag_id):
        raise HTTPException(status_code=403, detail=f"无权查看 DAG {dag_id} (cannot read it)")
    return _ask(queries.run_view, dag_id, run_id)

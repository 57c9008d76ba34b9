"""The FastAPI app the plugin mounts at ``/aoai-evals``: server-rendered HTML pages and their stylesheet.

Every route depends on Airflow's own API security dependencies, so the api-server's auth manager decides
who sees what, from the bearer token or the session cookie the Airflow UI sets (the pages are opened in
an iframe of the same origin, which sends that cookie): reading a connection's evals needs read access to
that connection (``requires_access_connection``, from the ``connection_id`` path parameter), the task tab
needs read access to the DAG's task instances and XComs (``requires_access_dag``, from ``dag_id``), and the
stylesheet needs a logged-in user. Anonymous requests get Airflow's 401/403 and nothing else.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
from airflow.api_fastapi.core_api.security import (
    GetUserDep,
    get_user,
    requires_access_connection,
    requires_access_dag,
)
from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, StrictUndefined
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

from airflow_provider_aoai_evals.hooks.connection_form import DEFAULT_CONN_ID
from airflow_provider_aoai_evals.ui import airflow_data, chart, evals_data, settings
from airflow_provider_aoai_evals.ui.page_errors import PAGE_ERRORS, failure
from airflow_provider_aoai_evals.ui.task_view import task_view

STATIC = Path(__file__).resolve().parent / "static"
#: No script at all, styles only from this app: a string that slipped past escaping still could not run.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'self'; base-uri 'none'"
)

TEMPLATES = Environment(
    loader=PackageLoader("airflow_provider_aoai_evals.ui", "templates"),
    autoescape=True,  # every template, including the inline SVG
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _utc(ts: int | None) -> str:
    if ts is None:
        return ""
    return dt.datetime.fromtimestamp(ts, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _attr(value: float | None) -> str:
    """A rate as a data attribute: the float's repr, or empty when there is none."""
    return "" if value is None else repr(float(value))


TEMPLATES.filters.update(utc=_utc, pct=_pct, attr=_attr)


class _SecurityHeaders(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers.setdefault("Cache-Control", "no-store")
        return response


def _prefix(request: Request) -> str:
    """Where this app is mounted (``/aoai-evals`` behind whatever root the api-server has)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def _airflow_root(request: Request) -> str:
    prefix = _prefix(request)
    return prefix[: -len(settings.URL_PREFIX)] if prefix.endswith(settings.URL_PREFIX) else ""


def _render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    prefix = _prefix(request)
    html = TEMPLATES.get_template(template).render(
        prefix=prefix,
        airflow_root=_airflow_root(request),
        css=f"{prefix}/static/evals.css",
        q=lambda part: quote(str(part), safe=""),
        **context,
    )
    return HTMLResponse(html, status_code=status_code)


def create_app() -> FastAPI:
    app = FastAPI(
        title="OpenAI / Azure OpenAI Evals",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # nothing to document: HTML pages only
        # No redirect for a missing or extra "/": it would answer an anonymous request before the auth check.
        redirect_slashes=False,
    )
    app.add_middleware(_SecurityHeaders)

    @app.get("/", name="index", dependencies=[Depends(requires_access_connection(method="GET"))])
    def index(
        request: Request,
        user: GetUserDep,
        connection_id: Annotated[str | None, Query(max_length=250)] = None,
        eval_id: Annotated[str | None, Query(max_length=250)] = None,
    ) -> Response:
        """The Evals page: pick a connection (only those the user may read are listed)."""
        if connection_id:
            target = f"{_prefix(request)}/connections/{quote(connection_id, safe='')}"
            if eval_id:
                target += f"/evals/{quote(eval_id, safe='')}"
            return RedirectResponse(target, status_code=303)
        return _render(request, "index.html", connections=airflow_data.readable_connection_ids(user))

    @app.get(
        "/connections/{connection_id}",
        name="evals",
        dependencies=[Depends(requires_access_connection(method="GET"))],
    )
    def evals(request: Request, connection_id: str, user: GetUserDep) -> Response:
        """The connection's evals, to pick one."""
        connections = airflow_data.readable_connection_ids(user)
        try:
            listed = evals_data.list_evals(connection_id)
        except PAGE_ERRORS as exc:
            status, error = failure(exc)
            return _render(
                request, "evals.html", status, connection_id=connection_id, connections=connections,
                evals=(), error=error,
            )  # fmt: skip
        return _render(
            request, "evals.html", connection_id=connection_id, connections=connections, evals=listed,
            error=None,
        )  # fmt: skip

    @app.get(
        "/connections/{connection_id}/evals/{eval_id}",
        name="eval_runs",
        dependencies=[Depends(requires_access_connection(method="GET"))],
    )
    def eval_runs(request: Request, connection_id: str, eval_id: str, user: GetUserDep) -> Response:
        """The eval's pass rate over time (chart) and its runs (table)."""
        try:
            data = evals_data.eval_runs(connection_id, eval_id)
        except PAGE_ERRORS as exc:
            status, error = failure(exc)
            return _render(
                request, "eval.html", status, connection_id=connection_id, eval_id=eval_id, data=None,
                error=error,
            )  # fmt: skip
        marks = airflow_data.gate_marks(user, {r.summary.run_id for r in data.runs})
        drawn = chart.build(
            data.runs, {run_id: m.outcome for run_id, m in marks.items() if m.outcome != "passed"}
        )
        creators = {r.summary.run_id: airflow_data.creator_of(r.summary.metadata) for r in data.runs}
        return _render(
            request, "eval.html", connection_id=connection_id, eval_id=eval_id, data=data, chart=drawn,
            marks=marks, creators=creators, max_runs=settings.MAX_RUNS, error=None,
        )  # fmt: skip

    @app.get(
        "/ti/{dag_id}/{task_id}/{map_index}/{run_id:path}",
        name="task_instance",
        dependencies=[
            Depends(requires_access_dag(method="GET", access_entity=DagAccessEntity.TASK_INSTANCE)),
            Depends(requires_access_dag(method="GET", access_entity=DagAccessEntity.XCOM)),
        ],
    )
    def task_instance(
        request: Request,
        dag_id: str,
        task_id: str,
        map_index: str,
        run_id: str,
        user: GetUserDep,
        conn_id: Annotated[str, Query(max_length=250)] = DEFAULT_CONN_ID,
    ) -> Response:
        """The "Eval run" tab. ``map_index`` is the UI's ``{MAP_INDEX}``, left as the literal placeholder
        by the UI for a task that is not mapped, hence a string here."""
        index = int(map_index) if map_index.lstrip("-").isdigit() else -1
        ti = airflow_data.TaskInstanceRef(dag_id, task_id, run_id, index)
        view = task_view(ti, conn_id, user)
        return _render(
            request, "task.html", view=view, connections=airflow_data.readable_connection_ids(user)
        )

    @app.get("/static/evals.css", name="css", dependencies=[Depends(get_user)])
    def css() -> FileResponse:
        """The pages' only stylesheet, shipped in the wheel; served to logged-in users like every route."""
        return FileResponse(
            STATIC / "evals.css", media_type="text/css", headers={"Cache-Control": "private, max-age=300"}
        )

    return app

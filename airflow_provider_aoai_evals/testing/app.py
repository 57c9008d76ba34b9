"""The aiohttp application of the fake: one middleware in front of the API and control routes.

One middleware does auth, fault injection, request ids and logging for API paths so a request costs a
single extra coroutine frame; the handlers it calls live in api_routes and control_routes.
"""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from airflow_provider_aoai_evals.testing.api_routes import add_api_routes
from airflow_provider_aoai_evals.testing.auth import check_auth, check_azure
from airflow_provider_aoai_evals.testing.context import CONTEXT_KEY, RequestRecord, ServerContext
from airflow_provider_aoai_evals.testing.control_routes import (
    CONTROL_PREFIX,
    add_control_routes,
    control_guard,
)
from airflow_provider_aoai_evals.testing.errors import ApiError
from airflow_provider_aoai_evals.testing.fault_injection import apply_fault_after, apply_fault_before
from airflow_provider_aoai_evals.testing.request_scope import (
    BODY,
    RAW_BODY,
    STATUS_OVERRIDE,
    Handler,
    json_response,
    request_id,
)

SECRET_HEADERS = frozenset({"authorization", "api-key"})


def _mask_headers(request: web.Request) -> dict[str, str]:
    return {k: ("***" if k.lower() in SECRET_HEADERS else v) for k, v in request.headers.items()}


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    ctx = request.app[CONTEXT_KEY]
    path = request.path
    root = ctx.api_root
    if not (path == root or path.startswith(root + "/")):
        if path.startswith(CONTROL_PREFIX):
            return await control_guard(ctx, request, handler)
        return json_response(
            ctx.error_body(404, f"Invalid URL ({request.method} {path})", code="not_found"),
            404,
            {ctx.request_id_header: request_id()},
        )
    req_id = request_id()
    api_path = path[len(root) :] or "/"
    body: Any = None
    if request.can_read_body:
        raw = await request.read()
        if request.content_type == "multipart/form-data":
            body = {"multipart_bytes": len(raw)}  # uploads are logged by size, not content
            RAW_BODY.set(raw)
        else:
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
    record = RequestRecord(
        method=request.method,
        path=path,
        api_path=api_path,
        query=dict(request.query),
        headers=_mask_headers(request),
        json=body,
        status=None,
        time=time.time(),
        request_id=req_id,
    )
    BODY.set(body)
    STATUS_OVERRIDE.set(None)
    ctx.record(record)
    headers = {ctx.request_id_header: req_id}

    fault = ctx.faults.take(request.method, api_path)
    if fault is not None:
        record.fault = fault.kind
        early = await apply_fault_before(ctx, request, fault, headers, record)
        if early is not None:
            return early

    error = check_auth(ctx, request)
    if error is None and ctx.flavor == "azure":
        error = check_azure(request)
    if error is not None:
        response: web.StreamResponse = json_response(
            ctx.error_body(error.status, error.message, error.param, error.code), error.status, headers
        )
    else:
        try:
            response = await handler(request)
        except ApiError as exc:
            response = json_response(ctx.error_body(exc.status, exc.message, exc.param, exc.code), exc.status)
        except web.HTTPException as exc:
            message = exc.reason if exc.status != 404 else f"Invalid URL ({request.method} {path})"
            response = json_response(ctx.error_body(exc.status, message), exc.status)
        response.headers[ctx.request_id_header] = req_id

    if fault is not None:
        response = apply_fault_after(request, fault, response, headers, record)
        if record.dropped:
            return response  # aiohttp cannot write to an aborted transport; nothing reaches the client
    record.status = response.status
    return response


def build_app(ctx: ServerContext) -> web.Application:
    # A large client_max_size: inline file_content data sources can be many MB, as the real API allows.
    app = web.Application(middlewares=[api_middleware], client_max_size=512 * 1024 * 1024)
    app[CONTEXT_KEY] = ctx
    add_api_routes(app.router, ctx.api_root)
    add_control_routes(app.router)
    return app

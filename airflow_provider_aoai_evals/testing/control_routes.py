"""The control routes under ``/_fake``: what FakeEvalsServer offers a test in-process, over HTTP.

They let a test whose fake runs in another process (``python -m airflow_provider_aoai_evals.testing``, as
the e2e harness and the benchmarks start it) script runs, inject faults and read the request log. They
are never logged, never faulted and need no key, so scripting the fake cannot disturb what a test
asserts about the API traffic.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from airflow_provider_aoai_evals.testing.context import ServerContext, reset_context
from airflow_provider_aoai_evals.testing.errors import ApiError
from airflow_provider_aoai_evals.testing.faults import Fault
from airflow_provider_aoai_evals.testing.request_scope import (
    Handler,
    json_response,
    request_id,
    server_context,
)
from airflow_provider_aoai_evals.testing.run_script import RunScript
from airflow_provider_aoai_evals.testing.seeds import eval_body, run_body

CONTROL_PREFIX = "/_fake"


async def control_guard(ctx: ServerContext, request: web.Request, handler: Handler) -> web.StreamResponse:
    """Control routes report bad input as a plain 400 JSON body and never go through faults or auth."""
    try:
        response = await handler(request)
    except (ApiError, ValueError, TypeError) as exc:
        status = exc.status if isinstance(exc, ApiError) else 400
        message = exc.message if isinstance(exc, ApiError) else str(exc)
        response = json_response({"error": {"message": message}}, status)
    response.headers[ctx.request_id_header] = request_id()
    return response


async def _control_json(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw:
        return {}
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("control route bodies must be JSON objects")
    return data


async def ctl_health(request: web.Request) -> web.StreamResponse:
    ctx = server_context(request)
    return json_response({"ok": True, "flavor": ctx.flavor, "api_root": ctx.api_root})


async def ctl_add_fault(request: web.Request) -> web.StreamResponse:
    fault = server_context(request).faults.add(Fault.from_dict(await _control_json(request)))
    return json_response({"ok": True, "fault": fault.to_dict()})


async def ctl_list_faults(request: web.Request) -> web.StreamResponse:
    return json_response({"data": [f.to_dict() for f in server_context(request).faults.pending()]})


async def ctl_clear_faults(request: web.Request) -> web.StreamResponse:
    server_context(request).faults.clear()
    return json_response({"ok": True})


async def ctl_add_eval(request: web.Request) -> web.StreamResponse:
    body = await _control_json(request)
    eval_id = body.pop("id", None)
    return json_response(server_context(request).state.create_eval(eval_body(**body), eval_id))


async def ctl_add_run(request: web.Request) -> web.StreamResponse:
    body = await _control_json(request)
    eval_id = body.pop("eval_id", None)
    if not isinstance(eval_id, str):
        raise ApiError(400, "'eval_id' is required", param="eval_id")
    script = RunScript.from_dict(body.pop("script", None))
    return json_response(server_context(request).state.create_run(eval_id, run_body(**body), script))


async def ctl_run_status(request: web.Request) -> web.StreamResponse:
    body = await _control_json(request)
    status = body.get("status", "completed")
    if not isinstance(status, str):
        raise ApiError(400, "'status' must be a string", param="status")
    return json_response(server_context(request).state.set_run_status(request.match_info["run_id"], status))


async def ctl_script(request: web.Request) -> web.StreamResponse:
    body = await _control_json(request)
    state = server_context(request).state
    script = RunScript.from_dict(body.get("script"))
    with state.lock:
        if body.get("default"):
            state.default_script = script
        else:
            state.next_scripts.extend([script] * int(body.get("count", 1)))
    return json_response({"ok": True, "script": script.to_dict()})


async def ctl_requests(request: web.Request) -> web.StreamResponse:
    records = [r.to_dict() for r in server_context(request).records()]
    limit = request.query.get("limit")
    if limit:
        records = records[-int(limit) :]
    return json_response({"data": records})


async def ctl_reset(request: web.Request) -> web.StreamResponse:
    reset_context(server_context(request))
    return json_response({"ok": True})


async def ctl_cancel_routes(request: web.Request) -> web.StreamResponse:
    body = await _control_json(request)
    ctx = server_context(request)
    for name in ("plain", "suffix"):
        if name in body:
            ctx.cancel_routes[name] = bool(body[name])
    return json_response({"ok": True, "cancel_routes": dict(ctx.cancel_routes)})


def add_control_routes(router: web.UrlDispatcher) -> None:
    c = CONTROL_PREFIX
    router.add_get(c + "/health", ctl_health, allow_head=False)
    router.add_post(c + "/faults", ctl_add_fault)
    router.add_get(c + "/faults", ctl_list_faults, allow_head=False)
    router.add_delete(c + "/faults", ctl_clear_faults)
    router.add_post(c + "/evals", ctl_add_eval)
    router.add_post(c + "/runs", ctl_add_run)
    router.add_post(c + "/runs/{run_id}/status", ctl_run_status)
    router.add_post(c + "/script", ctl_script)
    router.add_get(c + "/requests", ctl_requests, allow_head=False)
    router.add_post(c + "/reset", ctl_reset)
    router.add_post(c + "/cancel-routes", ctl_cancel_routes)

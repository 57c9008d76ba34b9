"""The aiohttp application of the fake: API routes per flavor, auth, faults, request log, control routes.

One middleware does auth, fault injection, request ids and logging for API paths so a request costs a
single extra coroutine frame; handlers stay tiny because a benchmark drives ~1,000 requests/s through
this against thousands of keep-alive connections.
"""

from __future__ import annotations

import asyncio
import contextvars
import email.parser
import email.policy
import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from airflow_provider_aoai_evals.testing.faults import Fault, FaultQueue
from airflow_provider_aoai_evals.testing.state import ApiError, FakeState, RunScript, eval_body, run_body

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

API_ROOTS = {"openai": "/v1", "azure": "/openai/v1"}
AZURE_API_VERSIONS = frozenset({"v1", "preview"})
SECRET_HEADERS = frozenset({"authorization", "api-key"})
CONTROL_PREFIX = "/_fake"
HTML_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1>"
    "</center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "invalid_request_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_exceeded",
}
_ERROR_CODES = {
    401: "invalid_api_key",
    404: "not_found",
    405: "method_not_allowed",
    429: "rate_limit_exceeded",
}

CONTEXT_KEY: web.AppKey[ServerContext] = web.AppKey("fake_evals_context")
# Per-request values passed from the middleware to handlers. aiohttp runs each request in its own task,
# so context variables are request-scoped without depending on a particular aiohttp's request-key API.
_BODY: contextvars.ContextVar[Any] = contextvars.ContextVar("fake_evals_body", default=None)
_RAW: contextvars.ContextVar[bytes] = contextvars.ContextVar("raw_body", default=b"")
_STATUS_OVERRIDE: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "fake_evals_status", default=None
)


@dataclass
class RequestRecord:
    """What a test may want to assert about one API request. Secrets are masked before it is stored."""

    method: str
    path: str
    api_path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    status: int | None
    time: float
    request_id: str
    fault: str | None = None
    dropped: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ServerContext:
    """Everything the handlers need, shared with the FakeEvalsServer facade in the test's thread."""

    flavor: str
    api_key: str
    state: FakeState
    faults: FaultQueue = field(default_factory=FaultQueue)
    accepted_tokens: set[str] = field(default_factory=set)
    cancel_routes: dict[str, bool] = field(default_factory=lambda: {"plain": True, "suffix": True})
    request_log_limit: int = 10_000
    log: deque[RequestRecord] = field(default_factory=deque)
    log_lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self.flavor not in API_ROOTS:
            raise ValueError(f"flavor must be 'openai' or 'azure', not {self.flavor!r}")
        self.log = deque(maxlen=self.request_log_limit if self.request_log_limit > 0 else None)

    @property
    def api_root(self) -> str:
        return API_ROOTS[self.flavor]

    @property
    def request_id_header(self) -> str:
        return "apim-request-id" if self.flavor == "azure" else "x-request-id"

    def error_body(
        self, status: int, message: str, param: str | None = None, code: str | None = None
    ) -> dict[str, Any]:
        if self.flavor == "azure":
            return {
                "error": {
                    "code": code or str(_ERROR_CODES.get(status, status)),
                    "message": message,
                    "param": param,
                    "type": "error",
                    "inner_error": {},
                }
            }
        default_type = "server_error" if status >= 500 else _ERROR_TYPES.get(status, "invalid_request_error")
        return {
            "error": {
                "message": message,
                "type": default_type,
                "param": param,
                "code": code if code is not None else _ERROR_CODES.get(status),
            }
        }

    def record(self, rec: RequestRecord) -> None:
        if self.request_log_limit == 0:
            return
        with self.log_lock:
            self.log.append(rec)

    def records(self) -> list[RequestRecord]:
        with self.log_lock:
            return list(self.log)


def _json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(payload).encode(), status=status, headers=headers, content_type="application/json"
    )


def _mask_headers(request: web.Request) -> dict[str, str]:
    return {k: ("***" if k.lower() in SECRET_HEADERS else v) for k, v in request.headers.items()}


def _check_auth(ctx: ServerContext, request: web.Request) -> ApiError | None:
    auth = request.headers.get("Authorization", "")
    token = auth[7:].strip() if auth[:7].lower() == "bearer " else None
    if ctx.flavor == "openai":
        if token is None:
            return ApiError(
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                code=None,
            )
        if token != ctx.api_key:
            shown = token[:3] + "*" * 4 + token[-4:] if len(token) > 8 else "***"
            return ApiError(
                401,
                f"Incorrect API key provided: {shown}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                code="invalid_api_key",
            )
        return None
    api_key = request.headers.get("api-key")
    if api_key is not None and api_key == ctx.api_key:
        return None
    if token is not None and (token == ctx.api_key or token in ctx.accepted_tokens):
        return None
    return ApiError(
        401,
        "Access denied due to invalid subscription key or wrong API endpoint. Make sure to "
        "provide a valid key for an active subscription and use a correct regional API endpoint "
        "for your resource.",
        code="401",
    )


def _check_azure(request: web.Request) -> ApiError | None:
    if request.headers.get("aoai-evals", "").lower() != "preview":
        return ApiError(
            400,
            "The 'aoai-evals: preview' header is required for the Evals API: send the HTTP "
            "header `aoai-evals: preview` with every /openai/v1/evals request.",
            param="aoai-evals",
            code="invalid_request",
        )
    version = request.query.get("api-version")
    if version is not None and version not in AZURE_API_VERSIONS:
        return ApiError(
            400,
            f"Unsupported api-version '{version}'. The supported api-version values for "
            "/openai/v1 are 'v1' and 'preview'.",
            param="api-version",
            code="BadRequest",
        )
    return None


def _abort(request: web.Request) -> None:
    """Close the TCP connection with nothing written: the client sees a reset / remote disconnect."""
    transport = request.transport
    if transport is not None:
        transport.abort()


def _malformed(response: web.StreamResponse) -> web.Response:
    body = response.body if isinstance(response, web.Response) and isinstance(response.body, bytes) else b"{}"
    cut = body[: max(1, len(body) // 2)]
    if cut == body:
        cut = body + b'{"truncated'
    return web.Response(body=cut, status=200, content_type="application/json")


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    ctx = request.app[CONTEXT_KEY]
    path = request.path
    root = ctx.api_root
    if not (path == root or path.startswith(root + "/")):
        if path.startswith(CONTROL_PREFIX):
            return await _control_guard(ctx, request, handler)
        return _json_response(
            ctx.error_body(404, f"Invalid URL ({request.method} {path})", code="not_found"),
            404,
            {ctx.request_id_header: _request_id()},
        )
    request_id = _request_id()
    api_path = path[len(root) :] or "/"
    body: Any = None
    if request.can_read_body:
        raw = await request.read()
        if request.content_type == "multipart/form-data":
            body = {"multipart_bytes": len(raw)}  # uploads are logged by size, not content
            _RAW.set(raw)
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
        request_id=request_id,
    )
    _BODY.set(body)
    _STATUS_OVERRIDE.set(None)
    ctx.record(record)
    headers = {ctx.request_id_header: request_id}

    fault = ctx.faults.take(request.method, api_path)
    if fault is not None:
        record.fault = fault.kind
        early = await _apply_fault_before(ctx, request, fault, headers, record)
        if early is not None:
            return early

    error = _check_auth(ctx, request)
    if error is None and ctx.flavor == "azure":
        error = _check_azure(request)
    if error is not None:
        response: web.StreamResponse = _json_response(
            ctx.error_body(error.status, error.message, error.param, error.code), error.status, headers
        )
    else:
        try:
            response = await handler(request)
        except ApiError as exc:
            response = _json_response(
                ctx.error_body(exc.status, exc.message, exc.param, exc.code), exc.status
            )
        except web.HTTPException as exc:
            message = exc.reason if exc.status != 404 else f"Invalid URL ({request.method} {path})"
            response = _json_response(ctx.error_body(exc.status, message), exc.status)
        response.headers[ctx.request_id_header] = request_id

    if fault is not None and fault.kind == "drop_after":
        record.dropped = True
        _abort(request)
        return response  # aiohttp cannot write to an aborted transport; nothing reaches the client
    if fault is not None and fault.kind == "malformed":
        response = _malformed(response)
        response.headers[ctx.request_id_header] = request_id
    record.status = response.status
    return response


async def _apply_fault_before(
    ctx: ServerContext, request: web.Request, fault: Fault, headers: dict[str, str], record: RequestRecord
) -> web.StreamResponse | None:
    """Apply the part of a fault that happens before the request is processed; None means continue."""
    if fault.kind == "slow":
        await asyncio.sleep(fault.delay)
        return None
    if fault.kind == "unknown_status":
        _STATUS_OVERRIDE.set(fault.run_status)
        return None
    if fault.kind == "drop_before":
        record.dropped = True
        _abort(request)
        return web.Response(status=500)  # never written: the transport is gone
    if fault.kind == "html":
        record.status = fault.status
        return web.Response(
            text=HTML_502, status=fault.status or 502, content_type="text/html", headers=headers
        )
    if fault.kind == "status":
        status = fault.status or 500
        if fault.retry_after is not None:
            headers["Retry-After"] = f"{fault.retry_after:g}"
        if fault.retry_after_ms is not None:
            headers["retry-after-ms"] = str(fault.retry_after_ms)
        message = fault.message or _default_fault_message(status)
        record.status = status
        return _json_response(ctx.error_body(status, message, code=fault.code), status, headers)
    return None  # drop_after and malformed act after the handler


def _default_fault_message(status: int) -> str:
    if status == 429:
        return "Rate limit reached for requests. Please try again later."
    if status >= 500:
        return "The server had an error while processing your request. Sorry about that!"
    return f"Injected fault: HTTP {status}."


def _request_id() -> str:
    return f"req_{uuid.uuid4().hex}"


def _query(request: web.Request) -> dict[str, str]:
    return dict(request.query)


def _json_body(request: web.Request) -> dict[str, Any]:
    body = _BODY.get()
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ApiError(
            400,
            "We could not parse the JSON body of your request. The body must be a JSON object.",
            code="invalid_json",
        )
    return body


# ---- API handlers ---------------------------------------------------------------------------------
async def create_file(request: web.Request) -> web.StreamResponse:
    """Files API upload (multipart ``purpose`` + ``file``), as clients send datasets too big to inline."""
    if request.content_type != "multipart/form-data":
        raise ApiError(400, "Uploads must be multipart/form-data with 'purpose' and 'file'.", param="file")
    # The middleware has read the body already; parse the cached bytes with the stdlib MIME parser.
    header = f"Content-Type: {request.headers['Content-Type']}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(header + _RAW.get())
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            fields[name] = (part.get_filename(), payload)
    if "file" not in fields or "purpose" not in fields:
        raise ApiError(400, "Missing 'file' or 'purpose' in the upload.", param="file")
    filename, content = fields["file"]
    purpose = fields["purpose"][1].decode()
    return _json_response(_ctx(request).state.create_file(filename or "upload.jsonl", purpose, content))


async def get_file(request: web.Request) -> web.StreamResponse:
    return _json_response(_ctx(request).state.get_file(request.match_info["file_id"]))


def _ctx(request: web.Request) -> ServerContext:
    return request.app[CONTEXT_KEY]


async def list_evals(request: web.Request) -> web.StreamResponse:
    return _json_response(_ctx(request).state.list_evals(_query(request)))


async def create_eval(request: web.Request) -> web.StreamResponse:
    ctx = _ctx(request)
    return _json_response(ctx.state.create_eval(_json_body(request)), 200 if ctx.flavor == "azure" else 201)


async def get_eval(request: web.Request) -> web.StreamResponse:
    return _json_response(_ctx(request).state.get_eval(request.match_info["eval_id"]))


async def update_eval(request: web.Request) -> web.StreamResponse:
    return _json_response(_ctx(request).state.update_eval(request.match_info["eval_id"], _json_body(request)))


async def delete_eval(request: web.Request) -> web.StreamResponse:
    return _json_response(_ctx(request).state.delete_eval(request.match_info["eval_id"]))


async def list_runs(request: web.Request) -> web.StreamResponse:
    return _json_response(
        _ctx(request).state.list_runs(request.match_info["eval_id"], _query(request), _STATUS_OVERRIDE.get())
    )


async def create_run(request: web.Request) -> web.StreamResponse:
    run = _ctx(request).state.create_run(request.match_info["eval_id"], _json_body(request))
    override = _STATUS_OVERRIDE.get()
    if override is not None:
        run["status"] = override
    return _json_response(run, 201)


async def get_run(request: web.Request) -> web.StreamResponse:
    info = request.match_info
    return _json_response(
        _ctx(request).state.get_run(info["eval_id"], info["run_id"], _STATUS_OVERRIDE.get())
    )


async def cancel_run_plain(request: web.Request) -> web.StreamResponse:
    ctx = _ctx(request)
    if not ctx.cancel_routes["plain"]:
        raise ApiError(
            405,
            f"Method Not Allowed: POST {request.path} is not supported; cancel with POST "
            ".../runs/{run_id}/cancel.",
            code="method_not_allowed",
        )
    return await _cancel(request)


async def cancel_run_suffix(request: web.Request) -> web.StreamResponse:
    ctx = _ctx(request)
    if not ctx.cancel_routes["suffix"]:
        raise ApiError(404, f"Invalid URL (POST {request.path})", code="not_found")
    return await _cancel(request)


async def _cancel(request: web.Request) -> web.StreamResponse:
    info = request.match_info
    return _json_response(
        _ctx(request).state.cancel_run(info["eval_id"], info["run_id"], _STATUS_OVERRIDE.get())
    )


async def delete_run(request: web.Request) -> web.StreamResponse:
    info = request.match_info
    return _json_response(_ctx(request).state.delete_run(info["eval_id"], info["run_id"]))


async def list_output_items(request: web.Request) -> web.StreamResponse:
    info = request.match_info
    return _json_response(
        _ctx(request).state.list_output_items(info["eval_id"], info["run_id"], _query(request))
    )


async def get_output_item(request: web.Request) -> web.StreamResponse:
    info = request.match_info
    return _json_response(
        _ctx(request).state.get_output_item(info["eval_id"], info["run_id"], info["item_id"])
    )


# ---- control routes -------------------------------------------------------------------------------
async def _control_guard(ctx: ServerContext, request: web.Request, handler: Handler) -> web.StreamResponse:
    """Control routes report bad input as a plain 400 JSON body and never go through faults or auth."""
    try:
        response = await handler(request)
    except (ApiError, ValueError, TypeError) as exc:
        status = exc.status if isinstance(exc, ApiError) else 400
        message = exc.message if isinstance(exc, ApiError) else str(exc)
        response = _json_response({"error": {"message": message}}, status)
    response.headers[ctx.request_id_header] = _request_id()
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
    ctx = _ctx(request)
    return _json_response({"ok": True, "flavor": ctx.flavor, "api_root": ctx.api_root})


async def ctl_add_fault(request: web.Request) -> web.StreamResponse:
    fault = _ctx(request).faults.add(Fault.from_dict(await _control_json(request)))
    return _json_response({"ok": True, "fault": fault.to_dict()})


async def ctl_list_faults(request: web.Request) -> web.StreamResponse:
    return _json_response({"data": [f.to_dict() for f in _ctx(request).faults.pending()]})


async def ctl_clear_faults(request: web.Request) -> web.StreamResponse:
    _ctx(request).faults.clear()
    return _json_response({"ok": True})


async def ctl_add_eval(request: web.Request) -> web.StreamResponse:
    body = await _control_json(request)
    eval_id = body.pop("id", None)
    return _json_response(_ctx(request).state.create_eval(eval_body(**body), eval_id))


async def ctl_add_run(request: web.Request) -> web.StreamResponse:
    body = await _control_json(request)
    eval_id = body.pop("eval_id", None)
    if not isinstance(eval_id, str):
        raise ApiError(400, "'eval_id' is required", param="eval_id")
    script = RunScript.from_dict(body.pop("script", None))
    return _json_response(_ctx(request).state.create_run(eval_id, run_body(**body), script))


async def ctl_run_status(request: web.Request) -> web.StreamResponse:
    body = await _control_json(request)
    status = body.get("status", "completed")
    if not isinstance(status, str):
        raise ApiError(400, "'status' must be a string", param="status")
    return _json_response(_ctx(request).state.set_run_status(request.match_info["run_id"], status))


async def ctl_script(request: web.Request) -> web.StreamResponse:
    body = await _control_json(request)
    state = _ctx(request).state
    script = RunScript.from_dict(body.get("script"))
    with state.lock:
        if body.get("default"):
            state.default_script = script
        else:
            state.next_scripts.extend([script] * int(body.get("count", 1)))
    return _json_response({"ok": True, "script": script.to_dict()})


async def ctl_requests(request: web.Request) -> web.StreamResponse:
    records = [r.to_dict() for r in _ctx(request).records()]
    limit = request.query.get("limit")
    if limit:
        records = records[-int(limit) :]
    return _json_response({"data": records})


async def ctl_reset(request: web.Request) -> web.StreamResponse:
    reset_context(_ctx(request))
    return _json_response({"ok": True})


async def ctl_cancel_routes(request: web.Request) -> web.StreamResponse:
    body = await _control_json(request)
    ctx = _ctx(request)
    for name in ("plain", "suffix"):
        if name in body:
            ctx.cancel_routes[name] = bool(body[name])
    return _json_response({"ok": True, "cancel_routes": dict(ctx.cancel_routes)})


def reset_context(ctx: ServerContext) -> None:
    """Back to a freshly started server (store, scripts, faults, log, cancel routes, extra tokens)."""
    ctx.state.reset()
    ctx.faults.clear()
    with ctx.log_lock:
        ctx.log.clear()
    ctx.cancel_routes.update({"plain": True, "suffix": True})


def build_app(ctx: ServerContext) -> web.Application:
    # A large client_max_size: inline file_content data sources can be many MB, as the real API allows.
    app = web.Application(middlewares=[api_middleware], client_max_size=512 * 1024 * 1024)
    app[CONTEXT_KEY] = ctx
    root = ctx.api_root
    ev = root + "/evals/{eval_id}"
    run = ev + "/runs/{run_id}"
    r = app.router
    r.add_get(root + "/evals", list_evals, allow_head=False)
    r.add_post(root + "/evals", create_eval)
    r.add_get(ev, get_eval, allow_head=False)
    r.add_post(ev, update_eval)
    r.add_delete(ev, delete_eval)
    r.add_get(ev + "/runs", list_runs, allow_head=False)
    r.add_post(ev + "/runs", create_run)
    r.add_get(run, get_run, allow_head=False)
    r.add_post(run, cancel_run_plain)
    r.add_delete(run, delete_run)
    r.add_post(run + "/cancel", cancel_run_suffix)
    r.add_get(run + "/output_items", list_output_items, allow_head=False)
    r.add_get(run + "/output_items/{item_id}", get_output_item, allow_head=False)
    r.add_post(root + "/files", create_file)
    r.add_get(root + "/files/{file_id}", get_file, allow_head=False)
    c = CONTROL_PREFIX
    r.add_get(c + "/health", ctl_health, allow_head=False)
    r.add_post(c + "/faults", ctl_add_fault)
    r.add_get(c + "/faults", ctl_list_faults, allow_head=False)
    r.add_delete(c + "/faults", ctl_clear_faults)
    r.add_post(c + "/evals", ctl_add_eval)
    r.add_post(c + "/runs", ctl_add_run)
    r.add_post(c + "/runs/{run_id}/status", ctl_run_status)
    r.add_post(c + "/script", ctl_script)
    r.add_get(c + "/requests", ctl_requests, allow_head=False)
    r.add_post(c + "/reset", ctl_reset)
    r.add_post(c + "/cancel-routes", ctl_cancel_routes)
    return app

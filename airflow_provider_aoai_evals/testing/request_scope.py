"""What the API middleware hands the route handlers for one request, and the JSON response they answer with.

The middleware reads every body once (to log it and to match faults), so handlers take the parsed body
from here instead of reading the stream again. aiohttp runs each request in its own task, so context
variables are request-scoped without depending on a particular aiohttp's request-key API.
"""

from __future__ import annotations

import contextvars
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from airflow_provider_aoai_evals.testing.context import CONTEXT_KEY, ServerContext
from airflow_provider_aoai_evals.testing.errors import ApiError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

BODY: contextvars.ContextVar[Any] = contextvars.ContextVar("fake_evals_body", default=None)
#: The bytes of a multipart upload, which ``BODY`` logs by size only.
RAW_BODY: contextvars.ContextVar[bytes] = contextvars.ContextVar("raw_body", default=b"")
#: Set by an ``unknown_status`` fault: the run status the handlers report instead of the real one.
STATUS_OVERRIDE: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "fake_evals_status", default=None
)


def json_response(payload: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(payload).encode(), status=status, headers=headers, content_type="application/json"
    )


def request_id() -> str:
    return f"req_{uuid.uuid4().hex}"


def server_context(request: web.Request) -> ServerContext:
    return request.app[CONTEXT_KEY]


def query(request: web.Request) -> dict[str, str]:
    return dict(request.query)


def json_body(request: web.Request) -> dict[str, Any]:
    body = BODY.get()
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ApiError(
            400,
            "We could not parse the JSON body of your request. The body must be a JSON object.",
            code="invalid_json",
        )
    return body

"""What one fake server shares between its aiohttp handlers and the FakeEvalsServer facade in the test's
thread: flavor, key, store, faults, request log and cancel routes, plus the flavor's error body shape.

The facade and the handlers run on different threads, so the request log has its own lock and the store
its own; nothing here awaits while holding either.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from airflow_provider_aoai_evals.testing.faults import FaultQueue
from airflow_provider_aoai_evals.testing.state import FakeState

API_ROOTS = {"openai": "/v1", "azure": "/openai/v1"}
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


def reset_context(ctx: ServerContext) -> None:
    """Back to a freshly started server (store, scripts, faults, log, cancel routes, extra tokens)."""
    ctx.state.reset()
    ctx.faults.clear()
    with ctx.log_lock:
        ctx.log.clear()
    ctx.cancel_routes.update({"plain": True, "suffix": True})

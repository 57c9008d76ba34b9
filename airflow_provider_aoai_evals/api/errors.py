"""One error hierarchy for the Evals API, shared by both transports and everything above them.

Callers decide what to do from the *class* of an error (retry it, fail the task at once, or report bad
input), so the split between transient and permanent faults is made here once, from the HTTP status or
the kind of network failure, and never re-derived by operators, sensors or triggers.

Error text carries the HTTP status, the request id and the API's own message, because those three are what
a user needs to act or to open a support ticket. It never carries request headers or bodies, so a secret
cannot leak through an exception.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

REQUEST_ID_HEADERS = ("x-request-id", "apim-request-id", "x-ms-request-id")


class EvalsError(Exception):
    """Base class of every error this provider raises about the Evals API."""


class EvalsConfigError(EvalsError, ValueError):
    """Bad input or settings, detected before any request is sent.

    ``parameter`` names what the user has to fix, so the message can say it in the user's own words.
    """

    def __init__(self, parameter: str, problem: str) -> None:
        self.parameter = parameter
        self.problem = problem
        super().__init__(f"Invalid {parameter!r}: {problem}")


class EvalsAPIError(EvalsError):
    """A request that did not succeed, with everything known about why."""

    #: Whether trying the same request again later can reasonably succeed.
    transient: bool = False

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        request_id: str | None = None,
        code: str | None = None,
        param: str | None = None,
        method: str | None = None,
        path: str | None = None,
        retry_after: float | None = None,
        should_retry: bool | None = None,
    ) -> None:
        self.message = message
        self.status_code = status_code
        self.request_id = request_id
        self.code = code
        self.param = param
        self.method = method
        self.path = path
        #: Seconds the server asked us to wait (Retry-After / retry-after-ms), if it said so.
        self.retry_after = retry_after
        #: The server's explicit ``x-should-retry`` verdict, which overrides the status-based one.
        self.should_retry = should_retry
        super().__init__(self._render())

    def _render(self) -> str:
        parts = []
        if self.method and self.path:
            parts.append(f"{self.method} {self.path}")
        if self.status_code is not None:
            parts.append(f"HTTP {self.status_code}")
        head = " ".join(parts) + ": " if parts else ""
        tail = []
        if self.code:
            tail.append(f"code={self.code}")
        if self.param:
            tail.append(f"param={self.param}")
        tail.append(f"request_id={self.request_id or 'n/a'}")
        return f"{head}{self.message} ({', '.join(tail)})"


class EvalsTransientError(EvalsAPIError):
    """A fault that may go away on its own: the network, a timeout, throttling, a server error."""

    transient = True


class EvalsPermanentError(EvalsAPIError):
    """A fault that the same request will meet again: auth, a missing object, a rejected body."""

    transient = False


class EvalsConnectionError(EvalsTransientError):
    """The request did not get a response because the connection failed.

    ``request_sent`` tells whether the server may have received (and acted on) the request: a POST that
    failed after sending is *ambiguous* and must not be repeated blindly.
    """

    def __init__(self, message: str, *, request_sent: bool, **kwargs: Any) -> None:
        self.request_sent = request_sent
        super().__init__(message, **kwargs)


class EvalsTimeoutError(EvalsConnectionError):
    """The server did not answer in time; it may still be processing the request."""


class EvalsRateLimitError(EvalsTransientError):
    """HTTP 429."""


class EvalsServerError(EvalsTransientError):
    """HTTP 408, 409 or 5xx (and 2xx bodies that are not the JSON the API sends, e.g. a proxy page)."""


class EvalsBadRequestError(EvalsPermanentError):
    """HTTP 400 or 422."""


class EvalsAuthenticationError(EvalsPermanentError):
    """HTTP 401."""


class EvalsPermissionDeniedError(EvalsPermanentError):
    """HTTP 403."""


class EvalsNotFoundError(EvalsPermanentError):
    """HTTP 404 (and 405 from a route the server does not have)."""


class EvalsRetryAfterTooLongError(EvalsTransientError):
    """The server asked us to wait longer than the policy's cap: give up now, as the official client does."""


# -- failures with no response, in one wording whichever transport (requests, aiohttp, lean_http) met them --


def tls_failed(exc: BaseException, *, method: str, path: str) -> EvalsPermanentError:
    """A certificate the client does not trust: retrying cannot help."""
    return EvalsPermanentError(
        f"TLS verification failed ({type(exc).__name__}); check the endpoint or set 'ca_bundle'",
        method=method,
        path=path,
    )


def timed_out(*, connecting: bool, method: str, path: str) -> EvalsTimeoutError:
    """A connect that timed out (nothing sent) or a response that did not come in time (maybe acted on)."""
    if connecting:
        return EvalsTimeoutError("timed out connecting", request_sent=False, method=method, path=path)
    return EvalsTimeoutError(
        "timed out waiting for the response", request_sent=True, method=method, path=path
    )


def connection_failed(
    exc: BaseException, *, request_sent: bool, method: str, path: str
) -> EvalsConnectionError:
    """A connection that broke, named by the exception's type and text (cut short: no URL dumps)."""
    return EvalsConnectionError(
        f"connection failed: {type(exc).__name__}: {exc}"[:300],
        request_sent=request_sent,
        method=method,
        path=path,
    )


_STATUS_CLASSES: dict[int, type[EvalsAPIError]] = {
    400: EvalsBadRequestError,
    401: EvalsAuthenticationError,
    403: EvalsPermissionDeniedError,
    404: EvalsNotFoundError,
    405: EvalsNotFoundError,
    408: EvalsServerError,
    409: EvalsServerError,
    422: EvalsBadRequestError,
    429: EvalsRateLimitError,
}


def error_class_for_status(status: int) -> type[EvalsAPIError]:
    """The class for a non-2xx status: 408/409/429/5xx are transient, every other 4xx permanent."""
    if status in _STATUS_CLASSES:
        return _STATUS_CLASSES[status]
    if status >= 500:
        return EvalsServerError
    return EvalsPermanentError


def request_id_from(headers: Mapping[str, str]) -> str | None:
    """The request id the service put on a response (OpenAI and Azure use different headers)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    for name in REQUEST_ID_HEADERS:
        if lowered.get(name):
            return lowered[name]
    return None


def error_from_response(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    method: str,
    path: str,
    retry_after: float | None = None,
) -> EvalsAPIError:
    """Build the typed error for a failed response, reading the API's message from either flavor's body.

    OpenAI wraps the error in ``{"error": {...}}``; Azure's older plane sends it unwrapped; proxies send
    HTML. Like the official SDK, take ``body.get("error", body)`` and fall back to a short excerpt.
    """
    message, code, param = _parse_error_body(body, status)
    cls = error_class_for_status(status)
    return cls(
        message,
        status_code=status,
        request_id=request_id_from(headers),
        code=code,
        param=param,
        method=method,
        path=path,
        retry_after=retry_after,
        should_retry=should_retry_header(headers),
    )


def should_retry_header(headers: Mapping[str, str]) -> bool | None:
    """The server's explicit ``x-should-retry`` verdict, if it gave one."""
    value = {k.lower(): v for k, v in headers.items()}.get("x-should-retry")
    if value == "true":
        return True
    if value == "false":
        return False
    return None


def _parse_error_body(body: bytes, status: int) -> tuple[str, str | None, str | None]:
    text = body.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text) if text else None
    except ValueError:
        data = None
    if isinstance(data, dict):
        inner = data.get("error", data)
        if isinstance(inner, dict):
            message = inner.get("message") or f"HTTP {status} with no error message"
            code = inner.get("code")
            param = inner.get("param")
            return str(message), None if code is None else str(code), None if param is None else str(param)
        if isinstance(inner, str):
            return inner, None, None
    if not text:
        return f"HTTP {status} with an empty body", None, None
    excerpt = " ".join(text.split())[:200]
    return f"HTTP {status} with a non-JSON body: {excerpt!r}", None, None

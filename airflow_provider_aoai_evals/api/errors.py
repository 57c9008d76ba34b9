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
import ssl
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

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
    """The server asked us to wait longer than the policy's cap: give up now, as the official client does.

    It keeps the status, request id and message of the answer that asked for the wait.
    """

    @classmethod
    def from_error(cls, exc: EvalsAPIError, cap: float) -> EvalsRetryAfterTooLongError:
        return cls(
            f"the server asked to wait {exc.retry_after:g} s before trying again, longer than "
            f"max_retry_after ({cap:g} s), so the call gave up: {exc.message}",
            status_code=exc.status_code,
            request_id=exc.request_id,
            code=exc.code,
            param=exc.param,
            method=exc.method,
            path=exc.path,
            retry_after=exc.retry_after,
            should_retry=exc.should_retry,
        )


# -- failures with no response, in one wording whichever transport (requests, aiohttp, lean_http) met them --


def tls_failed(exc: BaseException, *, method: str, path: str) -> EvalsAPIError:
    """A TLS failure. A certificate or protocol the client refuses is permanent: retrying cannot help.
    A connection closed in the middle of the handshake is transient (an overloaded server does it too),
    and both transports word it the same way, whichever error their library reports it with."""
    cause = find_cause(exc, ssl.SSLError, lambda e: getattr(e, "reason", None) is not None)
    if isinstance(cause, ssl.SSLEOFError):
        return handshake_closed(method=method, path=path)
    reason = getattr(cause, "reason", None) or type(exc).__name__
    if reason == "WRONG_VERSION_NUMBER":
        message = (
            f"TLS failed ({reason}): the endpoint does not speak https on this port; is it plain http? "
            "(http:// is allowed for loopback test servers only)"
        )
    else:
        message = f"TLS verification failed ({reason}); check the endpoint or set 'ca_bundle'"
    return EvalsPermanentError(message, method=method, path=path)


def handshake_closed(*, method: str, path: str) -> EvalsConnectionError:
    return EvalsConnectionError(
        "connection closed during the TLS handshake; if this lasts, check that the endpoint serves https "
        "on this port",
        request_sent=False,
        method=method,
        path=path,
    )


def find_cause(
    exc: BaseException,
    kind: type[BaseException] | tuple[type[BaseException], ...],
    where: Callable[[BaseException], bool] = lambda _: True,
) -> BaseException | None:
    """The first ``kind`` in ``exc``'s chain for which ``where`` holds: causes, contexts, and the
    ``reason`` / ``os_error`` / ``args`` wrappers through which requests, urllib3 and aiohttp carry the
    error they met."""
    todo: list[object] = [exc]
    seen: set[int] = set()
    while todo:
        current = todo.pop(0)
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, kind) and where(current):
            return current
        wrapped = (getattr(current, "reason", None), getattr(current, "os_error", None))
        todo += [current.__cause__, current.__context__, *wrapped, *current.args]
    return None


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
    secrets: Sequence[str] = (),
) -> EvalsAPIError:
    """Build the typed error for a failed response, reading the API's message from either flavor's body.

    OpenAI wraps the error in ``{"error": {...}}``; Azure's older plane sends it unwrapped; proxies send
    HTML. Like the official SDK, take ``body.get("error", body)`` and fall back to a short excerpt.
    ``secrets`` (what the request's auth headers carried) are cut out of the body first: a proxy that
    echoes the request's headers in its error page would otherwise put the key into the task log.
    """
    if 300 <= status < 400:
        message, code, param = redirect_message(status, headers), None, None
    else:
        message, code, param = _parse_error_body(
            scrub(body.decode("utf-8", errors="replace"), secrets), status
        )
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


def redirect_message(status: int, headers: Mapping[str, str]) -> str:
    """Why a redirect fails, naming where it pointed (host only: a URL's query may hold a token)."""
    location = {k.lower(): v for k, v in headers.items()}.get("location", "")
    try:
        target = urlsplit(location).netloc
    except ValueError:
        target = ""
    where = f"to host {target!r}" if target else "on the same host" if location else "with no Location"
    return (
        f"the server answered with a redirect (HTTP {status}) {where}; redirects are never followed, so "
        "the API key cannot be sent to another address: set the connection's host to the URL the API "
        "itself answers at"
    )


def scrub(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every secret replaced by asterisks (short values are left: they match too much)."""
    for secret in secrets:
        if len(secret) >= _MIN_SECRET_LENGTH and secret in text:
            text = text.replace(secret, "***")
    return text


#: Shorter "secrets" are not scrubbed: replacing every "abc" in a page would garble it and hide nothing.
_MIN_SECRET_LENGTH = 6


def secrets_in(auth_headers: Mapping[str, str]) -> tuple[str, ...]:
    """The secret values of a request's auth headers: an ``api-key``, and a bearer token with and
    without its ``Bearer`` prefix."""
    found: list[str] = []
    for value in auth_headers.values():
        found.append(value)
        if value[:7].lower() == "bearer ":
            found.append(value[7:])
    return tuple(found)


def should_retry_header(headers: Mapping[str, str]) -> bool | None:
    """The server's explicit ``x-should-retry`` verdict, if it gave one."""
    value = {k.lower(): v for k, v in headers.items()}.get("x-should-retry")
    if value == "true":
        return True
    if value == "false":
        return False
    return None


def _parse_error_body(text: str, status: int) -> tuple[str, str | None, str | None]:
    text = text.strip()
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

"""What both transports share about one request: its attempt's time bounds, which failures it may retry,
and how its answer becomes a result or a typed error.

The transports (``sync_client``, ``async_client``, the export's ``export/lean_pages``) differ only in how
bytes travel; everything they must agree on about a request and its answer is here.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pydantic import ValidationError

from airflow_provider_aoai_evals.api.errors import (
    EvalsAPIError,
    EvalsPermanentError,
    EvalsServerError,
    error_from_response,
    request_id_from,
    scrub,
    secrets_in,
)
from airflow_provider_aoai_evals.api.operations import Call, Operations, retryable_without_key
from airflow_provider_aoai_evals.api.raw_items import UnexpectedShapeError
from airflow_provider_aoai_evals.api.retry import parse_retry_after
from airflow_provider_aoai_evals.api.routes import PreparedRequest
from airflow_provider_aoai_evals.api.settings import ClientSettings

R = TypeVar("R")
#: Items per page when the caller gives no ``limit`` (the API's maximum: fewer requests per walk).
DEFAULT_PAGE_SIZE = 100


def page_size(limit: int | None) -> int:
    return DEFAULT_PAGE_SIZE if limit is None else limit


def read_answer(
    call: Call[R], status: int, headers: Mapping[str, str], body: bytes, auth_headers: Mapping[str, str]
) -> R:
    """The parsed result of a 2xx answer, or the typed error for anything else.

    Models are validated straight from the bytes (pydantic's JSON parser is faster than ``json.loads``
    followed by validation, which matters for 2 KB output items by the thousand). A 2xx body that is empty
    or not JSON (a proxy page, a cut-off body) is a transient server error: reading it as an empty object
    would make an empty list of runs out of it, and a create's lookup would then post a second run. JSON of
    the wrong shape is permanent, and its error names the fields, never their values (a run's values hold
    its inline dataset). ``auth_headers`` are what the request carried, cut out of any excerpt quoted.
    """
    req = call.request
    if not 200 <= status < 300:
        raise error_from_response(
            status,
            headers,
            body,
            method=req.method,
            path=req.path,
            retry_after=parse_retry_after(headers),
            secrets=secrets_in(auth_headers),
        )
    if not body or body.isspace():  # isspace stops at the first other byte; strip would copy a page
        raise _unreadable(EvalsServerError, f"(HTTP {status}) had an empty body", call, status, headers)
    try:
        return call.parse(body)
    except (ValidationError, json.JSONDecodeError, UnexpectedShapeError) as exc:
        invalid_json = (
            any(err.get("type") == "json_invalid" for err in exc.errors())
            if isinstance(exc, ValidationError)
            else isinstance(exc, json.JSONDecodeError)
        )
        if invalid_json:
            excerpt = scrub(body[:120].decode("utf-8", errors="replace"), secrets_in(auth_headers))
            error_class: type[EvalsAPIError] = EvalsServerError
            problem = f"was not valid JSON (a proxy page or a cut-off body?): {excerpt!r}"
        else:
            error_class = EvalsPermanentError
            problem = f"had an unexpected shape: {shape_problem(exc)}"
        raise _unreadable(error_class, problem, call, status, headers) from None


def _unreadable(
    error_class: type[EvalsAPIError], problem: str, call: Call[Any], status: int, headers: Mapping[str, str]
) -> EvalsAPIError:
    """A 2xx answer that cannot be read, named by what was wrong with it."""
    return error_class(
        f"the response {problem}",
        status_code=status,
        request_id=request_id_from(headers),
        method=call.request.method,
        path=call.request.path,
    )


def shape_problem(exc: Exception) -> str:
    """What was wrong with valid JSON, by field location and rule, without the offending values."""
    if not isinstance(exc, ValidationError):
        return str(exc)[:200]
    problems = [
        f"{'.'.join(str(part) for part in err.get('loc', ())) or 'body'}: {err.get('msg', 'invalid')}"
        for err in exc.errors(include_input=False, include_url=False)[:3]
    ]
    more = exc.error_count() - len(problems)
    return "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")


def attempt_timeout(settings: ClientSettings, deadline: float | None) -> tuple[float, float]:
    """Connect and read timeouts for one attempt, shortened so an attempt never outlives the deadline."""
    connect, read = settings.connect_timeout, settings.read_timeout
    if deadline is not None:
        left = max(deadline - time.time(), 0.05)
        connect, read = min(connect, left), min(read, left)
    return connect, read


class ClientBase:
    """The endpoint a client talks to and the operations it builds: what both clients hold."""

    settings: ClientSettings
    ops: Operations

    def _retry_if(self, call: Call[Any], *, keyed: bool = False) -> Callable[[BaseException], bool]:
        """The failures a call may be tried again on: a request that is not idempotent (a create without an
        idempotency key) only when it cannot have reached the server."""
        policy = self.settings.retry
        return (
            policy.is_retryable
            if call.request.idempotent or keyed
            else retryable_without_key(policy.is_retryable)
        )

    def _url(self, req: PreparedRequest) -> str:
        return self.settings.api_root + req.path

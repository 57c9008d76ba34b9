"""How a page says that the API or the connection failed: a readable message (HTTP status, request id,
the API's message), never a stack trace. Messages of ``EvalsAPIError`` are already scrubbed of credentials
by the client."""

from __future__ import annotations

from typing import Any

from airflow.exceptions import AirflowNotFoundException

from airflow_provider_aoai_evals.api.errors import EvalsAPIError, EvalsConfigError
from airflow_provider_aoai_evals.ui.evals_data import TooManyItems


def failure(exc: Exception) -> tuple[int, dict[str, Any]]:
    """What a page says when the API or the connection fails: status, request id, message; no trace."""
    if isinstance(exc, EvalsAPIError):
        return 502, message(
            "The Evals API answered with an error", exc.message, exc.status_code, exc.request_id, exc.code
        )
    if isinstance(exc, AirflowNotFoundException):
        return 404, message("Connection not found", str(exc))
    if isinstance(exc, EvalsConfigError):
        return 400, message("The connection is not usable", str(exc))
    return 502, message("The page could not be built", str(exc))


def message(
    title: str,
    text: str,
    status: int | None = None,
    request_id: str | None = None,
    code: str | None = None,
) -> dict[str, Any]:
    """The fields ``_error.html`` shows."""
    return {"title": title, "message": text, "status": status, "request_id": request_id, "code": code}


#: Exceptions a page turns into a message (anything else is Airflow's plain 500, also without a trace).
PAGE_ERRORS = (EvalsAPIError, EvalsConfigError, AirflowNotFoundException, TooManyItems)

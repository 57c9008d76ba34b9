"""Where each operation lives for each flavor: method, path, expected query and headers.

The two services host the same operations under different roots and disagree on a few details (the
cancel path, the preview header, api-version). Keeping that table here means the transports stay a thin
"send this request" layer and a new difference is one edit, not a hunt through both clients.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal

from airflow_provider_aoai_evals.api.defaults import AZURE_API_VERSIONS
from airflow_provider_aoai_evals.api.errors import EvalsConfigError
from airflow_provider_aoai_evals.api.validation import validate_id

Flavor = Literal["openai", "azure"]
FLAVORS: tuple[Flavor, ...] = ("openai", "azure")  # == defaults.FLAVORS, typed as Flavor

AZURE_PREVIEW_HEADER = ("aoai-evals", "preview")
AZURE_API_SUFFIX = "/openai/v1"


class Operation(str, enum.Enum):
    """The 12 operations of the Evals API, plus the alternative cancel path."""

    CREATE_EVAL = "create_eval"
    LIST_EVALS = "list_evals"
    GET_EVAL = "get_eval"
    UPDATE_EVAL = "update_eval"
    DELETE_EVAL = "delete_eval"
    CREATE_RUN = "create_run"
    LIST_RUNS = "list_runs"
    GET_RUN = "get_run"
    CANCEL_RUN = "cancel_run"
    CANCEL_RUN_SUFFIX = "cancel_run_suffix"
    DELETE_RUN = "delete_run"
    LIST_OUTPUT_ITEMS = "list_output_items"
    GET_OUTPUT_ITEM = "get_output_item"
    UPLOAD_FILE = "upload_file"


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    #: Whether repeating the request is harmless. Non-idempotent requests are not retried after the
    #: request may have reached the server (see the client's create_run for how runs are de-duplicated).
    idempotent: bool


_ROUTES: dict[Operation, Route] = {
    Operation.CREATE_EVAL: Route("POST", "/evals", idempotent=False),
    Operation.LIST_EVALS: Route("GET", "/evals", idempotent=True),
    Operation.GET_EVAL: Route("GET", "/evals/{eval_id}", idempotent=True),
    Operation.UPDATE_EVAL: Route("POST", "/evals/{eval_id}", idempotent=True),
    Operation.DELETE_EVAL: Route("DELETE", "/evals/{eval_id}", idempotent=True),
    Operation.CREATE_RUN: Route("POST", "/evals/{eval_id}/runs", idempotent=False),
    Operation.LIST_RUNS: Route("GET", "/evals/{eval_id}/runs", idempotent=True),
    Operation.GET_RUN: Route("GET", "/evals/{eval_id}/runs/{run_id}", idempotent=True),
    Operation.CANCEL_RUN: Route("POST", "/evals/{eval_id}/runs/{run_id}", idempotent=True),
    Operation.CANCEL_RUN_SUFFIX: Route("POST", "/evals/{eval_id}/runs/{run_id}/cancel", idempotent=True),
    Operation.DELETE_RUN: Route("DELETE", "/evals/{eval_id}/runs/{run_id}", idempotent=True),
    Operation.LIST_OUTPUT_ITEMS: Route("GET", "/evals/{eval_id}/runs/{run_id}/output_items", idempotent=True),
    Operation.GET_OUTPUT_ITEM: Route(
        "GET", "/evals/{eval_id}/runs/{run_id}/output_items/{output_item_id}", idempotent=True
    ),
    # Files API (both flavors): datasets too large to send inline are uploaded and referenced by file id.
    Operation.UPLOAD_FILE: Route("POST", "/files", idempotent=False),
}

# Cancel: the spec and Azure use POST .../runs/{id}; newer OpenAI clients and OpenAI's docs use .../cancel.
# Each flavor tries its own first and falls back to the other on 404/405 (see the clients' cancel_run).
CANCEL_ROUTES: dict[Flavor, tuple[Operation, Operation]] = {
    "openai": (Operation.CANCEL_RUN_SUFFIX, Operation.CANCEL_RUN),
    "azure": (Operation.CANCEL_RUN, Operation.CANCEL_RUN_SUFFIX),
}


@dataclass(frozen=True)
class PreparedRequest:
    """A request with every id validated and the flavor's path, query and headers applied."""

    operation: Operation
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    idempotent: bool


def validate_flavor(flavor: str) -> Flavor:
    if flavor not in FLAVORS:
        raise EvalsConfigError("flavor", f"{flavor!r} is not supported; use one of {', '.join(FLAVORS)}")
    return flavor


def validate_api_version(flavor: Flavor, api_version: str | None) -> str | None:
    if api_version in (None, ""):
        return None
    if flavor != "azure":
        raise EvalsConfigError("api_version", "is an Azure setting; leave it empty for the openai flavor")
    if api_version not in AZURE_API_VERSIONS:
        raise EvalsConfigError(
            "api_version",
            f"{api_version!r} is not a v1-plane version; use one of {', '.join(AZURE_API_VERSIONS)} "
            "(the older 2025-04-01-preview data plane is not supported)",
        )
    return api_version


def prepare(
    flavor: Flavor,
    operation: Operation,
    *,
    api_version: str | None = None,
    query: dict[str, str | int | None] | None = None,
    **path_params: str,
) -> PreparedRequest:
    """Validate the ids and build the flavor-specific request for one operation."""
    route = _ROUTES[operation]
    for name, value in path_params.items():
        validate_id(name, value)
    try:
        path = route.template.format(**path_params)
    except KeyError as exc:  # a programming error, but say which id is missing
        raise EvalsConfigError(str(exc.args[0]), "is required") from None
    params = {k: str(v) for k, v in (query or {}).items() if v is not None}
    headers: dict[str, str] = {}
    if flavor == "azure":
        headers[AZURE_PREVIEW_HEADER[0]] = AZURE_PREVIEW_HEADER[1]
        if api_version:
            params["api-version"] = api_version
    return PreparedRequest(operation, route.method, path, params, headers, route.idempotent)

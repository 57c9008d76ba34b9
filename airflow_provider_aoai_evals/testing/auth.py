"""Who may call the fake: the flavor's API key or bearer tokens, and the Azure-only header and api-version.

Each flavor answers a bad key with its own 401 wording, because clients (and users' alerts) match it.
The checks return the error instead of raising it: the middleware answers it itself, after any fault
has had its turn, and never calls the handler.
"""

from __future__ import annotations

from aiohttp import web

from airflow_provider_aoai_evals.testing.context import ServerContext
from airflow_provider_aoai_evals.testing.errors import ApiError

AZURE_API_VERSIONS = frozenset({"v1", "preview"})


def check_auth(ctx: ServerContext, request: web.Request) -> ApiError | None:
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


def check_azure(request: web.Request) -> ApiError | None:
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

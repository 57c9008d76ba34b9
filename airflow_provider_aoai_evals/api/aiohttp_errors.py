"""aiohttp's failures of one attempt as the error hierarchy's, so a trigger's error reads as a worker's.

requests and aiohttp name the same failures differently; the sync transport maps requests' in ``errors``.
Whether a failure may have reached the server (``request_sent``) follows from where aiohttp raised it: a
connector error is raised before the request is written.
"""

from __future__ import annotations

import asyncio

import aiohttp

from airflow_provider_aoai_evals.api.errors import (
    EvalsAPIError,
    EvalsConnectionError,
    connection_failed,
    handshake_closed,
    timed_out,
    tls_failed,
)
from airflow_provider_aoai_evals.api.routes import PreparedRequest


def transport_error(exc: BaseException, req: PreparedRequest, *, https: bool) -> EvalsAPIError:
    """aiohttp's failure of one attempt as the error hierarchy's."""
    method, path = req.method, req.path
    if isinstance(exc, aiohttp.ClientSSLError):
        return tls_failed(exc, method=method, path=path)
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return timed_out(connecting=True, method=method, path=path)
    if isinstance(exc, (aiohttp.ServerTimeoutError, asyncio.TimeoutError)):
        return timed_out(connecting=False, method=method, path=path)
    if isinstance(exc, aiohttp.ClientConnectorError):
        # A reset while connecting to an https endpoint is aiohttp's word for a handshake the server broke
        # off, which requests reports as an SSL EOF: the same error either way.
        os_error = exc.os_error
        if isinstance(os_error, ConnectionResetError) and https:
            return handshake_closed(method=method, path=path)
        return EvalsConnectionError(
            f"connection failed: {type(exc).__name__}: {type(os_error).__name__} {os_error}".rstrip(),
            request_sent=False,
            method=method,
            path=path,
        )
    return connection_failed(exc, request_sent=True, method=method, path=path)

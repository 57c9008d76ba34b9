"""How a queued fault acts on the one request it matched: before the handler runs, or on its answer.

Most faults replace the answer (a status, an HTML proxy page) or delay it; ``drop_after`` and
``malformed`` need the handler's real answer, because what they test is a client that loses or misreads
a response the service did send (a run created, then the connection reset).
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from airflow_provider_aoai_evals.testing.context import RequestRecord, ServerContext
from airflow_provider_aoai_evals.testing.faults import Fault
from airflow_provider_aoai_evals.testing.request_scope import STATUS_OVERRIDE, json_response

HTML_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1>"
    "</center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)


async def apply_fault_before(
    ctx: ServerContext, request: web.Request, fault: Fault, headers: dict[str, str], record: RequestRecord
) -> web.StreamResponse | None:
    """Apply the part of a fault that happens before the request is processed; None means continue."""
    if fault.kind == "slow":
        await asyncio.sleep(fault.delay)
        return None
    if fault.kind == "unknown_status":
        STATUS_OVERRIDE.set(fault.run_status)
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
        return json_response(ctx.error_body(status, message, code=fault.code), status, headers)
    return None  # drop_after and malformed act after the handler


def apply_fault_after(
    request: web.Request,
    fault: Fault,
    response: web.StreamResponse,
    headers: dict[str, str],
    record: RequestRecord,
) -> web.StreamResponse:
    """The answer to send once the handler has answered; ``record.dropped`` says nothing will be sent."""
    if fault.kind == "drop_after":
        record.dropped = True
        _abort(request)
    elif fault.kind == "malformed":
        response = _malformed(response)
        response.headers.update(headers)
    return response


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


def _default_fault_message(status: int) -> str:
    if status == 429:
        return "Rate limit reached for requests. Please try again later."
    if status >= 500:
        return "The server had an error while processing your request. Sorry about that!"
    return f"Injected fault: HTTP {status}."

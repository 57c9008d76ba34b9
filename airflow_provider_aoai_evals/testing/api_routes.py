"""The Evals API's routes: evals, runs, output items and the Files upload the runs can read from.

Handlers only unpack the request and call the store, which validates and answers in API shape; they stay
tiny because benchmarks drive the fake at high request rates over thousands of keep-alive connections.
Auth, faults and error bodies are the middleware's.
"""

from __future__ import annotations

import email.parser
import email.policy

from aiohttp import web

from airflow_provider_aoai_evals.testing.errors import ApiError
from airflow_provider_aoai_evals.testing.request_scope import (
    RAW_BODY,
    STATUS_OVERRIDE,
    json_body,
    json_response,
    query,
    server_context,
)


async def list_evals(request: web.Request) -> web.StreamResponse:
    return json_response(server_context(request).state.list_evals(query(request)))


async def create_eval(request: web.Request) -> web.StreamResponse:
    ctx = server_context(request)
    return json_response(ctx.state.create_eval(json_body(request)), 200 if ctx.flavor == "azure" else 201)


async def get_eval(request: web.Request) -> web.StreamResponse:
    return json_response(server_context(request).state.get_eval(request.match_info["eval_id"]))


async def update_eval(request: web.Request) -> web.StreamResponse:
    return json_response(
        server_context(request).state.update_eval(request.match_info["eval_id"], json_body(request))
    )


async def delete_eval(request: web.Request) -> web.StreamResponse:
    return json_response(server_context(request).state.delete_eval(request.match_info["eval_id"]))


async def list_runs(request: web.Request) -> web.StreamResponse:
    return json_response(
        server_context(request).state.list_runs(
            request.match_info["eval_id"], query(request), STATUS_OVERRIDE.get()
        )
    )


async def create_run(request: web.Request) -> web.StreamResponse:
    run = server_context(request).state.create_run(request.match_info["eval_id"], json_body(request))
    override = STATUS_OVERRIDE.get()
    if override is not None:
        run["status"] = override
    return json_response(run, 201)


async def get_run(request: web.Request) -> web.StreamResponse:
    info = request.match_info
    return json_response(
        server_context(request).state.get_run(info["eval_id"], info["run_id"], STATUS_OVERRIDE.get())
    )


async def cancel_run_plain(request: web.Request) -> web.StreamResponse:
    ctx = server_context(request)
    if not ctx.cancel_routes["plain"]:
        raise ApiError(
            405,
            f"Method Not Allowed: POST {request.path} is not supported; cancel with POST "
            ".../runs/{run_id}/cancel.",
            code="method_not_allowed",
        )
    return await _cancel(request)


async def cancel_run_suffix(request: web.Request) -> web.StreamResponse:
    ctx = server_context(request)
    if not ctx.cancel_routes["suffix"]:
        raise ApiError(404, f"Invalid URL (POST {request.path})", code="not_found")
    return await _cancel(request)


async def _cancel(request: web.Request) -> web.StreamResponse:
    info = request.match_info
    return json_response(
        server_context(request).state.cancel_run(info["eval_id"], info["run_id"], STATUS_OVERRIDE.get())
    )


async def delete_run(request: web.Request) -> web.StreamResponse:
    info = request.match_info
    return json_response(server_context(request).state.delete_run(info["eval_id"], info["run_id"]))


async def list_output_items(request: web.Request) -> web.StreamResponse:
    info = request.match_info
    return json_response(
        server_context(request).state.list_output_items(info["eval_id"], info["run_id"], query(request))
    )


async def get_output_item(request: web.Request) -> web.StreamResponse:
    info = request.match_info
    return json_response(
        server_context(request).state.get_output_item(info["eval_id"], info["run_id"], info["item_id"])
    )


async def create_file(request: web.Request) -> web.StreamResponse:
    """Files API upload (multipart ``purpose`` + ``file``), as clients send datasets too big to inline."""
    if request.content_type != "multipart/form-data":
        raise ApiError(400, "Uploads must be multipart/form-data with 'purpose' and 'file'.", param="file")
    # The middleware has read the body already; parse the cached bytes with the stdlib MIME parser.
    header = f"Content-Type: {request.headers['Content-Type']}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(header + RAW_BODY.get())
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            fields[name] = (part.get_filename(), payload)
    if "file" not in fields or "purpose" not in fields:
        raise ApiError(400, "Missing 'file' or 'purpose' in the upload.", param="file")
    filename, content = fields["file"]
    purpose = fields["purpose"][1].decode()
    return json_response(
        server_context(request).state.create_file(filename or "upload.jsonl", purpose, content)
    )


async def get_file(request: web.Request) -> web.StreamResponse:
    return json_response(server_context(request).state.get_file(request.match_info["file_id"]))


def add_api_routes(router: web.UrlDispatcher, root: str) -> None:
    ev = root + "/evals/{eval_id}"
    run = ev + "/runs/{run_id}"
    router.add_get(root + "/evals", list_evals, allow_head=False)
    router.add_post(root + "/evals", create_eval)
    router.add_get(ev, get_eval, allow_head=False)
    router.add_post(ev, update_eval)
    router.add_delete(ev, delete_eval)
    router.add_get(ev + "/runs", list_runs, allow_head=False)
    router.add_post(ev + "/runs", create_run)
    router.add_get(run, get_run, allow_head=False)
    router.add_post(run, cancel_run_plain)
    router.add_delete(run, delete_run)
    router.add_post(run + "/cancel", cancel_run_suffix)
    router.add_get(run + "/output_items", list_output_items, allow_head=False)
    router.add_get(run + "/output_items/{item_id}", get_output_item, allow_head=False)
    router.add_post(root + "/files", create_file)
    router.add_get(root + "/files/{file_id}", get_file, allow_head=False)

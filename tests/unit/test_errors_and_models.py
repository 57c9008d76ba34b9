"""Error bodies of both flavors (and proxies) and lenient parsing of what the service really sends."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_aoai_evals.api.errors import (
    EvalsAuthenticationError,
    EvalsNotFoundError,
    EvalsPermanentError,
    EvalsServerError,
    error_from_response,
)
from airflow_provider_aoai_evals.api.models import EvalRun, OutputItem, Page, is_terminal

#: The OpenAPI description's response examples, kept in the repository (origin and licence: its README).
SPEC_DIR = Path(__file__).resolve().parent.parent / "spec"


def test_openai_error_body() -> None:
    body = json.dumps(
        {
            "error": {
                "message": "Invalid API key",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_api_key",
            }
        }
    )
    err = error_from_response(401, {"x-request-id": "req_1"}, body.encode(), method="GET", path="/evals")
    assert isinstance(err, EvalsAuthenticationError)
    assert (err.status_code, err.request_id, err.code, err.message) == (
        401,
        "req_1",
        "invalid_api_key",
        "Invalid API key",
    )
    assert str(err) == "GET /evals HTTP 401: Invalid API key (code=invalid_api_key, request_id=req_1)"


def test_azure_unwrapped_error_and_apim_request_id() -> None:
    body = b'{"code": "notFound", "message": "Evaluation Run with ID x not found."}'
    err = error_from_response(404, {"apim-request-id": "abc"}, body, method="GET", path="/evals/e/runs/x")
    assert isinstance(err, EvalsNotFoundError) and err.request_id == "abc" and err.code == "notFound"
    assert "not found" in err.message


@pytest.mark.parametrize(
    ("status", "transient"), [(400, False), (418, False), (429, True), (500, True), (599, True)]
)
def test_status_classes(status: int, transient: bool) -> None:
    assert error_from_response(status, {}, b"", method="GET", path="/").transient is transient


def test_proxy_html_body() -> None:
    err = error_from_response(502, {}, b"<html><body>Bad gateway</body></html>", method="GET", path="/")
    assert (
        isinstance(err, EvalsServerError) and "non-JSON body" in err.message and "Bad gateway" in err.message
    )
    assert isinstance(error_from_response(403, {}, b"", method="GET", path="/"), EvalsPermanentError)


def test_run_parses_nulls_unknown_fields_and_skipped() -> None:
    run = EvalRun.model_validate(
        {
            "id": "evalrun_1",
            "status": "completed",
            "error": None,
            "per_model_usage": None,
            "per_testing_criteria_results": None,
            "result_counts": {"total": 3, "passed": 1, "failed": 1, "errored": 0, "skipped": 1},
            "brand_new_field": {"x": 1},
        }
    )
    assert run.result_counts and run.result_counts.skipped == 1
    assert run.model_extra == {"brand_new_field": {"x": 1}} and run.is_terminal


def test_unknown_status_is_not_terminal_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    assert not is_terminal("waiting_for_capacity")
    assert not is_terminal("waiting_for_capacity")
    assert [r.getMessage() for r in caplog.records].count(
        "Eval run status 'waiting_for_capacity' is not one this provider knows; treating it as not finished"
    ) == 1
    assert not is_terminal("queued") and is_terminal("canceled")


def load_examples() -> dict[str, Any]:
    path = SPEC_DIR / "openai-evals.examples.json"
    operations: dict[str, Any] = json.loads(path.read_text())["operations"]
    return operations


def example(op: dict[str, Any]) -> Any:
    return op.get("response") or json.loads(op["response_raw"].replace(",\n  }", "\n  }"))


@pytest.mark.parametrize("operation", ["getEvalRun", "cancelEvalRun", "createEvalRun"])
def test_doc_examples_of_runs_parse(operation: str) -> None:
    run = EvalRun.model_validate(example(load_examples()[operation]))
    assert run.id.startswith("evalrun_") and run.status


def test_doc_examples_of_lists_and_items_parse() -> None:
    ops = load_examples()
    runs = Page[EvalRun].model_validate(ops["getEvalRuns"]["response"])
    assert runs.data and runs.data[0].result_counts is not None
    items = Page[OutputItem].model_validate(ops["getEvalRunOutputItems"]["response"])
    assert items.data and items.data[0].results
    assert OutputItem.model_validate(ops["getEvalRunOutputItem"]["response"]).status in ("pass", "fail")


def test_response_bodies_parse_from_bytes_and_map_failures() -> None:
    from airflow_provider_aoai_evals.api.auth import ApiKeyAuth
    from airflow_provider_aoai_evals.api.errors import EvalsPermanentError
    from airflow_provider_aoai_evals.api.operations import Operations
    from airflow_provider_aoai_evals.api.settings import ClientSettings
    from airflow_provider_aoai_evals.api.wire import read_answer as _result

    ops = Operations(ClientSettings.build(flavor="openai", base_url=None, auth=ApiKeyAuth("k")))
    call = ops.get_run("eval_1", "evalrun_1")
    headers = {"x-request-id": "req_9"}
    assert _result(call, 200, headers, b'{"id": "evalrun_1", "status": "queued"}', {}).status == "queued"
    with pytest.raises(EvalsServerError, match="not valid JSON") as info:
        _result(call, 200, headers, b'{"id": "evalrun_1", "sta', {})
    assert info.value.transient and info.value.request_id == "req_9"
    with pytest.raises(EvalsPermanentError, match="unexpected shape"):
        _result(call, 200, headers, b'{"status": "queued"}', {})  # no id: not a run


def test_whether_a_request_went_out_is_read_from_urllib3s_exception_types() -> None:
    """A create without an idempotency key is retried only when nothing reached the server, so the answer
    must come from what urllib3 raised (wrapped by requests), whatever the message says."""
    import requests
    import urllib3

    from airflow_provider_aoai_evals.api.sync_client import _request_sent

    pool = urllib3.HTTPConnectionPool("api.invalid")

    def wrapped(reason: Exception) -> requests.exceptions.ConnectionError:
        return requests.exceptions.ConnectionError(
            urllib3.exceptions.MaxRetryError(pool, "/v1/evals", reason)
        )

    refused = urllib3.exceptions.NewConnectionError(pool, "Connection sent nothing")  # type: ignore[arg-type]
    no_dns = urllib3.exceptions.NameResolutionError("api.invalid", pool, OSError("nope"))  # type: ignore[arg-type]
    connect_timeout = urllib3.exceptions.ConnectTimeoutError(pool, "connect timed out")
    assert not _request_sent(wrapped(refused))
    assert not _request_sent(wrapped(no_dns))
    assert not _request_sent(wrapped(connect_timeout))
    # A message that reads like a failed connect does not make a broken response one.
    reset = urllib3.exceptions.ProtocolError(
        "Failed to establish... no: reset", ConnectionResetError(104, "reset")
    )
    assert _request_sent(requests.exceptions.ConnectionError(reset))
    assert _request_sent(requests.exceptions.ChunkedEncodingError(reset))

"""Bad input fails before any request, naming the parameter; a canary key never leaks anywhere."""

from __future__ import annotations

import logging
import traceback
from typing import Any

import pytest

from airflow_provider_aoai_evals.api.auth import ApiKeyAuth
from airflow_provider_aoai_evals.api.errors import EvalsAPIError, EvalsConfigError
from airflow_provider_aoai_evals.api.settings import ClientSettings
from airflow_provider_aoai_evals.testing import FakeEvalsServer, Fault, RunScript

from .conftest import CANARY_KEY, ClientFactory, make_settings, rows

BAD_IDS = ["", "a/b", "..", "x..y", "id?x=1", "id#frag", "has space", "tab\tid", "new\nline", "%2F", "é"]


@pytest.mark.parametrize("bad", BAD_IDS)
@pytest.mark.parametrize(
    ("call", "parameter"),
    [
        (lambda c, bad: c.get_eval(bad), "eval_id"),
        (lambda c, bad: c.get_run("eval_ok", bad), "run_id"),
        (lambda c, bad: c.cancel_run(bad, "run_ok"), "eval_id"),
        (lambda c, bad: c.delete_run("eval_ok", bad), "run_id"),
        (lambda c, bad: c.list_runs(bad), "eval_id"),
        (lambda c, bad: c.list_output_items("eval_ok", bad), "run_id"),
        (lambda c, bad: c.get_output_item("eval_ok", "run_ok", bad), "output_item_id"),
        (lambda c, bad: c.create_run(bad, data_source=rows(1)), "eval_id"),
    ],
)
def test_bad_ids_fail_before_any_request(
    client: Any, server: FakeEvalsServer, call: Any, parameter: str, bad: str
) -> None:
    with pytest.raises(EvalsConfigError) as info:
        call(client, bad)
    assert info.value.parameter == parameter and parameter in str(info.value)
    assert server.count() == 0


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"data_source": {"type": "csv"}}, "data_source"),
        (
            {"data_source": {"type": "jsonl", "source": {"type": "file_content", "content": [{"x": 1}]}}},
            "data_source",
        ),
        ({"data_source": {"type": "jsonl", "source": {"type": "file_id"}}}, "data_source"),
        ({"data_source": "rows.jsonl"}, "data_source"),
        ({"data_source": rows(1), "metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"data_source": rows(1), "metadata": {"k": "v" * 513}}, "metadata"),
        (
            {"data_source": rows(1), "metadata": {f"k{i}": "v" for i in range(16)}, "idempotency_key": "key"},
            "metadata",
        ),
    ],
)
def test_bad_create_run_input(
    client: Any, server: FakeEvalsServer, kwargs: dict[str, Any], parameter: str
) -> None:
    with pytest.raises(EvalsConfigError) as info:
        client.create_run("eval_ok", **kwargs)
    assert info.value.parameter == parameter
    assert server.count() == 0


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"order": "newest"}, "order"),
        ({"status": "failed"}, "status"),
        ({"after": "a/b"}, "after"),
    ],
)
def test_bad_list_arguments(
    client: Any, server: FakeEvalsServer, kwargs: dict[str, Any], parameter: str
) -> None:
    with pytest.raises(EvalsConfigError) as info:
        client.list_output_items("eval_ok", "run_ok", **kwargs)
    assert info.value.parameter == parameter and server.count() == 0


@pytest.mark.parametrize(
    ("build", "parameter"),
    [
        (lambda: ClientSettings.build(flavor="vertex", base_url=None, auth=ApiKeyAuth("k")), "flavor"),
        (lambda: ClientSettings.build(flavor="azure", base_url=None, auth=ApiKeyAuth("k")), "host"),
        (lambda: ClientSettings.build(flavor="azure", base_url="", auth=ApiKeyAuth("k")), "host"),
        (lambda: ApiKeyAuth(""), "api_key"),
        (lambda: ApiKeyAuth("sk-with\nnewline"), "api_key"),
        (
            lambda: ClientSettings.build(
                flavor="openai", base_url="http://api.example.com/v1", auth=ApiKeyAuth("k")
            ),
            "host",
        ),
        (
            lambda: ClientSettings.build(flavor="azure", base_url="http://10.0.0.5", auth=ApiKeyAuth("k")),
            "host",
        ),
        (lambda: ClientSettings.build(flavor="openai", base_url="ftp://x", auth=ApiKeyAuth("k")), "host"),
        (
            lambda: ClientSettings.build(
                flavor="azure",
                base_url="https://r.openai.azure.com",
                auth=ApiKeyAuth("k"),
                api_version="2025-04-01-preview",
            ),
            "api_version",
        ),
        (
            lambda: ClientSettings.build(
                flavor="openai", base_url=None, auth=ApiKeyAuth("k"), api_version="v1"
            ),
            "api_version",
        ),
        (
            lambda: ClientSettings.build(
                flavor="openai", base_url=None, auth=ApiKeyAuth("k"), read_timeout=0
            ),
            "read_timeout",
        ),
    ],
)
def test_bad_settings_name_the_parameter(build: Any, parameter: str) -> None:
    with pytest.raises(EvalsConfigError) as info:
        build()
    assert info.value.parameter == parameter and repr(parameter) in str(info.value)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/v1", "http://localhost:1/v1", "http://[::1]:9/v1"])
def test_plain_http_is_allowed_to_loopback_only(url: str) -> None:
    assert ClientSettings.build(flavor="openai", base_url=url, auth=ApiKeyAuth("k")).api_root == url


def test_canary_key_never_leaks(
    server: FakeEvalsServer, make_client: ClientFactory, eval_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # includes urllib3's and aiohttp's own debug lines
    settings = make_settings(server)
    client = make_client(settings)
    seen: list[str] = [repr(settings), repr(settings.auth), repr(client), str(settings)]
    server.inject(Fault(kind="status", status=503, count=2))
    run = client.create_run(eval_id, data_source=rows(2), idempotency_key="k")
    seen.append(repr(run))
    for fault in (
        Fault(kind="status", status=401, count=None),
        Fault(kind="html", count=None),
        Fault(kind="drop_after", count=None),
    ):
        server.clear_faults()
        server.inject(fault)
        with pytest.raises(EvalsAPIError) as info:
            client.get_run(eval_id, run.id)
        seen += [str(info.value), repr(info.value), "".join(traceback.format_exception(info.value))]
    bad = make_client(make_settings(server, key="sk-wrong-" + CANARY_KEY[::-1]))
    with pytest.raises(EvalsAPIError) as info:
        bad.get_eval(eval_id)
    seen += [str(info.value), repr(info.value)]
    seen += [r.getMessage() for r in caplog.records] + [caplog.text]
    seen += [repr(r.headers) for r in server.requests]
    assert caplog.records, "the faults above must have been logged"
    for text in seen:
        assert CANARY_KEY not in text
        assert CANARY_KEY[::-1] not in text


def test_data_source_contents_stay_out_of_reprs(client: Any, server: FakeEvalsServer, eval_id: str) -> None:
    source = {
        "type": "jsonl",
        "source": {"type": "file_content", "content": [{"item": {"secret_row": "PII-123"}}]},
    }
    server.script_next_runs(RunScript(queued_seconds=60))
    run = client.create_run(eval_id, data_source=source)
    assert run.data_source is not None  # it is there for whoever asks for it...
    assert "PII-123" not in repr(run) and "PII-123" not in str(run)  # ...but not printed

"""EvalsHook from real Airflow connections (URI and JSON env vars) against FakeEvalsServer."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator

import pytest

from airflow_provider_aoai_evals.api.client import AsyncEvalsClient, EvalsClient
from airflow_provider_aoai_evals.api.errors import EvalsConfigError
from airflow_provider_aoai_evals.hooks.evals import EvalsHook
from airflow_provider_aoai_evals.testing import FakeEvalsServer

KEY = "sk-hook-canary-0b1c2d3e"

pytestmark = pytest.mark.compat


@pytest.fixture(params=["openai", "azure"])
def server(request: pytest.FixtureRequest) -> Iterator[FakeEvalsServer]:
    with FakeEvalsServer(flavor=request.param, api_key=KEY) as srv:
        yield srv


def json_conn(server: FakeEvalsServer, **extra: object) -> str:
    return json.dumps(
        {
            "conn_type": "aoai_evals",
            "host": server.base_url,
            "password": KEY,
            "extra": {"flavor": server.flavor, **extra},
        }
    )


def uri_conn(server: FakeEvalsServer, key: str = KEY) -> str:
    # aoai-evals://:KEY@127.0.0.1:PORT/v1?flavor=...&scheme=http -> host, port, schema and extras.
    schema = "v1" if server.flavor == "openai" else ""
    return f"aoai-evals://:{key}@127.0.0.1:{server.port}/{schema}?flavor={server.flavor}&scheme=http"


def test_uri_form_parses_into_airflow_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_AOAI_URI", f"aoai-evals://:{KEY}@api.openai.com/v1")
    conn = EvalsHook.get_connection("aoai_uri")
    assert (conn.host, conn.schema, conn.password) == ("api.openai.com", "v1", KEY)
    assert EvalsHook("aoai_uri").get_settings().api_root == "https://api.openai.com/v1"


@pytest.mark.parametrize("form", ["uri", "json"])
def test_both_connection_forms_reach_the_server(
    server: FakeEvalsServer, monkeypatch: pytest.MonkeyPatch, form: str
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_AOAI_T", uri_conn(server) if form == "uri" else json_conn(server))
    hook = EvalsHook(conn_id="aoai_t")
    assert hook.get_settings().api_root == server.api_root
    client = hook.get_conn()
    assert isinstance(client, EvalsClient) and hook.get_conn() is client
    eval_id = server.add_eval(name="e")["id"]
    assert client.get_eval(eval_id).id == eval_id
    assert KEY not in repr(hook.get_settings()) and KEY not in repr(client)


def test_default_connection_id(server: FakeEvalsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_AOAI_EVALS_DEFAULT", json_conn(server))
    assert EvalsHook().get_settings().api_root == server.api_root


def test_async_conn_reads_connection_without_blocking(
    server: FakeEvalsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_AOAI_A", json_conn(server))
    eval_id = server.add_eval(name="e")["id"]

    async def main() -> str:
        client = await EvalsHook("aoai_a").get_async_conn()
        assert isinstance(client, AsyncEvalsClient)
        async with client:
            return (await client.get_eval(eval_id)).id

    assert asyncio.run(main()) == eval_id


def test_bad_connection_names_field_and_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_AOAI_BAD",
        json.dumps({"conn_type": "aoai_evals", "password": KEY, "extra": {"flavor": "azure"}}),
    )
    with pytest.raises(EvalsConfigError) as info:
        EvalsHook("aoai_bad").get_conn()
    assert info.value.parameter == "host" and "aoai_bad" in str(info.value)


# -- test_connection: one cheap real call, advice a person can act on ---------------------------------------


def test_connection_ok(server: FakeEvalsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_AOAI_OK", json_conn(server))
    ok, message = EvalsHook("aoai_ok").test_connection()
    assert ok, message
    assert server.count("GET", "/evals$") == 1


def test_connection_bad_key(server: FakeEvalsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_AOAI_K", uri_conn(server, key="sk-wrong"))
    ok, message = EvalsHook("aoai_k").test_connection()
    assert not ok and "rejected" in message and "401" in message and "request_id=req_" in message
    assert "sk-wrong" not in message


def test_connection_wrong_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeEvalsServer(flavor="azure", api_key=KEY) as azure:
        # An OpenAI-flavored connection to an Azure endpoint root: /v1/evals does not exist there.
        monkeypatch.setenv(
            "AIRFLOW_CONN_AOAI_W", json.dumps({"conn_type": "aoai_evals", "host": azure.url, "password": KEY})
        )
        ok, message = EvalsHook("aoai_w").test_connection()
    assert not ok and "wrong endpoint" in message and "404" in message


def test_connection_missing_preview_header(monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeEvalsServer(flavor="azure", api_key=KEY) as azure:
        # Azure's /openai/v1 root with the openai flavor: no aoai-evals header is sent.
        conn = {"conn_type": "aoai_evals", "host": azure.api_root, "password": KEY}
        monkeypatch.setenv("AIRFLOW_CONN_AOAI_H", json.dumps(conn))
        ok, message = EvalsHook("aoai_h").test_connection()
    assert not ok and "aoai-evals: preview" in message and "flavor to 'azure'" in message


def test_connection_network_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket closes
    monkeypatch.setenv("AIRFLOW_CONN_AOAI_N", f"aoai-evals://:{KEY}@127.0.0.1:{port}/v1?scheme=http")
    ok, message = EvalsHook("aoai_n").test_connection()
    assert not ok and "Could not reach" in message and str(port) in message


def test_connection_invalid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_AOAI_I",
        json.dumps({"conn_type": "aoai_evals", "host": "http://evals.example.com", "password": KEY}),
    )
    ok, message = EvalsHook("aoai_i").test_connection()
    assert not ok and "'host'" in message and "https" in message

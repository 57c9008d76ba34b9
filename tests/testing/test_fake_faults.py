"""Each fault kind observably does what it says, seen by requests and by aiohttp clients."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest
import requests

from airflow_provider_aoai_evals.testing import FakeEvalsServer, Fault
from tests.testing.fake_helpers import Api, jsonl


def test_status_fault_with_retry_headers(server: FakeEvalsServer, api: Api) -> None:
    server.inject(Fault(kind="status", status=429, retry_after=2, retry_after_ms=1500, count=2))
    for _ in range(2):
        response = api.call("GET", "/evals")
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "2"
        assert response.headers["retry-after-ms"] == "1500"
        assert response.json()["error"]["message"]
        header = "apim-request-id" if server.flavor == "azure" else "x-request-id"
        assert response.headers[header].startswith("req_")
    assert api.call("GET", "/evals").status_code == 200
    assert server.pending_faults == []
    assert [r.status for r in server.requests] == [429, 429, 200]
    assert [r.fault for r in server.requests] == ["status", "status", None]


def test_status_fault_does_not_process(server: FakeEvalsServer, api: Api) -> None:
    ev = api.create_eval()
    server.inject(Fault(kind="status", status=503, method="POST", path_regex=r"/runs$"))
    assert api.call("GET", f"/evals/{ev['id']}/runs").status_code == 200  # not matched: GET
    assert api.call("POST", f"/evals/{ev['id']}/runs", json={"data_source": jsonl(1)}).status_code == 503
    assert api.ok("GET", f"/evals/{ev['id']}/runs")["data"] == []


def test_fault_matching_and_unlimited_count(server: FakeEvalsServer, api: Api) -> None:
    server.inject(Fault(kind="status", status=500, path_regex=r"^/evals/eval_x", count=None))
    for _ in range(3):
        assert api.call("GET", "/evals/eval_x1").status_code == 500
    assert api.call("GET", "/evals").status_code == 200
    server.clear_faults()
    assert api.call("GET", "/evals/eval_x1").status_code == 404
    with pytest.raises(ValueError):
        Fault(kind="explode")
    with pytest.raises(ValueError):
        Fault.from_dict({"kind": "status", "stauts": 500})


def test_slow_fault(server: FakeEvalsServer, api: Api) -> None:
    server.inject(Fault(kind="slow", delay=0.3))
    start = time.monotonic()
    assert api.call("GET", "/evals").status_code == 200
    assert time.monotonic() - start >= 0.3
    server.inject(Fault(kind="slow", delay=1.0))
    with pytest.raises(requests.exceptions.ReadTimeout):
        api.session.get(server.api_root + "/evals", headers=api.headers, timeout=0.2)


def test_drop_before_not_processed_requests(server: FakeEvalsServer, api: Api) -> None:
    ev = api.create_eval()
    server.inject(Fault(kind="drop_before", method="POST"))
    with pytest.raises(requests.exceptions.ConnectionError) as info:
        api.call("POST", f"/evals/{ev['id']}/runs", json={"data_source": jsonl(1)})
    assert "RemoteDisconnected" in repr(info.value) or "reset" in repr(info.value).lower()
    assert api.ok("GET", f"/evals/{ev['id']}/runs")["data"] == []
    assert server.requests[-2].dropped
    assert server.requests[-2].status is None


def test_drop_after_really_created_the_run(server: FakeEvalsServer, api: Api) -> None:
    ev = api.create_eval()
    server.inject(Fault(kind="drop_after", method="POST", path_regex=r"/runs$"))
    with pytest.raises(requests.exceptions.ConnectionError):
        api.call(
            "POST", f"/evals/{ev['id']}/runs", json={"data_source": jsonl(1), "metadata": {"key": "abc"}}
        )
    runs = api.ok("GET", f"/evals/{ev['id']}/runs")["data"]
    assert len(runs) == 1
    assert runs[0]["metadata"] == {"key": "abc"}
    assert server.count("POST", r"/runs$") == 1


def test_drops_seen_by_aiohttp(server: FakeEvalsServer, api: Api) -> None:
    ev = api.create_eval()
    # aiohttp's client silently retries an idempotent request once after a disconnect: drop it twice.
    server.inject(Fault(kind="drop_before", method="GET", count=2))
    server.inject(Fault(kind="drop_after", method="POST"))

    async def scenario() -> tuple[type, type, int]:
        async with aiohttp.ClientSession(headers=api.headers) as session:
            errors = []
            for method, path, body in (
                ("GET", "/evals", None),
                ("POST", f"/evals/{ev['id']}/runs", {"data_source": jsonl(2)}),
            ):
                try:
                    async with session.request(method, server.api_root + path, json=body) as response:
                        await response.read()
                except aiohttp.ClientError as exc:
                    errors.append(type(exc))
            async with session.get(server.api_root + f"/evals/{ev['id']}/runs") as response:
                runs = (await response.json())["data"]
            return errors[0], errors[1], len(runs)

    first, second, run_count = asyncio.run(scenario())
    assert issubclass(first, aiohttp.ServerDisconnectedError)
    assert issubclass(second, aiohttp.ServerDisconnectedError)
    assert run_count == 1
    assert [(r.method, r.dropped) for r in server.requests[1:4]] == [
        ("GET", True),
        ("GET", True),
        ("POST", True),
    ]


def test_html_fault(server: FakeEvalsServer, api: Api) -> None:
    server.inject(Fault(kind="html"))
    response = api.call("GET", "/evals")
    assert response.status_code == 502
    assert response.headers["Content-Type"].startswith("text/html")
    assert "<html>" in response.text
    with pytest.raises(ValueError):
        response.json()


def test_malformed_fault(server: FakeEvalsServer, api: Api) -> None:
    server.add_eval(name="x")
    server.inject(Fault(kind="malformed"))
    response = api.call("GET", "/evals")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)


def test_unknown_status_fault(server: FakeEvalsServer, api: Api) -> None:
    ev = api.create_eval()
    run = server.add_run(ev["id"])
    server.inject(Fault(kind="unknown_status", run_status="paused", count=3))
    assert api.ok("GET", f"/evals/{ev['id']}/runs/{run['id']}")["status"] == "paused"
    assert {r["status"] for r in api.ok("GET", f"/evals/{ev['id']}/runs")["data"]} == {"paused"}
    created = api.call("POST", f"/evals/{ev['id']}/runs", json={"data_source": jsonl(1)})
    assert created.status_code == 201
    assert created.json()["status"] == "paused"
    assert api.ok("GET", f"/evals/{ev['id']}/runs/{run['id']}")["status"] == "queued"


def test_faults_skip_control_routes(server: FakeEvalsServer, api: Api) -> None:
    server.inject(Fault(kind="status", status=500, count=None))
    assert requests.get(server.url + "/_fake/health", timeout=5).status_code == 200
    assert api.call("GET", "/evals").status_code == 500

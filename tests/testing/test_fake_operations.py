"""Every Evals operation in both flavors, over real HTTP: status codes, shapes, ids, headers, auth."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import pytest

from tests.testing.fake_helpers import FAST, Api

if TYPE_CHECKING:
    from airflow_provider_aoai_evals.testing import FakeEvalsServer

HEX32 = r"[0-9a-f]{32}"


def request_id_header(server: FakeEvalsServer) -> str:
    return "apim-request-id" if server.flavor == "azure" else "x-request-id"


def assert_error(server: FakeEvalsServer, body: dict, param: str | None = None) -> Any:
    error = body["error"]
    if server.flavor == "azure":
        assert set(error) == {"code", "message", "param", "type", "inner_error"}
        assert error["type"] == "error"
        assert error["inner_error"] == {}
    else:
        assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if param is not None:
        assert error["param"] == param
    return error


def test_addresses(server: FakeEvalsServer) -> None:
    assert server.url == f"http://127.0.0.1:{server.port}"
    if server.flavor == "openai":
        assert server.base_url == server.url + "/v1" == server.api_root
    else:
        assert server.base_url == server.url
        assert server.api_root == server.url + "/openai/v1"


def test_create_get_update_list_delete_eval(server: FakeEvalsServer, api: Api) -> None:
    response = api.call(
        "POST",
        "/evals",
        json={
            "name": "e1",
            "metadata": {"team": "qa"},
            "data_source_config": {"type": "custom", "item_schema": {"type": "object"}},
            "testing_criteria": [
                {"type": "string_check", "name": "exact", "input": "a", "reference": "b", "operation": "eq"}
            ],
        },
    )
    assert response.status_code == (200 if server.flavor == "azure" else 201)
    created = response.json()
    assert re.fullmatch(r"req_[0-9a-f]+", response.headers[request_id_header(server)])
    assert re.fullmatch("eval_" + HEX32, created["id"])
    assert created["object"] == "eval"
    assert created["name"] == "e1"
    assert created["metadata"] == {"team": "qa"}
    assert isinstance(created["created_at"], int)
    assert created["data_source_config"]["type"] == "custom"
    assert "schema" in created["data_source_config"]
    assert created["testing_criteria"][0]["id"].startswith("exact-")

    assert api.ok("GET", f"/evals/{created['id']}") == created
    updated = api.ok("POST", f"/evals/{created['id']}", json={"name": "e2", "metadata": {"team": "ml"}})
    assert updated["name"] == "e2"
    assert updated["metadata"] == {"team": "ml"}

    listing = api.ok("GET", "/evals")
    assert listing["object"] == "list"
    assert [e["id"] for e in listing["data"]] == [created["id"]]
    assert listing["first_id"] == listing["last_id"] == created["id"]
    assert listing["has_more"] is False

    deleted = api.ok("DELETE", f"/evals/{created['id']}")
    assert deleted == {"object": "eval.deleted", "deleted": True, "eval_id": created["id"]}
    missing = api.call("GET", f"/evals/{created['id']}")
    assert missing.status_code == 404
    assert_error(server, missing.json(), "eval_id")
    assert missing.headers[request_id_header(server)]


def test_run_operations(server: FakeEvalsServer, api: Api) -> None:
    ev = api.create_eval()
    response = api.call(
        "POST",
        f"/evals/{ev['id']}/runs",
        json={
            "name": "r1",
            "metadata": {"k": "v"},
            "data_source": {
                "type": "jsonl",
                "source": {"type": "file_content", "content": [{"item": {"input": "a"}}]},
            },
        },
    )
    assert response.status_code == 201
    run = response.json()
    assert re.fullmatch("evalrun_" + HEX32, run["id"])
    assert run["object"] == "eval.run"
    assert run["eval_id"] == ev["id"]
    assert run["status"] == "queued"
    assert run["name"] == "r1"
    assert run["metadata"] == {"k": "v"}
    assert run["error"] is None
    assert run["data_source"]["source"]["content"] == [{"item": {"input": "a"}}]
    if server.flavor == "openai":
        assert run["report_url"] == f"https://platform.openai.com/evaluations/{ev['id']}?run_id={run['id']}"
    else:
        assert run["report_url"].startswith("https://ai.azure.com/")
        assert run["id"] in run["report_url"]

    assert api.ok("GET", f"/evals/{ev['id']}/runs/{run['id']}")["id"] == run["id"]
    runs = api.ok("GET", f"/evals/{ev['id']}/runs")
    assert [r["id"] for r in runs["data"]] == [run["id"]]

    server.finish_run(run["id"])
    items = api.ok("GET", f"/evals/{ev['id']}/runs/{run['id']}/output_items")
    assert len(items["data"]) == 1
    item = api.ok("GET", f"/evals/{ev['id']}/runs/{run['id']}/output_items/{items['data'][0]['id']}")
    assert item == items["data"][0]
    assert item["datasource_item"] == {"input": "a"}
    assert item["run_id"] == run["id"]

    deleted = api.ok("DELETE", f"/evals/{ev['id']}/runs/{run['id']}")
    if server.flavor == "azure":
        assert deleted == {"object": "eval_run.deleted", "deleted": True, "eval_run_id": run["id"]}
    else:
        assert deleted == {"object": "eval.run.deleted", "deleted": True, "run_id": run["id"]}
    assert api.call("GET", f"/evals/{ev['id']}/runs/{run['id']}").status_code == 404


def test_not_found_everywhere(server: FakeEvalsServer, api: Api) -> None:
    ev = api.create_eval()
    run = server.add_run(ev["id"], FAST)
    paths = [
        ("GET", "/evals/eval_nope"),
        ("DELETE", "/evals/eval_nope"),
        ("POST", "/evals/eval_nope/runs"),
        ("GET", f"/evals/{ev['id']}/runs/evalrun_nope"),
        ("POST", f"/evals/{ev['id']}/runs/evalrun_nope/cancel"),
        ("GET", f"/evals/{ev['id']}/runs/evalrun_nope/output_items"),
        ("GET", f"/evals/{ev['id']}/runs/{run['id']}/output_items/outputitem_nope"),
        ("GET", "/no/such/route"),
    ]
    for method, path in paths:
        response = api.call(method, path, json={} if method == "POST" else None)
        assert response.status_code == 404, (method, path)
        assert_error(server, response.json())
    other = api.create_eval()
    assert api.call("GET", f"/evals/{other['id']}/runs/{run['id']}").status_code == 404  # run of another eval


def test_openai_auth(openai_server: FakeEvalsServer) -> None:
    api = Api(openai_server)
    for headers in (
        {},
        {"Authorization": "Bearer wrong-key-123456"},
        {"api-key": openai_server.api_key},
        {"Authorization": openai_server.api_key},
    ):
        response = api.call("GET", "/evals", headers=headers)
        assert response.status_code == 401, headers
        error = assert_error(openai_server, response.json())
        assert openai_server.api_key not in error["message"]
        assert response.headers["x-request-id"].startswith("req_")
    assert api.call("GET", "/evals").status_code == 200


def test_azure_auth_header_and_api_version(azure_server: FakeEvalsServer) -> None:
    api = Api(azure_server)
    key = azure_server.api_key
    preview = {"aoai-evals": "preview"}
    assert api.call("GET", "/evals", headers={"api-key": key, **preview}).status_code == 200
    assert api.call("GET", "/evals", headers={"Authorization": f"Bearer {key}", **preview}).status_code == 200
    entra = {"Authorization": "Bearer eyJ.fake.entra", **preview}
    assert api.call("GET", "/evals", headers=entra).status_code == 401
    azure_server.accepted_tokens.add("eyJ.fake.entra")
    assert api.call("GET", "/evals", headers=entra).status_code == 200

    for headers in ({**preview}, {"api-key": "nope", **preview}):
        response = api.call("GET", "/evals", headers=headers)
        assert response.status_code == 401
        assert_error(azure_server, response.json())
        assert response.headers["apim-request-id"].startswith("req_")

    response = api.call("GET", "/evals", headers={"api-key": key})
    assert response.status_code == 400
    assert "aoai-evals: preview" in assert_error(azure_server, response.json())["message"]

    for version in ("v1", "preview"):
        assert api.call("GET", "/evals", params={"api-version": version}).status_code == 200
    response = api.call("GET", "/evals", params={"api-version": "2025-04-01-preview"})
    assert response.status_code == 400
    error = assert_error(azure_server, response.json(), "api-version")
    assert "api-version" in error["message"]


def test_flavor_paths_are_separate(server: FakeEvalsServer, api: Api) -> None:
    other_root = "/openai/v1" if server.flavor == "openai" else "/v1"
    response = api.session.get(server.url + other_root + "/evals", headers=api.headers)
    assert response.status_code == 404


def test_create_run_validation(server: FakeEvalsServer, api: Api) -> None:
    ev = api.create_eval()
    path = f"/evals/{ev['id']}/runs"
    bad_bodies = [
        ({}, "data_source"),
        ({"data_source": {"type": "csv", "source": {}}}, "data_source.type"),
        ({"data_source": {"type": "jsonl"}}, "data_source.source"),
        (
            {"data_source": {"type": "jsonl", "source": {"type": "stored_completions"}}},
            "data_source.source.type",
        ),
        ({"data_source": {"type": "jsonl", "source": {"type": "file_id"}}}, "data_source.source.id"),
        (
            {"data_source": {"type": "jsonl", "source": {"type": "file_content", "content": [{"x": 1}]}}},
            "data_source.source.content[0].item",
        ),
    ]
    for body, param in bad_bodies:
        response = api.call("POST", path, json=body)
        assert response.status_code == 400, body
        assert_error(server, response.json(), param)
    for ds in (
        {"type": "jsonl", "source": {"type": "file_id", "id": "file-abc"}},
        {"type": "completions", "model": "gpt-4.1", "source": {"type": "stored_completions"}},
        {"type": "responses", "source": {"type": "responses"}},
    ):
        run = api.ok("POST", path, json={"data_source": ds})
        assert run["data_source"] == ds
    assert api.ok("GET", path, params={"limit": 100})["data"][1]["model"] == "gpt-4.1"


@pytest.mark.parametrize(
    ("metadata", "param"),
    [
        ({f"k{i}": "v" for i in range(17)}, "metadata"),
        ({"k" * 65: "v"}, "metadata." + "k" * 64),
        ({"k": "v" * 513}, "metadata.k"),
        ({"k": 5}, "metadata.k"),
    ],
)
def test_metadata_limits(server: FakeEvalsServer, api: Api, metadata: dict, param: str) -> None:
    ev = api.create_eval()
    response = api.call(
        "POST",
        f"/evals/{ev['id']}/runs",
        json={
            "data_source": {"type": "jsonl", "source": {"type": "file_id", "id": "f"}},
            "metadata": metadata,
        },
    )
    assert response.status_code == 400
    assert_error(server, response.json(), param)
    assert (
        api.call(
            "POST",
            "/evals",
            json={"metadata": metadata, "data_source_config": {"type": "logs"}, "testing_criteria": []},
        ).status_code
        == 400
    )
    ok = {f"k{i}": "v" * 512 for i in range(16)}
    assert (
        api.call(
            "POST",
            f"/evals/{ev['id']}/runs",
            json={"data_source": {"type": "jsonl", "source": {"type": "file_id", "id": "f"}}, "metadata": ok},
        ).status_code
        == 201
    )


def test_create_eval_validation(server: FakeEvalsServer, api: Api) -> None:
    for body, param in (
        ({"testing_criteria": []}, "data_source_config"),
        ({"data_source_config": {"type": "nope"}, "testing_criteria": []}, "data_source_config.type"),
        ({"data_source_config": {"type": "logs"}}, "testing_criteria"),
        (
            {"data_source_config": {"type": "logs"}, "testing_criteria": [{"type": "x"}]},
            "testing_criteria[0]",
        ),
    ):
        response = api.call("POST", "/evals", json=body)
        assert response.status_code == 400
        assert_error(server, response.json(), param)
    response = api.session.post(server.api_root + "/evals", data=b"{not json", headers=api.headers)
    assert response.status_code == 400


def test_request_ids_are_unique(server: FakeEvalsServer, api: Api) -> None:
    header = request_id_header(server)
    ids = {api.call("GET", "/evals").headers[header] for _ in range(20)}
    assert len(ids) == 20


def test_request_log_masks_secrets(server: FakeEvalsServer, api: Api) -> None:
    api.create_eval()
    api.call("GET", "/evals", params={"limit": "5"})
    api.call("GET", "/evals", headers={"Authorization": "Bearer leaked-secret"})
    records = server.requests
    assert [r.method for r in records] == ["POST", "GET", "GET"]
    assert records[0].json["name"] == "headlines"
    assert records[0].status in (200, 201)
    assert records[1].query == {"limit": "5"}
    assert records[1].api_path == "/evals"
    assert records[2].status == 401
    dumped = repr([r.to_dict() for r in records])
    assert server.api_key not in dumped
    assert "leaked-secret" not in dumped
    assert "***" in dumped
    assert server.count("GET", r"^/evals$") == 2
    assert server.count(path_regex="evals") == 3
    server.reset()
    assert server.requests == []
    assert api.ok("GET", "/evals")["data"] == []


def test_list_evals_ordering_and_paging(server: FakeEvalsServer, api: Api) -> None:
    ids = [server.add_eval(name=f"e{i}")["id"] for i in range(5)]
    assert [e["id"] for e in api.ok("GET", "/evals", params={"limit": 100})["data"]] == ids
    assert [e["id"] for e in api.ok("GET", "/evals", params={"order": "desc"})["data"]] == ids[::-1]
    page = api.ok("GET", "/evals", params={"limit": 2})
    assert page["has_more"] is True
    assert page["last_id"] == ids[1]
    page = api.ok("GET", "/evals", params={"limit": 2, "after": page["last_id"]})
    assert [e["id"] for e in page["data"]] == ids[2:4]
    api.ok("POST", f"/evals/{ids[0]}", json={"name": "touched"})
    by_update = api.ok("GET", "/evals", params={"order_by": "updated_at", "order": "desc"})
    assert by_update["data"][0]["id"] == ids[0]
    assert api.call("GET", "/evals", params={"order_by": "name"}).status_code == 400
    assert api.call("GET", "/evals", params={"order": "sideways"}).status_code == 400
    empty = api.ok("GET", "/evals", params={"after": ids[-1]})
    assert empty["data"] == []
    assert empty["has_more"] is False

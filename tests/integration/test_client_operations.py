"""Every operation over real HTTP, for both flavors and both transports."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_aoai_evals.api.auth import ApiKeyAuth
from airflow_provider_aoai_evals.api.errors import EvalsNotFoundError
from airflow_provider_aoai_evals.api.models import Eval, EvalRun, OutputItem
from airflow_provider_aoai_evals.api.settings import ClientSettings
from airflow_provider_aoai_evals.testing import FakeEvalsServer, RunScript

from .conftest import CRITERIA, DATA_SOURCE_CONFIG, ClientFactory, make_settings, rows


def test_eval_crud(client: Any, server: FakeEvalsServer) -> None:
    created = client.create_eval(
        name="sentiment",
        data_source_config=DATA_SOURCE_CONFIG,
        testing_criteria=CRITERIA,
        metadata={"team": "ml"},
    )
    assert isinstance(created, Eval) and created.id.startswith("eval_")
    assert created.name == "sentiment" and created.metadata == {"team": "ml"}

    fetched = client.get_eval(created.id)
    assert fetched.id == created.id and len(fetched.testing_criteria) == 2

    updated = client.update_eval(created.id, name="sentiment-v2", metadata={"team": "platform"})
    assert updated.name == "sentiment-v2" and updated.metadata == {"team": "platform"}

    listed = list(client.list_evals())
    assert [e.id for e in listed] == [created.id]

    deleted = client.delete_eval(created.id)
    assert deleted.deleted is True and deleted.eval_id == created.id
    with pytest.raises(EvalsNotFoundError) as info:
        client.get_eval(created.id)
    assert info.value.status_code == 404 and info.value.request_id


def test_run_lifecycle_and_items(client: Any, server: FakeEvalsServer, eval_id: str) -> None:
    server.script_next_runs(RunScript(queued_seconds=60, in_progress_seconds=60))
    run = client.create_run(eval_id, data_source=rows(7), name="nightly", metadata={"git_sha": "abc"})
    assert isinstance(run, EvalRun) and run.status == "queued" and not run.is_terminal
    assert run.metadata == {"git_sha": "abc"} and run.report_url

    server.set_run_status(run.id, "in_progress")
    assert client.get_run(eval_id, run.id).status == "in_progress"
    server.finish_run(run.id)
    done = client.get_run(eval_id, run.id)
    assert done.status == "completed" and done.is_terminal
    assert done.result_counts is not None and done.result_counts.total == 7
    assert done.result_counts.passed + done.result_counts.failed + done.result_counts.errored == 7
    assert {r.testing_criteria.rsplit("-", 5)[0] for r in done.per_testing_criteria_results or []} == {
        "exact",
        "tone",
    }

    assert [r.id for r in client.list_runs(eval_id)] == [run.id]
    assert [r.id for r in client.list_runs(eval_id, status="completed")] == [run.id]
    assert list(client.list_runs(eval_id, status="queued")) == []

    items = list(client.list_output_items(eval_id, run.id))
    assert len(items) == 7 and all(isinstance(i, OutputItem) for i in items)
    failing = list(client.list_output_items(eval_id, run.id, status="fail"))
    assert len(failing) == done.result_counts.failed and all(i.status == "fail" for i in failing)
    one = client.get_output_item(eval_id, run.id, items[0].id)
    assert one.id == items[0].id and one.results

    deleted = client.delete_run(eval_id, run.id)
    assert deleted.deleted is True
    assert (deleted.run_id or deleted.eval_run_id) == run.id


def test_cancel_uses_flavor_route_then_falls_back(client: Any, server: FakeEvalsServer, eval_id: str) -> None:
    server.script_next_runs(RunScript(queued_seconds=600), count=3)
    first = client.create_run(eval_id, data_source=rows(2))
    assert client.cancel_run(eval_id, first.id).status == "canceled"
    own_route = "/cancel" if server.flavor == "openai" else r"/runs/[^/]+$"
    assert server.count("POST", own_route) == 1

    # Switch the flavor's own route off: the client must fall back to the other one.
    server.disable_cancel_route("suffix" if server.flavor == "openai" else "plain")
    second = client.create_run(eval_id, data_source=rows(2))
    assert client.cancel_run(eval_id, second.id).status == "canceled"

    # Both off: the original 404/405 surfaces, naming the status.
    server.disable_cancel_route("plain" if server.flavor == "openai" else "suffix")
    third = client.create_run(eval_id, data_source=rows(2))
    with pytest.raises(EvalsNotFoundError) as info:
        client.cancel_run(eval_id, third.id)
    assert info.value.status_code in (404, 405)


@pytest.mark.parametrize("limit", [None, 20, 100])
def test_every_page_of_a_250_item_list(
    client: Any, server: FakeEvalsServer, eval_id: str, limit: int | None
) -> None:
    run = server.add_run(eval_id, RunScript(queued_seconds=0, in_progress_seconds=0, output_items=250))
    items = list(client.list_output_items(eval_id, run["id"], limit=limit))
    ids = [i.id for i in items]
    assert len(ids) == 250 and len(set(ids)) == 250
    pages = -(-250 // (limit or 100))
    assert server.count("GET", "/output_items$") == pages

    newest_first = [i.id for i in client.list_output_items(eval_id, run["id"], order="desc", limit=limit)]
    assert sorted(newest_first) == sorted(ids)


def test_list_runs_pages_through_250_runs(client: Any, server: FakeEvalsServer, eval_id: str) -> None:
    created = {server.add_run(eval_id)["id"] for _ in range(250)}
    assert {r.id for r in client.list_runs(eval_id, limit=100)} == created
    assert server.count("GET", "/runs$") == 3


def test_unknown_status_parses_and_is_not_terminal(
    client: Any, server: FakeEvalsServer, eval_id: str
) -> None:
    run = server.add_run(eval_id)
    server.set_run_status(run["id"], "paused_for_maintenance")
    fetched = client.get_run(eval_id, run["id"])
    assert fetched.status == "paused_for_maintenance" and not fetched.is_terminal


def test_organization_project_and_preview_headers(
    server: FakeEvalsServer, make_client: ClientFactory
) -> None:
    extra: dict[str, Any] = (
        {"organization": "org-1", "project": "proj-1"}
        if server.flavor == "openai"
        else {"api_version": "preview"}
    )
    client = make_client(make_settings(server, **extra))
    list(client.list_evals())
    record = server.requests[-1]
    headers = {k.lower(): v for k, v in record.headers.items()}
    if server.flavor == "openai":
        assert headers["openai-organization"] == "org-1" and headers["openai-project"] == "proj-1"
        assert "aoai-evals" not in headers
    else:
        assert headers["aoai-evals"] == "preview" and record.query.get("api-version") == "preview"


def test_environment_proxy_settings_are_read_once_and_honour_no_proxy(
    server: FakeEvalsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_aoai_evals.api.async_client import _proxy_for
    from airflow_provider_aoai_evals.api.client import EvalsClient

    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    client = EvalsClient(make_settings(server))
    assert client._session.proxies == {} and client._session.trust_env is False
    list(client.list_evals())  # reaches the loopback server directly
    monkeypatch.setenv("NO_PROXY", "")
    remote = ClientSettings.build(flavor="openai", base_url=None, auth=ApiKeyAuth("k"))
    proxied = EvalsClient(remote)
    assert proxied._session.proxies.get("https") == "http://proxy.invalid:3128"
    # The async client reads the same environment once per connection pool (its sessions do not).
    assert _proxy_for(remote) == "http://proxy.invalid:3128"
    monkeypatch.setenv("NO_PROXY", "api.openai.com")
    assert _proxy_for(remote) is None

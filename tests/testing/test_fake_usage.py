"""per_model_usage on the fake: tokens per graded item set per run, and (opt-in) reported while a run goes."""

from __future__ import annotations

import time

import pytest
import requests

from airflow_provider_aoai_evals.testing import FakeEvalsServer, RunScript
from airflow_provider_aoai_evals.testing.errors import ApiError
from tests.testing.fake_helpers import Api


def test_usage_grows_while_the_run_goes_when_asked(server: FakeEvalsServer, api: Api) -> None:
    ev = api.create_eval()
    script = RunScript(
        queued_seconds=0.2,
        in_progress_seconds=0.8,
        output_items=40,
        usage_while_running=True,
        prompt_tokens_per_item=90,
        completion_tokens_per_item=10,
    )
    run = server.add_run(ev["id"], script)
    path = f"/evals/{ev['id']}/runs/{run['id']}"
    assert run["status"] == "queued" and run["per_model_usage"] == []  # nothing graded yet
    seen: list[int] = []
    while (now := api.ok("GET", path))["status"] != "completed":
        if now["status"] == "in_progress" and now["per_model_usage"]:
            [usage] = now["per_model_usage"]
            assert usage["total_tokens"] == usage["invocation_count"] * 100
            assert usage["invocation_count"] == now["result_counts"]["total"]
            seen.append(usage["total_tokens"])
        time.sleep(0.05)
    assert len(seen) >= 3 and seen == sorted(seen) and seen[0] < seen[-1] < 4000
    assert now["per_model_usage"][0]["total_tokens"] == 40 * 100


def test_by_default_usage_is_null_until_the_run_ends_with_the_old_figures(
    server: FakeEvalsServer, api: Api
) -> None:
    ev = api.create_eval()
    run = server.add_run(ev["id"], RunScript(queued_seconds=0, in_progress_seconds=600, output_items=10))
    time.sleep(0.05)
    assert server.get_run(run["id"])["per_model_usage"] is None
    [usage] = server.finish_run(run["id"])["per_model_usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == (600, 20, 620)


def test_a_canceled_run_keeps_the_usage_of_what_was_graded(server: FakeEvalsServer, api: Api) -> None:
    ev = api.create_eval()
    script = RunScript(queued_seconds=0, in_progress_seconds=1.0, output_items=100, usage_while_running=True)
    run = server.add_run(ev["id"], script)
    time.sleep(0.3)
    canceled = api.ok("POST", f"/evals/{ev['id']}/runs/{run['id']}/cancel")
    graded = canceled["result_counts"]["total"]
    assert canceled["status"] == "canceled" and 0 < graded < 100
    assert canceled["per_model_usage"][0]["total_tokens"] == graded * 62


def test_tokens_per_item_through_the_control_api(openai_server: FakeEvalsServer) -> None:
    ev = Api(openai_server).create_eval()
    answer = requests.post(
        openai_server.url + "/_fake/runs",
        json={
            "eval_id": ev["id"],
            "script": {
                "queued_seconds": 0,
                "in_progress_seconds": 0,
                "output_items": 3,
                "prompt_tokens_per_item": 1000,
            },
        },
        timeout=5,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["per_model_usage"][0]["total_tokens"] == 3 * 1002
    bad = requests.post(
        openai_server.url + "/_fake/runs",
        json={"eval_id": ev["id"], "script": {"completion_tokens_per_item": -1}},
        timeout=5,
    )
    assert bad.status_code == 400 and "completion_tokens_per_item" in bad.text


@pytest.mark.parametrize(
    "bad", [{"prompt_tokens_per_item": 1.5}, {"prompt_tokens_per_item": True}, {"usage_while_running": "yes"}]
)
def test_bad_usage_options_are_refused_where_written(bad: dict[str, object]) -> None:
    with pytest.raises(ApiError):
        RunScript(**bad)  # type: ignore[arg-type]

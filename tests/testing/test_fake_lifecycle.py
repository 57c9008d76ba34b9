"""Run lifecycle: scripted timings, forced transitions, cancel on both routes, scripted results."""

from __future__ import annotations

import time
from typing import Any

import pytest

from airflow_provider_aoai_evals.testing import FakeEvalsServer, RunScript
from tests.testing.fake_helpers import FAST, Api, jsonl


def wait_for(api: Api, path: str, status: str, timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        run = api.ok("GET", path)
        if run["status"] == status or time.monotonic() > deadline:
            return run
        time.sleep(0.02)


def test_queued_in_progress_completed(server: FakeEvalsServer, api: Api) -> None:
    ev = api.create_eval()
    server.script_next_runs(RunScript(queued_seconds=0.15, in_progress_seconds=0.3))
    run = api.create_run(ev["id"], rows=9)
    path = f"/evals/{ev['id']}/runs/{run['id']}"
    assert run["status"] == "queued"
    assert run["per_testing_criteria_results"] is None
    assert run["per_model_usage"] is None
    assert run["result_counts"] == {"total": 0, "errored": 0, "failed": 0, "passed": 0}
    assert wait_for(api, path, "in_progress")["status"] == "in_progress"
    done = wait_for(api, path, "completed")
    assert done["status"] == "completed"
    assert done["error"] is None
    assert done["result_counts"] == {"total": 9, "errored": 0, "failed": 3, "passed": 6}
    by_name = {r["testing_criteria"].rsplit("-", 5)[0]: r for r in done["per_testing_criteria_results"]}
    assert by_name["exact"]["passed"] == 6
    assert by_name["exact"]["failed"] == 3
    assert by_name["loose"]["passed"] == 9
    assert by_name["loose"]["failed"] == 0
    assert done["per_model_usage"][0]["invocation_count"] == 9
    items = api.ok("GET", path + "/output_items", params={"limit": 100})["data"]
    assert len(items) == 9
    assert sum(i["status"] == "fail" for i in items) == 3
    assert [i["datasource_item"] for i in items] == [row["item"] for row in jsonl(9)["source"]["content"]]
    for item in items:
        assert [r["name"] for r in item["results"]] == [c["id"] for c in ev["testing_criteria"]]
        assert item["results"][0]["passed"] is (item["status"] == "pass")


def test_default_script_for_api_runs(server: FakeEvalsServer, api: Api) -> None:
    assert server.default_script == RunScript()  # queued 0.5 s, in progress 2 s, then completed
    server.default_script = RunScript(
        queued_seconds=0,
        in_progress_seconds=0,
        final_status="failed",
        error={"code": "bad_grader", "message": "grader exploded"},
    )
    ev = api.create_eval()
    run = api.create_run(ev["id"])
    assert run["status"] == "failed"
    assert run["error"] == {"code": "bad_grader", "message": "grader exploded"}


def test_script_queue_is_fifo_then_default(server: FakeEvalsServer, api: Api) -> None:
    ev = api.create_eval()
    server.script_next_runs(
        RunScript(queued_seconds=0, in_progress_seconds=0, final_status="canceled"), count=2
    )
    server.script_next_runs(RunScript(queued_seconds=0, in_progress_seconds=0, final_status="paused"))
    statuses = [api.create_run(ev["id"])["status"] for _ in range(4)]
    assert statuses == ["canceled", "canceled", "paused", "queued"]


def test_failed_run_has_default_error(server: FakeEvalsServer, api: Api) -> None:
    ev = api.create_eval()
    run = server.add_run(ev["id"], RunScript(queued_seconds=0, in_progress_seconds=0, final_status="failed"))
    assert run["status"] == "failed"
    assert set(run["error"]) == {"code", "message"}


def test_forced_status_and_finish(server: FakeEvalsServer, api: Api) -> None:
    ev = api.create_eval()
    run = server.add_run(ev["id"], RunScript(queued_seconds=60, in_progress_seconds=60, output_items=10))
    path = f"/evals/{ev['id']}/runs/{run['id']}"
    assert api.ok("GET", path)["status"] == "queued"
    server.set_run_status(run["id"], "in_progress")
    assert api.ok("GET", path)["status"] == "in_progress"
    server.set_run_status(run["id"], "weird_new_state")
    assert api.ok("GET", path)["status"] == "weird_new_state"
    finished = server.finish_run(run["id"])
    assert finished["status"] == "completed"
    assert finished["result_counts"]["total"] == 10
    assert api.ok("GET", path)["status"] == "completed"
    assert server.get_run(run["id"])["status"] == "completed"
    server.finish_run(run["id"], "failed")
    assert api.ok("GET", path)["error"] is not None


@pytest.mark.parametrize("route", ["plain", "suffix"])
def test_cancel_routes(server: FakeEvalsServer, api: Api, route: str) -> None:
    ev = api.create_eval()
    run = server.add_run(ev["id"], RunScript(queued_seconds=60))
    path = f"/evals/{ev['id']}/runs/{run['id']}" + ("/cancel" if route == "suffix" else "")
    canceled = api.ok("POST", path)
    assert canceled["status"] == "canceled"
    assert canceled["id"] == run["id"]
    assert api.ok("GET", f"/evals/{ev['id']}/runs/{run['id']}")["status"] == "canceled"
    # Canceling a terminal run answers 200 with the run unchanged.
    again = api.call("POST", path)
    assert again.status_code == 200
    assert again.json()["status"] == "canceled"
    done = server.add_run(ev["id"], FAST)
    assert api.ok("POST", f"/evals/{ev['id']}/runs/{done['id']}")["status"] == "completed"


def test_cancel_routes_switched_off(server: FakeEvalsServer, api: Api) -> None:
    ev = api.create_eval()
    run = server.add_run(ev["id"], RunScript(queued_seconds=60))
    base = f"/evals/{ev['id']}/runs/{run['id']}"
    server.disable_cancel_route("suffix")
    response = api.call("POST", base + "/cancel")
    assert response.status_code == 404
    assert "error" in response.json()
    server.disable_cancel_route("plain")
    response = api.call("POST", base)
    assert response.status_code == 405
    assert "error" in response.json()
    assert api.ok("GET", base)["status"] == "queued"  # neither attempt canceled it
    server.enable_cancel_route("suffix")
    assert api.ok("POST", base + "/cancel")["status"] == "canceled"
    with pytest.raises(ValueError):
        server.disable_cancel_route("sideways")


def test_cancel_freezes_partial_items(server: FakeEvalsServer, api: Api) -> None:
    ev = api.create_eval()
    run = server.add_run(ev["id"], RunScript(queued_seconds=0, in_progress_seconds=100, output_items=1000))
    time.sleep(0.3)
    canceled = api.ok("POST", f"/evals/{ev['id']}/runs/{run['id']}/cancel")
    total = canceled["result_counts"]["total"]
    assert 0 < total < 1000
    items = api.ok("GET", f"/evals/{ev['id']}/runs/{run['id']}/output_items", params={"limit": 100})
    assert len(items["data"]) == min(total, 100)


def test_explicit_results_and_no_results(server: FakeEvalsServer, api: Api) -> None:
    ev = api.create_eval()
    empty = server.add_run(
        ev["id"],
        RunScript(queued_seconds=0, in_progress_seconds=0, output_items=0, per_testing_criteria_results=[]),
    )
    assert empty["status"] == "completed"
    assert empty["per_testing_criteria_results"] == []
    assert empty["result_counts"]["total"] == 0
    nulls = server.add_run(ev["id"], RunScript(queued_seconds=0, in_progress_seconds=0, null_results=True))
    assert nulls["per_testing_criteria_results"] is None
    assert nulls["per_model_usage"] is None
    explicit = server.add_run(
        ev["id"],
        RunScript(
            queued_seconds=0,
            in_progress_seconds=0,
            output_items=4,
            result_counts={"total": 10, "errored": 1, "failed": 2, "passed": 7, "skipped": 3},
            per_testing_criteria_results=[{"testing_criteria": "x-1", "passed": 1, "failed": 0}],
        ),
    )
    assert explicit["result_counts"]["skipped"] == 3
    assert explicit["per_testing_criteria_results"] == [{"testing_criteria": "x-1", "passed": 1, "failed": 0}]


def test_errored_items_and_counts_agree(server: FakeEvalsServer, api: Api) -> None:
    ev = api.create_eval()
    run = server.add_run(
        ev["id"],
        RunScript(
            queued_seconds=0,
            in_progress_seconds=0,
            output_items=30,
            fail_every=3,
            error_every=5,
            model="o3-mini",
        ),
    )
    items = api.ok("GET", f"/evals/{ev['id']}/runs/{run['id']}/output_items", params={"limit": 100})["data"]
    errored = [i for i in items if i["sample"]["error"] is not None]
    failed = [i for i in items if i["status"] == "fail" and i["sample"]["error"] is None]
    passed = [i for i in items if i["status"] == "pass"]
    assert run["result_counts"] == {
        "total": 30,
        "errored": len(errored),
        "failed": len(failed),
        "passed": len(passed),
    }
    assert len(errored) == 6
    assert len(failed) == 8
    assert run["model"] == "o3-mini"
    assert all(i["status"] == "fail" and i["results"] == [] for i in errored)


def test_item_bytes_padding(server: FakeEvalsServer, api: Api) -> None:
    ev = api.create_eval()
    run = server.add_run(
        ev["id"], RunScript(queued_seconds=0, in_progress_seconds=0, output_items=5, item_bytes=4096)
    )
    response = api.call("GET", f"/evals/{ev['id']}/runs/{run['id']}/output_items", params={"limit": 5})
    per_item = len(response.content) / 5
    assert 3800 < per_item < 4600


def test_unknown_eval_for_add_run(server: FakeEvalsServer) -> None:
    from airflow_provider_aoai_evals.testing.state import ApiError

    with pytest.raises(ApiError):
        server.add_run("eval_missing")

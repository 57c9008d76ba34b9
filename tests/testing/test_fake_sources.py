"""How many output items a run gets from each kind of data source, and evals seeded under a chosen id.

A run on a source the fake cannot read (a file it never received, stored completions, responses) used to
get no items, so a user's quality gate failed with "no results" until they found ``output_items``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest
import requests

from airflow_provider_aoai_evals.testing import RunScript
from airflow_provider_aoai_evals.testing.state import UNREAD_SOURCE_ITEMS, ApiError
from tests.testing.fake_helpers import FAST, Api

if TYPE_CHECKING:
    from airflow_provider_aoai_evals.testing import FakeEvalsServer

UNKNOWN_FILE = {"type": "jsonl", "source": {"type": "file_id", "id": "file-abc123"}}


def items(api: Api, eval_id: str, run_id: str) -> list[dict[str, Any]]:
    return list(api.ok("GET", f"/evals/{eval_id}/runs/{run_id}/output_items", params={"limit": 100})["data"])


def upload(server: FakeEvalsServer, api: Api, rows: int) -> str:
    content = "".join(
        json.dumps({"item": {"input": f"q{i}", "ground_truth": "World"}}) + "\n" for i in range(rows)
    )
    response = requests.post(
        server.api_root + "/files",
        headers=api.headers,
        files={"purpose": (None, "evals"), "file": ("rows.jsonl", content)},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


@pytest.mark.parametrize(
    "data_source",
    [
        UNKNOWN_FILE,
        {"type": "completions", "model": "gpt-4.1", "source": {"type": "stored_completions"}},
        {"type": "responses", "source": {"type": "responses"}},
    ],
)
def test_a_source_the_fake_cannot_read_gets_default_items(
    server: FakeEvalsServer, api: Api, data_source: dict[str, Any]
) -> None:
    server.default_script = FAST
    ev = api.create_eval()
    run = api.ok("POST", f"/evals/{ev['id']}/runs", json={"data_source": data_source})
    counts = run["result_counts"]
    assert counts["total"] == UNREAD_SOURCE_ITEMS > 0
    got = items(api, ev["id"], run["id"])
    assert len(got) == UNREAD_SOURCE_ITEMS
    assert counts["passed"] == sum(1 for i in got if i["status"] == "pass") > 0
    assert {r["testing_criteria"] for r in run["per_testing_criteria_results"]} == {
        c["id"] for c in ev["testing_criteria"]
    }


def test_seeded_runs_default_to_items_too(server: FakeEvalsServer, api: Api) -> None:
    ev = api.create_eval()
    run = server.add_run(ev["id"], FAST)  # add_run's default source is a file id the fake never received
    assert run["result_counts"]["total"] == UNREAD_SOURCE_ITEMS == len(items(api, ev["id"], run["id"]))


def test_a_file_uploaded_to_the_fake_gives_one_item_per_row(server: FakeEvalsServer, api: Api) -> None:
    server.default_script = FAST
    ev = api.create_eval()
    for rows in (3, 0):
        file_id = upload(server, api, rows)
        source = {"type": "jsonl", "source": {"type": "file_id", "id": file_id}}
        run = api.ok("POST", f"/evals/{ev['id']}/runs", json={"data_source": source})
        assert run["result_counts"]["total"] == rows == len(items(api, ev["id"], run["id"]))


def test_explicit_counts_win(server: FakeEvalsServer, api: Api) -> None:
    ev = api.create_eval()
    none = server.add_run(ev["id"], RunScript(queued_seconds=0, in_progress_seconds=0, output_items=0))
    assert none["result_counts"]["total"] == 0 and items(api, ev["id"], none["id"]) == []
    scripted = RunScript(
        queued_seconds=0,
        in_progress_seconds=0,
        result_counts={"total": 7, "errored": 0, "failed": 2, "passed": 5},
    )
    run = server.add_run(ev["id"], scripted)
    assert run["result_counts"]["total"] == 7 == len(items(api, ev["id"], run["id"]))


def test_eval_seeded_under_a_chosen_id(server: FakeEvalsServer, api: Api) -> None:
    wanted = "eval_67abd54d9b0081909a86353f6fb9317a"
    ev = server.add_eval(name="from the dashboard", eval_id=wanted)
    assert ev["id"] == wanted and api.ok("GET", f"/evals/{wanted}")["name"] == "from the dashboard"
    with pytest.raises(ApiError, match="already exists"):
        server.add_eval(eval_id=wanted)
    with pytest.raises(ApiError, match="not a valid eval id"):
        server.add_eval(eval_id="eval/x")
    over_http = requests.post(server.url + "/_fake/evals", json={"id": "eval_fromcontrol"}, timeout=30)
    assert over_http.status_code == 200 and over_http.json()["id"] == "eval_fromcontrol"

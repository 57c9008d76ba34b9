"""A window fault: the fake throttles an endpoint for some seconds, then recovers, and counts what it got."""

from __future__ import annotations

import time

import pytest
import requests

from airflow_provider_aoai_evals.testing import FakeEvalsServer, Fault
from tests.testing.fake_helpers import Api


def test_a_window_answers_every_matching_request_then_stays_listed_with_its_hits(
    server: FakeEvalsServer, api: Api
) -> None:
    fault = server.inject(Fault(kind="status", status=429, retry_after=5, method="GET", path_regex="^/evals$", seconds=0.4))  # fmt: skip
    assert fault.started_at is not None and abs(fault.started_at - time.time()) < 1
    answers = [api.call("GET", "/evals") for _ in range(5)]
    assert [r.status_code for r in answers] == [429] * 5  # count is ignored inside the window
    assert answers[0].headers["Retry-After"] == "5"
    assert api.call("POST", "/evals", json={"name": "x", "data_source_config": {"type": "custom", "item_schema": {}}}).status_code != 429  # fmt: skip
    time.sleep(0.45)
    assert api.call("GET", "/evals").status_code == 200
    assert fault.hits == 5 and fault.window_over
    assert server.pending_faults == [fault]  # kept for its hits until cleared
    server.clear_faults()
    assert server.pending_faults == []


def test_a_window_over_the_control_api(server: FakeEvalsServer, api: Api) -> None:
    url = server.url
    added = requests.post(
        url + "/_fake/faults", json={"kind": "status", "status": 503, "seconds": 30}, timeout=5
    )
    assert added.json()["fault"]["seconds"] == 30 and added.json()["fault"]["started_at"]
    assert api.call("GET", "/evals").status_code == 503
    assert api.call("GET", "/evals").status_code == 503
    [listed] = requests.get(url + "/_fake/faults", timeout=5).json()["data"]
    assert listed["hits"] == 2
    bad = requests.post(url + "/_fake/faults", json={"kind": "status", "seconds": 0}, timeout=5)
    assert bad.status_code == 400 and "seconds" in bad.json()["error"]["message"]
    with pytest.raises(ValueError, match="started_at"):
        Fault.from_dict({"kind": "status", "started_at": 1.0})

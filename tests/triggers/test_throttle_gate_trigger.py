"""Many EvalRunTriggers in one loop against a throttled FakeEvalsServer: the endpoint's gate holds them."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from airflow_provider_aoai_evals.testing import FakeEvalsServer, Fault, RunScript
from airflow_provider_aoai_evals.triggers.eval_run import EvalRunTrigger
from tests.support import one_event_each, served_as_default_connection

KEY = "sk-trigger-gate-canary-91c2"
RUN_PATH = r"/runs/[^/]+$"

pytestmark = pytest.mark.compat


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEvalsServer]:
    with served_as_default_connection(monkeypatch, KEY) as srv:
        yield srv


def test_waits_through_a_throttle_window_send_about_one_request_each(server: FakeEvalsServer) -> None:
    n, window = 60, 1.5
    eval_id = str(server.add_eval(name="e")["id"])
    script = RunScript(queued_seconds=0, in_progress_seconds=window + 0.5)
    run_ids = [str(server.add_run(eval_id, script)["id"]) for _ in range(n)]
    throttle = server.inject(
        Fault(kind="status", status=429, retry_after=0.5, method="GET", path_regex=RUN_PATH, seconds=window)
    )
    triggers = [
        EvalRunTrigger(eval_id=eval_id, run_id=run_id, poll_interval=0.1, deadline=time.time() + 30)
        for run_id in run_ids
    ]
    events = one_event_each(*triggers)
    assert [e["status"] for e in events] == ["success"] * n
    # Each wait's first poll may be in flight when the gate closes; after that, one probe per 0.5 s. Each
    # wait on its own would poll every 0.1 s and retry every 0.5 s: about four requests per wait.
    assert throttle.hits <= 1.2 * n + window / 0.5 + 2, throttle.hits


def test_a_wait_whose_deadline_comes_first_times_out_without_sending(server: FakeEvalsServer) -> None:
    eval_id = str(server.add_eval(name="e")["id"])
    run_id = str(server.add_run(eval_id, RunScript(queued_seconds=600))["id"])
    server.inject(Fault(kind="status", status=429, retry_after=30, method="GET", path_regex=RUN_PATH))
    started = time.time()
    [event] = one_event_each(
        EvalRunTrigger(eval_id=eval_id, run_id=run_id, poll_interval=0.05, deadline=started + 1.0)
    )
    assert event["status"] == "timeout"
    assert 1.0 <= time.time() - started < 2.0
    # The first poll closed the gate; every later poll waited at it until the deadline instead of
    # polling every 0.05 s.
    assert server.count("GET", RUN_PATH) == 1

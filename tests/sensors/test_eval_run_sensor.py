"""EvalRunSensor: no deferral when already finished, TaskDeferred otherwise, allow-listed events."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowSensorTimeout, PokeReturnValue, TaskDeferred

from airflow_provider_aoai_evals.api.errors import EvalsConfigError
from airflow_provider_aoai_evals.exceptions import EvalRunError
from airflow_provider_aoai_evals.sensors.eval_run import EvalRunSensor
from airflow_provider_aoai_evals.testing import FakeEvalsServer, RunScript
from airflow_provider_aoai_evals.triggers.eval_run import EvalRunTrigger
from airflow_provider_aoai_evals.wait_guard import deferral_timeout
from tests.support import served_as_default_connection

KEY = "sk-sensor-canary-77aa"
pytestmark = pytest.mark.compat


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEvalsServer]:
    with served_as_default_connection(monkeypatch, KEY) as srv:
        yield srv


@pytest.fixture
def eval_id(server: FakeEvalsServer) -> str:
    return str(server.add_eval(name="e")["id"])


def sensor(eval_id: str, run_id: str, **kw: Any) -> EvalRunSensor:
    kw.setdefault("deferrable", True)
    return EvalRunSensor(task_id="wait", eval_id=eval_id, run_id=run_id, **kw)


def test_already_finished_run_completes_without_deferring(server: FakeEvalsServer, eval_id: str) -> None:
    run_id = server.add_run(eval_id, RunScript(queued_seconds=0, in_progress_seconds=0, output_items=4))["id"]
    summary = sensor(eval_id, run_id).execute({})
    assert summary["status"] == "completed" and summary["counts"]["total"] == 4
    assert server.count("GET") == 1


def test_already_failed_run_raises_without_deferring(server: FakeEvalsServer, eval_id: str) -> None:
    script = RunScript(
        queued_seconds=0,
        in_progress_seconds=0,
        final_status="failed",
        error={"code": "e", "message": "bad grader"},
    )
    run_id = server.add_run(eval_id, script)["id"]
    with pytest.raises(EvalRunError) as info:
        sensor(eval_id, run_id).execute({})
    err = info.value
    assert (err.run_id, err.eval_id, err.status, err.api_message) == (run_id, eval_id, "failed", "bad grader")
    assert run_id in str(err) and eval_id in str(err) and "'failed'" in str(err) and "bad grader" in str(err)


def test_running_run_defers_with_absolute_deadline_and_no_secret(
    server: FakeEvalsServer, eval_id: str
) -> None:
    run_id = server.add_run(eval_id, RunScript(queued_seconds=600))["id"]
    task = sensor(eval_id, run_id, timeout=120, poke_interval=7, cancel_on_kill=True, execution_timeout=None)
    before = time.time()
    with pytest.raises(TaskDeferred) as info:
        task.execute({})
    deferred = info.value
    trigger = deferred.trigger
    assert isinstance(trigger, EvalRunTrigger) and deferred.method_name == "execute_complete"
    assert before + 120 <= trigger.deadline <= time.time() + 120
    # The sensor's timeout plus the margin the trigger needs to end the wait itself (wait_guard).
    assert deferred.timeout is not None and deferred.timeout == deferral_timeout(120)
    assert deferred.timeout.total_seconds() > 120
    _, kwargs = trigger.serialize()
    assert kwargs["poll_interval"] == 7 and kwargs["cancel_on_kill"] is True
    assert KEY not in json.dumps(kwargs)


def test_bad_ids_fail_before_any_request(server: FakeEvalsServer, eval_id: str) -> None:
    with pytest.raises(EvalsConfigError) as info:
        sensor(eval_id, "run/../x").execute({})
    assert info.value.parameter == "run_id" and server.count() == 0


def test_success_statuses_are_checked() -> None:
    with pytest.raises(ValueError, match="success_statuses"):
        EvalRunSensor(task_id="w", eval_id="e", run_id="r", success_statuses=["done"])


SUMMARY = {"run_id": "evalrun_1", "status": "completed"}


@pytest.mark.parametrize(
    ("event", "outcome"),
    [
        ({"status": "success", "summary": SUMMARY, "message": "ok"}, SUMMARY),
        (
            {
                "status": "failure",
                "run_status": "failed",
                "message": "ended failed: boom",
                "summary": {"error_message": "boom"},
            },
            EvalRunError,
        ),
        ({"status": "error", "message": "gave up", "error": {"message": "503"}}, EvalRunError),
        ({"status": "timeout", "message": "still queued"}, AirflowSensorTimeout),
        ({"status": "succeeded", "summary": SUMMARY}, EvalRunError),  # not ours: never treated as success
        ({}, EvalRunError),
        (None, EvalRunError),
    ],
)
def test_execute_complete_accepts_only_known_events(event: dict[str, Any] | None, outcome: Any) -> None:
    task = EvalRunSensor(task_id="w", eval_id="eval_1", run_id="evalrun_1")
    if isinstance(outcome, dict):
        assert task.execute_complete({}, event) == outcome
        return
    with pytest.raises(outcome) as info:
        task.execute_complete({}, event)
    if event and event.get("status") == "failure":
        assert isinstance(info.value, EvalRunError)
        assert info.value.api_message == "boom" and info.value.status == "failed"


def test_poke_mode_polls_until_done(server: FakeEvalsServer, eval_id: str) -> None:
    run_id = server.add_run(eval_id, RunScript(queued_seconds=600))["id"]
    task = sensor(eval_id, run_id, deferrable=False)
    assert task.poke({}) is False
    server.finish_run(run_id)
    result = task.poke({})
    assert isinstance(result, PokeReturnValue) and result.is_done
    assert result.xcom_value is not None and result.xcom_value["status"] == "completed"

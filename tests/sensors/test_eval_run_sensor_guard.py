"""EvalRunSensor's end of a wait: it cancels a run at its timeout only when asked (it may watch a run
started elsewhere), always over its token budget, and keeps ``soft_fail`` for timeouts."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowSensorTimeout, AirflowSkipException, TaskDeferred

from airflow_provider_aoai_evals.api.errors import EvalsConfigError
from airflow_provider_aoai_evals.exceptions import EvalRunError, EvalRunOverBudget
from airflow_provider_aoai_evals.outcomes import WaitTimeout
from airflow_provider_aoai_evals.sensors.eval_run import EvalRunSensor
from airflow_provider_aoai_evals.testing import FakeEvalsServer, Fault, RunScript
from tests.support import served_as_default_connection

KEY = "sk-sensor-guard-canary-0d4e"
CANCEL = r"/runs/[^/]+(/cancel)?$"
pytestmark = pytest.mark.compat


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEvalsServer]:
    with served_as_default_connection(monkeypatch, KEY) as srv:
        yield srv


@pytest.fixture
def eval_id(server: FakeEvalsServer) -> str:
    return str(server.add_eval(name="e")["id"])


def sensor(eval_id: str, run_id: str, **kw: Any) -> EvalRunSensor:
    kw.setdefault("deferrable", False)
    kw.setdefault("poke_interval", 0.1)
    return EvalRunSensor(task_id="wait", eval_id=eval_id, run_id=run_id, **kw)


def stuck(server: FakeEvalsServer, eval_id: str) -> str:
    return str(server.add_run(eval_id, RunScript(queued_seconds=600))["id"])


def costly(**kw: Any) -> RunScript:
    """100 items at 100 tokens each, graded over 4 s, usage visible as it grows."""
    kw.setdefault("queued_seconds", 0)
    kw.setdefault("in_progress_seconds", 4.0)
    return RunScript(output_items=100, usage_while_running=True, prompt_tokens_per_item=98, **kw)


def timed_out_by_airflow() -> dict[str, Any]:
    """``next_kwargs`` as the scheduler stores them (a JSON column) when the deferral's timeout passed."""
    from airflow.models.trigger import TriggerFailureReason

    return dict(json.loads(json.dumps({"error": TriggerFailureReason.TRIGGER_TIMEOUT})))


def test_defaults_and_bad_input(server: FakeEvalsServer) -> None:
    task = EvalRunSensor(task_id="w", eval_id="e", run_id="r")
    assert task.cancel_on_timeout is False and task.max_total_tokens is None
    for kwargs, parameter in (
        ({"max_total_tokens": 0}, "max_total_tokens"),
        ({"max_total_tokens": True}, "max_total_tokens"),
        ({"max_total_tokens": 10.0}, "max_total_tokens"),
        ({"cancel_on_timeout": "yes"}, "cancel_on_timeout"),
    ):
        with pytest.raises(EvalsConfigError) as info:
            EvalRunSensor(task_id="w", eval_id="e", run_id="r", **kwargs)
        assert info.value.parameter == parameter
    assert server.count() == 0


# -- poke mode -------------------------------------------------------------------------------------------


def test_poke_timeout_cancels_when_asked(server: FakeEvalsServer, eval_id: str) -> None:
    run_id = stuck(server, eval_id)
    with pytest.raises(WaitTimeout) as info:
        sensor(eval_id, run_id, timeout=0.4, cancel_on_timeout=True).execute({})
    assert isinstance(info.value, AirflowSensorTimeout) and info.value.canceled is True
    message = str(info.value)
    assert (
        run_id in message and eval_id in message and "still queued" in message and "was canceled" in message
    )
    assert server.count("POST", CANCEL) == 1 and server.get_run(run_id)["status"] == "canceled"


def test_poke_timeout_with_soft_fail_skips_after_cancelling(server: FakeEvalsServer, eval_id: str) -> None:
    run_id = stuck(server, eval_id)
    with pytest.raises(AirflowSkipException, match="was canceled") as info:
        sensor(eval_id, run_id, timeout=0.4, soft_fail=True, cancel_on_timeout=True).execute({})
    assert run_id in str(info.value)
    assert server.get_run(run_id)["status"] == "canceled"


@pytest.mark.parametrize("soft_fail", [False, True])
def test_poke_timeout_leaves_the_run_unless_asked(
    server: FakeEvalsServer, eval_id: str, soft_fail: bool
) -> None:
    run_id = stuck(server, eval_id)
    expected = AirflowSkipException if soft_fail else AirflowSensorTimeout
    with pytest.raises(expected, match="Sensor has timed out"):  # Airflow's own, unchanged
        sensor(eval_id, run_id, timeout=0.3, soft_fail=soft_fail, cancel_on_timeout=False).execute({})
    assert server.count("POST", CANCEL) == 0 and server.get_run(run_id)["status"] == "queued"


def test_a_failing_poke_is_not_taken_for_the_timeout(server: FakeEvalsServer, eval_id: str) -> None:
    run_id = stuck(server, eval_id)
    server.inject(Fault(kind="status", status=404, message="gone", path_regex=r"/runs/[^/]+$", count=None))
    with pytest.raises(Exception, match="gone") as info:
        sensor(eval_id, run_id, timeout=5, cancel_on_timeout=True).execute({})
    assert not isinstance(info.value, AirflowSensorTimeout)
    assert server.count("POST", CANCEL) == 0


def test_poke_over_budget_cancels(server: FakeEvalsServer, eval_id: str) -> None:
    run_id = str(server.add_run(eval_id, costly())["id"])
    with pytest.raises(EvalRunOverBudget) as info:
        sensor(eval_id, run_id, max_total_tokens=1500, timeout=30).execute({})
    err = info.value
    assert err.canceled is True and 1500 < err.total_tokens < 10_000 and err.run_id == run_id
    assert "max_total_tokens=1500" in str(err) and f"{err.total_tokens} tokens" in str(err)
    assert eval_id in str(err) and "was canceled" in str(err)
    assert server.count("POST", CANCEL) == 1 and server.get_run(run_id)["status"] == "canceled"


def test_finished_over_budget_fails_when_poked(server: FakeEvalsServer, eval_id: str) -> None:
    run_id = str(server.add_run(eval_id, costly(in_progress_seconds=0))["id"])
    with pytest.raises(EvalRunOverBudget, match="nothing to cancel"):
        sensor(eval_id, run_id, max_total_tokens=9_999).poke({})
    assert server.count("POST", CANCEL) == 0


# -- deferrable ------------------------------------------------------------------------------------------


def test_the_check_before_deferring_applies_the_budget(server: FakeEvalsServer, eval_id: str) -> None:
    run_id = str(server.add_run(eval_id, costly(in_progress_seconds=20))["id"])
    time.sleep(0.5)  # two items graded, 100 tokens each
    with pytest.raises(EvalRunOverBudget, match="was canceled"):
        sensor(eval_id, run_id, deferrable=True, max_total_tokens=1).execute({})
    assert server.get_run(run_id)["status"] == "canceled"


def test_the_trigger_gets_the_new_settings(server: FakeEvalsServer, eval_id: str) -> None:
    run_id = stuck(server, eval_id)
    with pytest.raises(TaskDeferred) as info:
        sensor(eval_id, run_id, deferrable=True, cancel_on_timeout=True, max_total_tokens=77).execute({})
    _, kwargs = info.value.trigger.serialize()
    assert kwargs["cancel_on_timeout"] is True and kwargs["max_total_tokens"] == 77


@pytest.mark.parametrize(
    ("event", "error"),
    [
        (
            {
                "status": "over_budget",
                "message": "used 2000 tokens, over max_total_tokens=1500",
                "run_status": "canceled",
                "max_total_tokens": 1500,
                "total_tokens": 2000,
                "canceled": True,
            },
            EvalRunOverBudget,
        ),
        ({"status": "timeout", "message": "still queued; it was canceled", "canceled": True}, WaitTimeout),
    ],
)
def test_the_new_events_fail_the_task(event: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error, match=event["message"]) as info:
        EvalRunSensor(task_id="w", eval_id="eval_1", run_id="evalrun_1").execute_complete({}, event)
    assert isinstance(info.value, (EvalRunError, WaitTimeout)) and info.value.canceled is True


def test_a_lost_deferral_cancels_when_asked(server: FakeEvalsServer, eval_id: str) -> None:
    run_id = stuck(server, eval_id)
    with pytest.raises(AirflowSensorTimeout) as info:
        sensor(eval_id, run_id, deferrable=True, cancel_on_timeout=True).resume_execution(
            "__fail__", timed_out_by_airflow(), {}
        )
    assert (
        run_id in str(info.value) and "no triggerer" in str(info.value) and "was canceled" in str(info.value)
    )
    assert server.count("POST", CANCEL) == 1 and server.get_run(run_id)["status"] == "canceled"


def test_a_lost_deferral_leaves_the_run_unless_asked(server: FakeEvalsServer, eval_id: str) -> None:
    run_id = stuck(server, eval_id)
    with pytest.raises(AirflowSensorTimeout, match="not canceled") as info:
        sensor(eval_id, run_id, deferrable=True, cancel_on_timeout=False).resume_execution(
            "__fail__", timed_out_by_airflow(), {}
        )
    assert run_id in str(info.value)
    assert server.count("POST", CANCEL) == 0 and server.get_run(run_id)["status"] == "queued"


def test_a_lost_deferral_with_soft_fail_skips(server: FakeEvalsServer, eval_id: str) -> None:
    run_id = stuck(server, eval_id)
    with pytest.raises(AirflowSkipException):
        sensor(eval_id, run_id, deferrable=True, soft_fail=True, cancel_on_timeout=True).resume_execution(
            "__fail__", timed_out_by_airflow(), {}
        )
    assert server.get_run(run_id)["status"] == "canceled"

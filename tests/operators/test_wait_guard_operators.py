"""The run operators never leave a run spending when their wait ends: at a timeout, over a token budget,
and when Airflow's timeout of the deferral fires because no triggerer ran the trigger."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException, TaskDeferred

from airflow_provider_aoai_evals.api.errors import EvalsConfigError
from airflow_provider_aoai_evals.api.waiting import DEFAULT_CANCEL_TIMEOUT, DEFERRAL_SLACK_SECONDS
from airflow_provider_aoai_evals.exceptions import EvalRunCanceledOnTimeout, EvalRunError, EvalRunOverBudget
from airflow_provider_aoai_evals.operators.eval_run import CancelEvalRunOperator, CreateEvalRunOperator
from airflow_provider_aoai_evals.outcomes import WaitTimeout
from airflow_provider_aoai_evals.testing import FakeEvalsServer, RunScript
from airflow_provider_aoai_evals.triggers.eval_run import EvalRunTrigger
from tests.support import served_as_default_connection

KEY = "sk-operator-guard-canary-3b1d"
ROWS = {"type": "jsonl", "source": {"type": "file_content", "content": [{"item": {"a": 1}}]}}
CANCEL = r"/runs/[^/]+(/cancel)?$"
pytestmark = pytest.mark.compat


class FakeTI:
    """The task-instance attributes the operators use outside a DAG run; XComs kept as a resumed try
    finds them (Airflow keeps a deferred try's XComs for the try that resumes it)."""

    dag_id, task_id, run_id, map_index, try_number = "guard_unit", "create", "manual__1", -1, 1

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value

    def xcom_pull(self, task_ids: str | None = None, key: str = "return_value", **_: Any) -> Any:
        assert task_ids == self.task_id
        return self.xcom.get(key)


def context(ti: FakeTI, **extra: Any) -> Any:
    """A task context outside a DAG run: only what the operators read."""
    return {"ti": ti, **extra}


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEvalsServer]:
    with served_as_default_connection(monkeypatch, KEY) as srv:
        yield srv


@pytest.fixture
def eval_id(server: FakeEvalsServer) -> str:
    return str(server.add_eval(name="e")["id"])


def create(eval_id: str, **kw: Any) -> CreateEvalRunOperator:
    kw.setdefault("poll_interval", 0.1)
    return CreateEvalRunOperator(task_id="create", eval_id=eval_id, data_source=ROWS, **kw)


def costly(**kw: Any) -> RunScript:
    """100 items at 100 tokens each, graded over 4 s, usage visible as it grows."""
    kw.setdefault("queued_seconds", 0)
    kw.setdefault("in_progress_seconds", 4.0)
    return RunScript(output_items=100, usage_while_running=True, prompt_tokens_per_item=98, **kw)


def timed_out_by_airflow() -> dict[str, Any]:
    """``next_kwargs`` as the scheduler stores them (a JSON column) when the deferral's timeout passed."""
    from airflow.models.trigger import TriggerFailureReason

    return dict(json.loads(json.dumps({"error": TriggerFailureReason.TRIGGER_TIMEOUT})))


# -- construction --------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [True, False, 0, -1, 2.5, "1000"])
def test_the_budget_is_checked_before_any_request(server: FakeEvalsServer, eval_id: str, bad: Any) -> None:
    with pytest.raises(EvalsConfigError) as info:
        create(eval_id, max_total_tokens=bad)
    assert info.value.parameter == "max_total_tokens"
    with pytest.raises(EvalsConfigError) as info:
        CancelEvalRunOperator(task_id="c", eval_id=eval_id, run_id="evalrun_1", max_total_tokens=bad)
    assert info.value.parameter == "max_total_tokens"
    assert server.count() == 0


@pytest.mark.parametrize("bad", [None, 1, "false"])
def test_cancel_on_timeout_must_be_a_bool(eval_id: str, bad: Any) -> None:
    with pytest.raises(EvalsConfigError) as info:
        create(eval_id, cancel_on_timeout=bad)
    assert info.value.parameter == "cancel_on_timeout"


def test_defaults() -> None:
    op = CreateEvalRunOperator(task_id="c", eval_id="eval_1", data_source=ROWS)
    assert op.cancel_on_timeout is True and op.max_total_tokens is None
    assert CancelEvalRunOperator(task_id="c", eval_id="e", run_id="r").cancel_on_timeout is True


# -- deferrable ------------------------------------------------------------------------------------------


def test_the_deferral_outlasts_the_triggers_deadline_by_the_margin(
    server: FakeEvalsServer, eval_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.default_script = RunScript(queued_seconds=600)
    monkeypatch.setenv("AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD", "45")
    before = time.time()
    with pytest.raises(TaskDeferred) as info:
        create(eval_id, deferrable=True, timeout=600, max_total_tokens=5000).execute(context(FakeTI()))
    trigger = info.value.trigger
    assert isinstance(trigger, EvalRunTrigger)
    assert before + 600 <= trigger.deadline <= time.time() + 600
    assert trigger.cancel_on_timeout is True and trigger.max_total_tokens == 5000
    margin = DEFAULT_CANCEL_TIMEOUT + 45 + DEFERRAL_SLACK_SECONDS
    assert info.value.timeout is not None and info.value.timeout.total_seconds() == 600 + margin == 735


def test_a_lost_deferral_cancels_the_run_this_try_started(server: FakeEvalsServer, eval_id: str) -> None:
    server.default_script = RunScript(queued_seconds=600)
    ti = FakeTI()
    op = create(eval_id, deferrable=True)
    with pytest.raises(TaskDeferred):
        op.execute(context(ti))
    run_id = ti.xcom["run_id"]
    # The scheduler resumes a new instance of the task, only to fail it.
    with pytest.raises(WaitTimeout) as info:
        create(eval_id, deferrable=True).resume_execution("__fail__", timed_out_by_airflow(), context(ti))
    message = str(info.value)
    assert (
        run_id in message and eval_id in message and "no triggerer" in message and "was canceled" in message
    )
    assert info.value.canceled is True
    assert server.count("POST", CANCEL) == 1 and server.get_run(run_id)["status"] == "canceled"


def test_a_lost_deferral_leaves_the_run_alone_when_asked(server: FakeEvalsServer, eval_id: str) -> None:
    run_id = server.add_run(eval_id, RunScript(queued_seconds=600))["id"]
    ti = FakeTI()
    ti.xcom.update(run_id=run_id, eval_id=eval_id)
    op = create(eval_id, deferrable=True, cancel_on_timeout=False)
    with pytest.raises(WaitTimeout, match="not canceled") as info:
        op.resume_execution("__fail__", timed_out_by_airflow(), context(ti))
    assert run_id in str(info.value) and info.value.canceled is None
    assert server.count("POST", CANCEL) == 0 and server.get_run(run_id)["status"] == "queued"


def test_a_lost_deferral_finds_the_run_in_the_task_state_store(server: FakeEvalsServer, eval_id: str) -> None:
    run_id = server.add_run(eval_id, RunScript(queued_seconds=600))["id"]

    class Store:
        def get(self, key: str) -> Any:
            return run_id if key == "aoai_evals_run_id" else None

    ti = FakeTI()
    with pytest.raises(WaitTimeout, match="was canceled"):
        create(eval_id).resume_execution(
            "__fail__", timed_out_by_airflow(), context(ti, task_state_store=Store())
        )
    assert server.get_run(run_id)["status"] == "canceled"


def test_a_lost_deferral_without_a_run_id_says_nothing_was_canceled(
    server: FakeEvalsServer, eval_id: str
) -> None:
    with pytest.raises(WaitTimeout, match="no run id, so no run was canceled"):
        create(eval_id).resume_execution("__fail__", timed_out_by_airflow(), context(FakeTI()))
    assert server.count() == 0


def test_other_trigger_failures_are_airflows(server: FakeEvalsServer, eval_id: str) -> None:
    ti = FakeTI()
    ti.xcom.update(run_id="evalrun_1", eval_id=eval_id)
    with pytest.raises(Exception, match="Trigger failure") as info:
        create(eval_id, cancel_on_timeout=True).resume_execution(
            "__fail__", {"error": "Trigger failure"}, context(ti)
        )
    assert not isinstance(info.value, WaitTimeout) and server.count() == 0


def test_the_cancel_operator_cancels_again_on_a_lost_deferral(server: FakeEvalsServer, eval_id: str) -> None:
    run_id = server.add_run(eval_id, RunScript(queued_seconds=600))["id"]
    op = CancelEvalRunOperator(task_id="create", eval_id=eval_id, run_id=run_id, wait_for_cancellation=True)
    with pytest.raises(WaitTimeout, match="was canceled"):
        op.resume_execution("__fail__", timed_out_by_airflow(), context(FakeTI()))
    assert server.get_run(run_id)["status"] == "canceled"


# -- polling mode ----------------------------------------------------------------------------------------


def test_a_polling_timeout_cancels_the_run(server: FakeEvalsServer, eval_id: str) -> None:
    server.default_script = RunScript(queued_seconds=600)
    ti = FakeTI()
    with pytest.raises(EvalRunError) as info:
        create(eval_id, deferrable=False, timeout=0.5).execute(context(ti))
    run_id = ti.xcom["run_id"]
    assert info.value.canceled is True and info.value.status == "canceled"
    assert (
        run_id in str(info.value) and "still queued" in str(info.value) and "was canceled" in str(info.value)
    )
    assert server.count("POST", CANCEL) == 1 and server.get_run(run_id)["status"] == "canceled"
    # Final, like a deferred timeout: a retry would find the run canceled and start (and pay for) another.
    assert isinstance(info.value, EvalRunCanceledOnTimeout) and isinstance(info.value, AirflowFailException)


def test_a_polling_timeout_without_cancel_leaves_the_run(server: FakeEvalsServer, eval_id: str) -> None:
    server.default_script = RunScript(queued_seconds=600)
    ti = FakeTI()
    with pytest.raises(EvalRunError) as info:
        create(eval_id, deferrable=False, timeout=0.3, cancel_on_timeout=False).execute(context(ti))
    assert info.value.canceled is None and "cancel" not in str(info.value)
    assert not isinstance(info.value, AirflowFailException)  # retried as before: the retry reattaches
    assert server.count("POST", CANCEL) == 0 and server.get_run(ti.xcom["run_id"])["status"] == "queued"


def test_polling_over_budget_cancels_the_run(server: FakeEvalsServer, eval_id: str) -> None:
    server.default_script = costly()
    ti = FakeTI()
    with pytest.raises(EvalRunOverBudget) as info:
        create(eval_id, deferrable=False, max_total_tokens=1500).execute(context(ti))
    err, run_id = info.value, ti.xcom["run_id"]
    assert isinstance(err, AirflowFailException)  # final: a retry would start a new run and spend again
    assert err.canceled is True and err.max_total_tokens == 1500 and 1500 < err.total_tokens < 10_000
    assert (err.eval_id, err.run_id) == (eval_id, run_id)
    assert f"{err.total_tokens} tokens" in str(err) and "max_total_tokens=1500" in str(err)
    assert run_id in str(err) and eval_id in str(err) and "was canceled" in str(err)
    assert server.count("POST", CANCEL) == 1 and server.get_run(run_id)["status"] == "canceled"


@pytest.mark.parametrize("deferrable", [False, True])
def test_a_run_that_finished_over_budget_fails(
    server: FakeEvalsServer, eval_id: str, deferrable: bool
) -> None:
    server.default_script = costly(in_progress_seconds=0)  # completed as soon as it is created
    ti = FakeTI()
    with pytest.raises(EvalRunOverBudget, match=r"finished \('completed'\) over budget") as info:
        create(eval_id, deferrable=deferrable, max_total_tokens=100).execute(context(ti))
    assert info.value.canceled is None and info.value.total_tokens == 10_000
    assert ti.xcom["run_id"] in str(info.value) and "nothing to cancel" in str(info.value)
    assert server.count("POST", CANCEL) == 0

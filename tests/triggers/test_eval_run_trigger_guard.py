"""EvalRunTrigger ends a wait that must not leave its run spending: at its deadline (cancel_on_timeout) and
over a token budget (max_total_tokens), over loopback against FakeEvalsServer."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_aoai_evals.testing import FakeEvalsServer, Fault, RunScript
from airflow_provider_aoai_evals.triggers.eval_run import EvalRunTrigger
from tests.support import served_as_default_connection

KEY = "sk-trigger-guard-canary-91c2"
CANCEL = r"/runs/[^/]+(/cancel)?$"
pytestmark = pytest.mark.compat


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEvalsServer]:
    with served_as_default_connection(monkeypatch, KEY) as srv:
        yield srv


@pytest.fixture
def eval_id(server: FakeEvalsServer) -> str:
    return str(server.add_eval(name="e")["id"])


def make(eval_id: str, run_id: str, **kw: Any) -> EvalRunTrigger:
    kw.setdefault("poll_interval", 0.1)
    kw.setdefault("deadline", time.time() + 30)
    return EvalRunTrigger(eval_id=eval_id, run_id=run_id, **kw)


def only_event(trigger: EvalRunTrigger) -> dict[str, Any]:
    async def collect() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    [event] = asyncio.run(collect())
    assert KEY not in json.dumps(event)
    return event


def costly(**kw: Any) -> RunScript:
    """A run of 100 items at 100 tokens each, graded over 4 s, its usage visible as it goes."""
    kw.setdefault("queued_seconds", 0)
    kw.setdefault("in_progress_seconds", 4.0)
    return RunScript(
        output_items=100,
        usage_while_running=True,
        prompt_tokens_per_item=98,
        completion_tokens_per_item=2,
        **kw,
    )


def test_deadline_cancels_the_run_once(server: FakeEvalsServer, eval_id: str) -> None:
    run_id = server.add_run(eval_id, RunScript(queued_seconds=600))["id"]
    event = only_event(make(eval_id, run_id, deadline=time.time() + 0.5, cancel_on_timeout=True))
    assert event["status"] == "timeout" and event["canceled"] is True
    assert event["run_status"] == "canceled" and event["cancel_error"] is None
    assert run_id in event["message"] and eval_id in event["message"] and "was canceled" in event["message"]
    assert server.count("POST", CANCEL) == 1
    assert server.get_run(run_id)["status"] == "canceled"


def test_a_failed_cancel_still_ends_with_the_timeout_naming_the_failure(
    server: FakeEvalsServer, eval_id: str
) -> None:
    run_id = server.add_run(eval_id, RunScript(queued_seconds=600))["id"]
    server.inject(Fault(kind="status", status=403, message="no cancel for you", method="POST", count=None))
    event = only_event(make(eval_id, run_id, deadline=time.time() + 0.3, cancel_on_timeout=True))
    assert event["status"] == "timeout" and event["canceled"] is False
    assert "no cancel for you" in event["cancel_error"] and "no cancel for you" in event["message"]
    assert "may still be running" in event["message"] and event["run_status"] == "queued"
    assert server.get_run(run_id)["status"] == "queued"


def test_a_cancel_without_answer_is_bounded(server: FakeEvalsServer, eval_id: str) -> None:
    run_id = server.add_run(eval_id, RunScript(queued_seconds=600))["id"]
    server.inject(Fault(kind="slow", delay=5, method="POST", count=None))
    started = time.monotonic()
    event = only_event(
        make(eval_id, run_id, deadline=time.time() + 0.3, cancel_on_timeout=True, cancel_timeout=0.5)
    )
    assert time.monotonic() - started < 2.0
    assert event["status"] == "timeout" and event["canceled"] is False
    assert "timed out" in event["cancel_error"] and "may still be running" in event["message"]


def test_no_cancel_unless_asked(server: FakeEvalsServer, eval_id: str) -> None:
    run_id = server.add_run(eval_id, RunScript(queued_seconds=600))["id"]
    event = only_event(make(eval_id, run_id, deadline=time.time() + 0.3, cancel_on_timeout=False))
    assert event["status"] == "timeout" and "canceled" not in event
    assert server.count("POST", CANCEL) == 0 and server.get_run(run_id)["status"] == "queued"


def test_a_trigger_serialized_by_the_last_release_behaves_as_before(
    server: FakeEvalsServer, eval_id: str
) -> None:
    """The kwargs a deferred task of the last release left in the DB: no cancel at the deadline, no budget."""
    old_kwargs: dict[str, Any] = {
        "eval_id": eval_id,
        "conn_id": "aoai_evals_default",
        "poll_interval": 0.1,
        "success_statuses": ["completed"],
        "max_consecutive_failures": 10,
        "cancel_on_kill": True,
        "cancel_timeout": 30.0,
    }
    stuck = server.add_run(eval_id, RunScript(queued_seconds=600))["id"]
    event = only_event(EvalRunTrigger(**old_kwargs, run_id=stuck, deadline=time.time() + 0.3))
    assert event["status"] == "timeout" and set(event) == {
        "status",
        "eval_id",
        "run_id",
        "message",
        "run_status",
    }
    assert server.count("POST", CANCEL) == 0
    spent = server.add_run(eval_id, costly(in_progress_seconds=0.3))["id"]
    event = only_event(EvalRunTrigger(**old_kwargs, run_id=spent, deadline=time.time() + 30))
    assert event["status"] == "success" and event["summary"]["usage"]["total_tokens"] == 10_000
    revived = EvalRunTrigger(**old_kwargs, run_id=spent, deadline=1.0)
    assert revived.cancel_on_timeout is False and revived.max_total_tokens is None


def test_new_kwargs_survive_serialization(eval_id: str) -> None:
    trigger = make(eval_id, "evalrun_x", cancel_on_timeout=True, max_total_tokens=5000)
    classpath, kwargs = trigger.serialize()
    assert kwargs["cancel_on_timeout"] is True and kwargs["max_total_tokens"] == 5000
    revived = EvalRunTrigger(**json.loads(json.dumps(kwargs)))
    assert revived.serialize() == (classpath, kwargs)


def test_over_budget_cancels_the_run(server: FakeEvalsServer, eval_id: str) -> None:
    run_id = server.add_run(eval_id, costly())["id"]
    event = only_event(make(eval_id, run_id, max_total_tokens=1500))
    assert (
        event["status"] == "over_budget" and event["canceled"] is True and event["run_status"] == "canceled"
    )
    assert event["max_total_tokens"] == 1500 and 1500 < event["total_tokens"] < 10_000
    message = event["message"]
    assert "max_total_tokens=1500" in message and f"{event['total_tokens']} tokens" in message
    assert run_id in message and eval_id in message and "was canceled" in message
    assert server.count("POST", CANCEL) == 1
    run = server.get_run(run_id)
    assert run["status"] == "canceled" and run["result_counts"]["total"] < 100


def test_a_run_that_finished_over_budget_is_not_a_success(server: FakeEvalsServer, eval_id: str) -> None:
    run_id = server.add_run(eval_id, costly(in_progress_seconds=0))["id"]  # done at the first poll
    event = only_event(make(eval_id, run_id, max_total_tokens=9_999))
    assert event["status"] == "over_budget" and "canceled" not in event
    assert event["run_status"] == "completed" and event["total_tokens"] == 10_000
    assert (
        "finished ('completed') over budget" in event["message"] and "nothing to cancel" in event["message"]
    )
    assert server.count("POST", CANCEL) == 0


def test_within_budget_succeeds(server: FakeEvalsServer, eval_id: str) -> None:
    run_id = server.add_run(eval_id, costly(in_progress_seconds=0.3))["id"]
    event = only_event(make(eval_id, run_id, max_total_tokens=10_000))
    assert event["status"] == "success" and server.count("POST", CANCEL) == 0

"""EvalRunTrigger.on_kill cancels on a kill, never when another triggerer took the trigger over.

Airflow 3.3 calls ``on_kill`` also when a triggerer that was frozen or overloaded comes back and finds its
triggers adopted by another (apache/airflow#73454); only the task instance's state tells that from a user's
kill. The triggerer's supervisor answers that state; here ``RuntimeTaskInstance.get_ti_count`` (what the
trigger asks it through) is replaced, since no supervisor runs in a unit test. The end-to-end suite's HA
scenario runs the real thing (e2e/tests/ha_triggerers.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any

import pytest

from airflow_provider_aoai_evals.testing import FakeEvalsServer, RunScript
from airflow_provider_aoai_evals.triggers.eval_run import EvalRunTrigger
from tests.support import served_as_default_connection

KEY = "sk-on-kill-adoption-canary-2b7e"
CANCEL = r"/runs/[^/]+(/cancel)?$"

task_runner = pytest.importorskip("airflow.sdk.execution_time.task_runner")


@dataclass
class TI:
    dag_id: str = "ha"
    task_id: str = "wait"
    run_id: str = "manual__1"
    map_index: int = 7


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEvalsServer]:
    with served_as_default_connection(monkeypatch, KEY) as srv:
        yield srv


class Supervisor:
    """Stands in for the triggerer's supervisor: records each question, answers ``count`` (or raises it)."""

    def __init__(self) -> None:
        self.asked: list[dict[str, Any]] = []
        self.count: int | Exception = 0

    def get_ti_count(self, **kw: Any) -> int:
        self.asked.append(kw)
        if isinstance(self.count, Exception):
            raise self.count
        return self.count


@pytest.fixture
def supervisor(monkeypatch: pytest.MonkeyPatch) -> Supervisor:
    fake = Supervisor()
    monkeypatch.setattr(task_runner.RuntimeTaskInstance, "get_ti_count", staticmethod(fake.get_ti_count))
    return fake


def trigger_for(server: FakeEvalsServer, script: RunScript) -> tuple[EvalRunTrigger, str]:
    eval_id = str(server.add_eval(name="e")["id"])
    run_id = str(server.add_run(eval_id, script)["id"])
    trigger = EvalRunTrigger(
        eval_id=eval_id, run_id=run_id, deadline=time.time() + 60, cancel_on_kill=True, poll_interval=1
    )
    trigger.task_instance = TI()  # type: ignore[assignment]  # what the triggerer sets
    return trigger, run_id


def test_a_trigger_taken_over_by_another_triggerer_leaves_its_run(
    server: FakeEvalsServer, supervisor: Supervisor, trigger_logs: list[MutableMapping[str, Any]]
) -> None:
    trigger, run_id = trigger_for(server, RunScript(queued_seconds=600))
    supervisor.count = 1  # the task instance is still deferred: its trigger moved, nobody killed it
    asyncio.run(trigger.on_kill())
    assert supervisor.asked == [
        {
            "dag_id": "ha",
            "map_index": 7,
            "task_ids": ["wait"],
            "run_ids": ["manual__1"],
            "states": ["deferred"],
        }
    ]
    assert server.count("POST", CANCEL) == 0 and server.get_run(run_id)["status"] == "queued"
    assert any("another triggerer took this trigger over" in str(e["event"]) for e in trigger_logs)


def test_a_killed_task_cancels_its_run(server: FakeEvalsServer, supervisor: Supervisor) -> None:
    trigger, run_id = trigger_for(server, RunScript(queued_seconds=600))
    supervisor.count = 0  # marked failed or succeeded, or cleared: no longer deferred
    asyncio.run(trigger.on_kill())
    assert len(supervisor.asked) == 1
    assert server.count("POST", CANCEL) == 1 and server.get_run(run_id)["status"] == "canceled"


def test_when_the_state_cannot_be_read_a_kill_still_cancels(
    server: FakeEvalsServer, supervisor: Supervisor
) -> None:
    trigger, run_id = trigger_for(server, RunScript(queued_seconds=600))
    supervisor.count = RuntimeError("supervisor gone")
    asyncio.run(trigger.on_kill())
    assert server.get_run(run_id)["status"] == "canceled"


def test_a_run_that_already_ended_is_sent_no_cancel(server: FakeEvalsServer, supervisor: Supervisor) -> None:
    trigger, run_id = trigger_for(server, RunScript(queued_seconds=0, in_progress_seconds=0))
    supervisor.count = 0
    asyncio.run(trigger.on_kill())
    assert server.count("POST", CANCEL) == 0 and server.get_run(run_id)["status"] == "completed"


def test_a_kill_completes_although_airflow_cancels_on_kill_again(
    server: FakeEvalsServer, supervisor: Supervisor
) -> None:
    """The triggerer repeats its cancel of a trigger on every sync until the trigger is gone, which cancels
    a running ``on_kill``; a first state read can take longer than a sync (the supervisor builds its
    in-process API on the first one)."""
    trigger, run_id = trigger_for(server, RunScript(queued_seconds=600))
    answered = supervisor.get_ti_count

    def slow(**kw: Any) -> int:
        time.sleep(0.5)
        return answered(**kw)

    supervisor.get_ti_count = slow  # type: ignore[method-assign]
    task_runner.RuntimeTaskInstance.get_ti_count = staticmethod(slow)

    async def killed_twice() -> None:
        first = asyncio.ensure_future(trigger.on_kill())
        await asyncio.sleep(0.1)
        first.cancel()  # what the triggerer's next sync does to the trigger, and so to on_kill
        with pytest.raises(asyncio.CancelledError):
            await first
        for _ in range(100):  # the loop lives on, as the triggerer's does
            if server.get_run(run_id)["status"] == "canceled":
                return
            await asyncio.sleep(0.05)

    asyncio.run(killed_twice())
    assert server.count("POST", CANCEL) == 1 and server.get_run(run_id)["status"] == "canceled"

"""EvalRunTrigger run directly in an event loop against FakeEvalsServer: one event on every path."""

from __future__ import annotations

import asyncio
import importlib
import json
import time
from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest

from airflow_provider_aoai_evals.testing import FakeEvalsServer, Fault, RunScript
from airflow_provider_aoai_evals.triggers.eval_run import EvalRunTrigger
from tests.support import one_event_each, served_as_default_connection

KEY = "sk-trigger-canary-5e6f"

pytestmark = pytest.mark.compat
RUN_PATH = r"/runs/[^/]+$"


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


def events(trigger: EvalRunTrigger) -> list[dict[str, Any]]:
    async def collect() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    return asyncio.run(collect())


def test_success_yields_one_event_with_summary(
    server: FakeEvalsServer, eval_id: str, trigger_logs: list[MutableMapping[str, Any]]
) -> None:
    run_id = server.add_run(eval_id, RunScript(queued_seconds=0.2, in_progress_seconds=0.3, output_items=9))[
        "id"
    ]
    [event] = events(make(eval_id, run_id))
    assert event["status"] == "success" and event["run_status"] == "completed"
    summary = event["summary"]
    assert summary["run_id"] == run_id and summary["counts"]["total"] == 9
    assert summary["pass_rate"] == pytest.approx(summary["counts"]["passed"] / 9)
    assert "data_source" not in json.dumps(summary)
    progress = [e["event"] for e in trigger_logs if str(e["event"]).startswith(f"eval run {run_id}")]
    assert any("queued" in line for line in progress) and any("completed" in line for line in progress)


def test_progress_is_logged_per_change_with_a_heartbeat_when_unchanged(
    server: FakeEvalsServer,
    eval_id: str,
    trigger_logs: list[MutableMapping[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run_id = server.add_run(eval_id, RunScript(queued_seconds=1.2, in_progress_seconds=0))["id"]

    def lines() -> list[str]:
        return [str(e["event"]) for e in trigger_logs if str(e["event"]).startswith(f"eval run {run_id}")]

    [event] = events(make(eval_id, run_id, poll_interval=0.05))
    assert event["status"] == "success" and server.count("GET", f"/runs/{run_id}$") >= 10
    assert [line.split(",")[0] for line in lines()] == [
        f"eval run {run_id}: queued",
        f"eval run {run_id}: completed",
    ]

    trigger_logs.clear()
    run_id = server.add_run(eval_id, RunScript(queued_seconds=1.2, in_progress_seconds=0))["id"]
    monkeypatch.setattr("airflow_provider_aoai_evals.triggers.eval_run.PROGRESS_HEARTBEAT_SECONDS", 0.3)
    events(make(eval_id, run_id, poll_interval=0.05))
    queued = [line for line in lines() if ": queued" in line]
    assert 3 <= len(queued) <= 6  # about 1.2 s / 0.3 s, far fewer than the ~20 polls


@pytest.mark.parametrize("final", ["failed", "canceled"])
def test_failed_or_canceled_run_yields_failure(server: FakeEvalsServer, eval_id: str, final: str) -> None:
    script = RunScript(
        queued_seconds=0.1,
        in_progress_seconds=0.1,
        final_status=final,
        error={"code": "grader_error", "message": "grader crashed"} if final == "failed" else None,
    )
    run_id = server.add_run(eval_id, script)["id"]
    [event] = events(make(eval_id, run_id))
    assert event["status"] == "failure" and event["run_status"] == final
    assert run_id in event["message"] and eval_id in event["message"] and final in event["message"]
    if final == "failed":
        assert "grader crashed" in event["message"]


def test_accepting_other_terminal_statuses(server: FakeEvalsServer, eval_id: str) -> None:
    run_id = server.add_run(
        eval_id, RunScript(queued_seconds=0, in_progress_seconds=0, final_status="canceled")
    )["id"]
    [event] = events(make(eval_id, run_id, success_statuses=["completed", "canceled"]))
    assert event["status"] == "success" and event["run_status"] == "canceled"


def test_deadline_yields_timeout(server: FakeEvalsServer, eval_id: str) -> None:
    run_id = server.add_run(eval_id, RunScript(queued_seconds=600))["id"]
    started = time.time()
    [event] = events(make(eval_id, run_id, deadline=started + 1.0, poll_interval=0.3))
    assert event["status"] == "timeout" and event["run_status"] == "queued"
    assert 1.0 <= time.time() - started < 2.0


def test_retries_inside_a_poll_never_outlive_the_deadline(server: FakeEvalsServer, eval_id: str) -> None:
    run_id = server.add_run(eval_id, RunScript(queued_seconds=600))["id"]
    server.inject(Fault(kind="status", status=429, retry_after=30, path_regex=RUN_PATH, count=None))
    started = time.time()
    [event] = events(make(eval_id, run_id, deadline=started + 1.5, max_consecutive_failures=100))
    assert event["status"] == "timeout"
    assert time.time() - started < 2.5  # a 30 s Retry-After was not slept through


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_permanent_error_ends_at_once(server: FakeEvalsServer, eval_id: str, status: int) -> None:
    run_id = server.add_run(eval_id)["id"]
    server.inject(
        Fault(kind="status", status=status, message="no such thing", path_regex=RUN_PATH, count=None)
    )
    [event] = events(make(eval_id, run_id))
    assert event["status"] == "error" and event["error"]["status_code"] == status
    assert event["error"]["request_id"] and "no such thing" in event["message"]
    assert server.count("GET", RUN_PATH) == 1


def test_transient_burst_is_survived(server: FakeEvalsServer, eval_id: str) -> None:
    run_id = server.add_run(eval_id, RunScript(queued_seconds=0.1, in_progress_seconds=0.2))["id"]
    server.inject(Fault(kind="status", status=503, retry_after=0, path_regex=RUN_PATH, count=8))
    server.inject(Fault(kind="status", status=429, retry_after=0, path_regex=RUN_PATH, count=4))
    [event] = events(make(eval_id, run_id))
    assert event["status"] == "success"
    assert server.count("GET", RUN_PATH) > 12


def test_failure_budget_exhaustion(server: FakeEvalsServer, eval_id: str) -> None:
    run_id = server.add_run(eval_id)["id"]
    server.inject(
        Fault(kind="status", status=503, retry_after=0, message="down", path_regex=RUN_PATH, count=None)
    )
    [event] = events(make(eval_id, run_id, max_consecutive_failures=3))
    assert event["status"] == "error" and "3 times in a row" in event["message"]
    assert event["error"]["status_code"] == 503
    assert server.count("GET", RUN_PATH) == 3 * 3  # 3 polls x 3 attempts of the client's retry policy


def test_missing_connection_is_an_error_event(
    server: FakeEvalsServer, eval_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_BROKEN",
        json.dumps({"conn_type": "aoai_evals", "password": KEY, "extra": {"flavor": "azure"}}),
    )
    [event] = events(make(eval_id, "evalrun_x", conn_id="broken"))
    assert event["status"] == "error" and "'host'" in event["message"] and "broken" in event["message"]
    [event] = events(make(eval_id, "evalrun_x", conn_id="no_such_connection"))
    assert event["status"] == "error" and "no_such_connection" in event["message"]


def test_serialize_round_trip_survives_a_restart(server: FakeEvalsServer, eval_id: str) -> None:
    run_id = server.add_run(eval_id, RunScript(queued_seconds=0.6, in_progress_seconds=0.6))["id"]
    deadline = time.time() + 30
    first = make(eval_id, run_id, deadline=deadline, cancel_on_kill=True)

    async def killed_mid_wait() -> None:
        task = asyncio.ensure_future(first.run().__anext__())
        await asyncio.sleep(0.35)  # a few polls, still queued
        task.cancel()  # the triggerer dies
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(killed_mid_wait())
    polls_before = server.count("GET", RUN_PATH)
    assert polls_before >= 2

    classpath, kwargs = first.serialize()
    assert KEY not in json.dumps(kwargs)  # kwargs are stored in the DB: ids and numbers only
    module, name = classpath.rsplit(".", 1)
    revived = getattr(importlib.import_module(module), name)(**json.loads(json.dumps(kwargs)))
    assert revived.serialize() == (classpath, kwargs) and revived.deadline == deadline
    [event] = events(revived)
    assert event["status"] == "success" and server.count("GET", RUN_PATH) > polls_before
    assert server.get_run(run_id)["status"] == "completed"  # a restart never cancels the run


def test_on_kill_cancels_when_opted_in(server: FakeEvalsServer, eval_id: str) -> None:
    run_id = server.add_run(eval_id, RunScript(queued_seconds=600))["id"]
    asyncio.run(make(eval_id, run_id, cancel_on_kill=False).on_kill())
    assert server.get_run(run_id)["status"] == "queued"
    trigger = make(eval_id, run_id, cancel_on_kill=True)
    asyncio.run(trigger.on_kill())
    assert server.get_run(run_id)["status"] == "canceled"
    asyncio.run(trigger.on_kill())  # idempotent: a second kill of a canceled run is harmless
    assert server.get_run(run_id)["status"] == "canceled"


def test_on_kill_is_bounded_and_never_raises(
    server: FakeEvalsServer, eval_id: str, trigger_logs: list[MutableMapping[str, Any]]
) -> None:
    run_id = server.add_run(eval_id, RunScript(queued_seconds=600))["id"]
    server.inject(Fault(kind="slow", delay=5, method="POST", count=None))
    started = time.monotonic()
    asyncio.run(make(eval_id, run_id, cancel_on_kill=True, cancel_timeout=0.5).on_kill())
    assert time.monotonic() - started < 1.5
    assert any("could not cancel" in str(e["event"]) for e in trigger_logs)


def test_secret_free_repr_and_kwargs(server: FakeEvalsServer, eval_id: str) -> None:
    trigger = make(eval_id, "evalrun_abc")
    assert KEY not in repr(trigger) and KEY not in json.dumps(trigger.serialize()[1])


def test_concurrent_waits_share_one_client_and_one_logger(
    server: FakeEvalsServer, eval_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A triggerer holds thousands of waits: per wait it should keep its run's request, not a client,
    settings, auth and logger of its own (each full garbage collection walks them all)."""
    from airflow_provider_aoai_evals.api import client as client_module

    built: list[object] = []
    real_init = client_module.AsyncEvalsClient.__init__

    def counting_init(self: Any, settings: Any) -> None:
        built.append(self)
        real_init(self, settings)

    monkeypatch.setattr(client_module.AsyncEvalsClient, "__init__", counting_init)
    run_ids = [server.add_run(eval_id, RunScript(in_progress_seconds=0.3))["id"] for _ in range(20)]
    triggers = [make(eval_id, run_id) for run_id in run_ids]
    assert triggers[0].log is triggers[1].log

    results = one_event_each(*triggers)
    assert [r["status"] for r in results] == ["success"] * 20
    assert {r["run_id"] for r in results} == set(run_ids)
    assert len(built) == 1


def test_malformed_run_id_is_an_error_event_without_a_request(server: FakeEvalsServer, eval_id: str) -> None:
    [event] = events(make(eval_id, "evalrun_../x"))
    assert event["status"] == "error" and "run_id" in event["message"]
    assert server.count("GET") == 0

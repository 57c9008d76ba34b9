"""EvalRunFinishedTrigger run directly in an event loop against FakeEvalsServer, as the triggerer runs it.

The one fake here is the asset state store (``FakeStateStore``), standing in for the
``AssetStateStoreAccessors`` that Airflow 3.3's triggerer injects (the real one needs a running triggerer
and supervisor); everything else is real HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator, MutableMapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.api.datamodels._generated import AssetReferenceAssetEventDagRun
from airflow.sdk.execution_time.comms import AssetEventDagRunReferenceResult
from airflow.sdk.execution_time.context import TriggeringAssetEventsAccessor
from airflow.triggers.base import BaseEventTrigger

from airflow_provider_aoai_evals.api.errors import EvalsConfigError
from airflow_provider_aoai_evals.hooks.evals import EvalsHook
from airflow_provider_aoai_evals.testing import FakeEvalsServer, Fault, RunScript
from airflow_provider_aoai_evals.triggers._watch_cursor import WatchCursor as _Cursor
from airflow_provider_aoai_evals.triggers.eval_events import EvalRunFinishedTrigger
from tests.dags.conftest import load_dagbag
from tests.support import served_as_default_connection

KEY = "sk-events-canary-7a8b"
LIST_PATH = r"/runs$"
HOLD = RunScript(queued_seconds=600)  # stays queued until the test finishes it
DONE = RunScript(queued_seconds=0, in_progress_seconds=0)  # terminal at once
EXAMPLES = Path(__file__).resolve().parents[2] / "example_dags"

pytestmark = pytest.mark.compat

Events = list[dict[str, Any]]


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEvalsServer]:
    with served_as_default_connection(monkeypatch, KEY) as srv:
        yield srv


@pytest.fixture
def eval_id(server: FakeEvalsServer) -> str:
    return str(server.add_eval(name="watched")["id"])


class FakeStateStore:
    """Stands in for Airflow 3.3's ``AssetStateStoreAccessors`` of a one-asset watcher: async ``aget`` /
    ``aset`` of JSON values (round-tripped through JSON, as the real one stores them in the DB)."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.writes = 0

    async def aget(self, key: str, default: Any = None) -> Any:
        return json.loads(json.dumps(self.data[key])) if key in self.data else default

    async def aset(self, key: str, value: Any) -> None:
        if value is None:
            raise ValueError("Cannot set value as None")
        self.data[key] = json.loads(json.dumps(value))
        self.writes += 1

    def handled(self) -> set[str]:
        [cursor] = self.data.values()
        return set(cursor["handled"])


class BrokenStore:
    """A store whose every call raises ``exc``."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc
        self.calls = 0

    async def aget(self, key: str, default: Any = None) -> Any:
        self.calls += 1
        raise self.exc

    async def aset(self, key: str, value: Any) -> None:
        self.calls += 1
        raise self.exc


def make(eval_id: str, store: Any = None, **kw: Any) -> EvalRunFinishedTrigger:
    kw.setdefault("poll_interval", 0.05)
    trigger = EvalRunFinishedTrigger(eval_id=eval_id, **kw)
    tune(trigger, store)
    return trigger


def tune(trigger: EvalRunFinishedTrigger, store: Any = None) -> EvalRunFinishedTrigger:
    """Shorten the trigger's runtime pacing for tests, and inject a state store as the 3.3 triggerer does."""
    trigger.permanent_error_interval = 0.2
    trigger.cursor_commit_delay = 0.2
    trigger.asset_state_store = store
    return trigger


def revive(trigger: EvalRunFinishedTrigger, store: Any = None) -> EvalRunFinishedTrigger:
    """A new trigger from what the DB holds (classpath and JSON kwargs), as after a triggerer restart."""
    classpath, kwargs = trigger.serialize()
    module, name = classpath.rsplit(".", 1)
    revived = getattr(importlib.import_module(module), name)(**json.loads(json.dumps(kwargs)))
    assert revived.serialize() == (classpath, kwargs)
    return tune(revived, store)


@contextlib.asynccontextmanager
async def watching(trigger: EvalRunFinishedTrigger) -> AsyncIterator[Events]:
    """Consume ``trigger.run()`` in a task (as the triggerer does); cancel it on exit (a triggerer stop)."""
    events: Events = []

    async def consume() -> None:
        async for event in trigger.run():
            events.append(event.payload)

    task = asyncio.ensure_future(consume())
    try:
        yield events
        assert not task.done(), "an event trigger must never return"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for a condition")
        await asyncio.sleep(0.02)


def ids(events: Events) -> list[str]:
    return [e["run_id"] for e in events]


def add(server: FakeEvalsServer, eval_id: str, script: RunScript = HOLD) -> str:
    return str(server.add_run(eval_id, script)["id"])


# -- firing ------------------------------------------------------------------------------------------------


async def test_fires_once_per_finished_run(server: FakeEvalsServer, eval_id: str) -> None:
    a, b, running = add(server, eval_id), add(server, eval_id), add(server, eval_id)
    async with watching(make(eval_id)) as events:
        await asyncio.sleep(0.3)
        assert events == []  # nothing finished yet
        server.finish_run(a)
        await until(lambda: len(events) == 1)
        c = add(server, eval_id)  # created after the watch started
        await asyncio.sleep(0.2)
        server.finish_run(b, "failed")
        server.finish_run(c)
        await until(lambda: len(events) == 3)
        await asyncio.sleep(0.4)  # several more polls: no repeats
    # b and c finished in the same poll: their order is the API's (created_at, id) order, not the test's.
    assert ids(events)[0] == a and sorted(ids(events)[1:]) == sorted([b, c]) and running not in ids(events)
    first = events[0]
    assert set(first) == {"eval_id", "run_id", "status", "summary", "report_url"}
    assert first["eval_id"] == eval_id and first["status"] == "completed"
    assert first["summary"]["run_id"] == a and first["summary"]["status"] == "completed"
    assert first["report_url"] == server.get_run(a)["report_url"]
    assert {e["run_id"]: e["status"] for e in events}[b] == "failed"
    json.dumps(events)  # payloads are JSON: they become asset event extras


async def test_statuses_filter(server: FakeEvalsServer, eval_id: str) -> None:
    ok, bad, stopped = add(server, eval_id), add(server, eval_id), add(server, eval_id)
    async with watching(make(eval_id, statuses=("completed",))) as events:
        await asyncio.sleep(0.2)
        server.finish_run(bad, "failed")
        server.finish_run(stopped, "canceled")
        server.finish_run(ok)
        await until(lambda: len(events) == 1)
        await asyncio.sleep(0.4)
    assert ids(events) == [ok]


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"statuses": ("queued",)}, "statuses"),
        ({"statuses": "completed"}, "statuses"),
        ({"statuses": ()}, "statuses"),
        ({"poll_interval": 0}, "poll_interval"),
        ({"lookback_seconds": -1}, "lookback_seconds"),
        ({"max_runs_per_poll": 0}, "max_runs_per_poll"),
        ({"eval_id": "../evil"}, "eval_id"),
    ],
)
def test_bad_arguments_fail_at_parse_time(kwargs: dict[str, Any], parameter: str) -> None:
    kwargs.setdefault("eval_id", "eval_x")
    with pytest.raises(EvalsConfigError) as info:
        EvalRunFinishedTrigger(**kwargs)
    assert info.value.parameter == parameter


async def test_lookback_decides_what_history_fires_on_a_fresh_start(
    server: FakeEvalsServer, eval_id: str
) -> None:
    state = server._state
    state.wall_clock = lambda: time.time() - 7200  # runs created two hours ago
    old_done = add(server, eval_id, DONE)
    old_running = add(server, eval_id)
    state.wall_clock = lambda: time.time() - 600  # ten minutes ago
    recent_done = add(server, eval_id, DONE)
    state.wall_clock = time.time
    async with watching(make(eval_id, lookback_seconds=3600)) as events:
        await until(lambda: len(events) == 1)
        # An old run still in flight at start-up is tracked whatever its age.
        server.finish_run(old_running)
        await until(lambda: len(events) == 2)
        await asyncio.sleep(0.3)
    assert ids(events) == [recent_done, old_running] and old_done not in ids(events)
    async with watching(make(eval_id, lookback_seconds=0)) as events:  # no history at all
        await asyncio.sleep(0.4)
    assert events == []


async def test_in_flight_run_pushed_off_the_listing_is_still_followed(
    server: FakeEvalsServer, eval_id: str
) -> None:
    early = add(server, eval_id)
    async with watching(make(eval_id, max_runs_per_poll=2)) as events:
        await asyncio.sleep(0.2)
        newer = [add(server, eval_id) for _ in range(5)]  # `early` is now far below the first page
        await asyncio.sleep(0.2)
        server.finish_run(early)
        await until(lambda: len(events) == 1)
        server.finish_run(newer[0])
        await until(lambda: len(events) == 2)
        await asyncio.sleep(0.3)
    assert ids(events) == [early, newer[0]]
    assert server.count("GET", r"/runs/[^/]+$") >= 1  # the pending run was fetched by id


async def test_a_burst_larger_than_one_poll_is_read_over_several(
    server: FakeEvalsServer, eval_id: str
) -> None:
    done = [add(server, eval_id, DONE) for _ in range(11)]
    async with watching(make(eval_id, max_runs_per_poll=3)) as events:
        await until(lambda: len(events) == 11)
        await asyncio.sleep(0.4)
    assert sorted(ids(events)) == sorted(done) and len(events) == 11


# -- restarts ----------------------------------------------------------------------------------------------


async def test_restart_without_a_store_delivers_at_least_once(server: FakeEvalsServer, eval_id: str) -> None:
    """Airflow 3.1/3.2: nothing is persisted, so a restart re-fires recent history (a repeat) and never
    misses a run that finished while the triggerer was down."""
    a, b = add(server, eval_id), add(server, eval_id)
    first = make(eval_id)
    async with watching(first) as events:
        await asyncio.sleep(0.2)
        server.finish_run(a)
        await until(lambda: len(events) == 1)
    assert ids(events) == [a]
    server.finish_run(b, "canceled")  # finished while the triggerer was down
    async with watching(revive(first)) as events:
        await until(lambda: len(events) == 2)
        await asyncio.sleep(0.3)
    assert sorted(ids(events)) == sorted([a, b])  # b delivered; a repeated (allowed on 3.1/3.2)


async def test_restart_with_a_store_neither_repeats_nor_misses(server: FakeEvalsServer, eval_id: str) -> None:
    """Airflow 3.3: the cursor in the asset state store carries over a restart."""
    store = FakeStateStore()
    a, b, c = add(server, eval_id), add(server, eval_id), add(server, eval_id)
    first = make(eval_id, store)
    async with watching(first) as events:
        await asyncio.sleep(0.2)
        server.finish_run(a)
        await until(lambda: len(events) == 1)
        await until(lambda: a in store.handled())  # committed once the event is surely persisted
    assert ids(events) == [a]
    server.finish_run(b)  # finished while down
    d = add(server, eval_id, DONE)  # created and finished while down
    async with watching(revive(first, store)) as events:
        await until(lambda: len(events) == 2)
        server.finish_run(c)
        await until(lambda: len(events) == 3)
        await asyncio.sleep(0.4)
    assert sorted(ids(events)[:2]) == sorted([b, d]) and ids(events)[2] == c  # and no repeat of a
    assert store.handled() >= {a, b, c, d}
    assert len(json.dumps(store.data)) < 2000


async def test_a_crash_right_after_an_event_repeats_it_rather_than_losing_it(
    server: FakeEvalsServer, eval_id: str
) -> None:
    """The triggerer stores events asynchronously; the cursor must never get ahead of them."""
    store = FakeStateStore()
    a = add(server, eval_id)
    first = make(eval_id, store)
    first.cursor_commit_delay = 60.0
    async with watching(first) as events:
        await asyncio.sleep(0.2)
        server.finish_run(a)
        await until(lambda: len(events) == 1)
        await asyncio.sleep(0.2)
    assert store.writes >= 1 and a not in store.handled()  # written, but as still pending
    async with watching(revive(first, store)) as events:
        await until(lambda: len(events) == 1)
        await asyncio.sleep(0.3)
    assert ids(events) == [a]


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("Task has 2 concrete inlets and outlets — use context['asset_state_store'][MY_ASSET]"),
        RuntimeError("supervisor comms failed"),
    ],
)
async def test_an_unusable_store_degrades_to_memory(
    server: FakeEvalsServer, eval_id: str, exc: Exception, trigger_logs: list[MutableMapping[str, Any]]
) -> None:
    store = BrokenStore(exc)
    a = add(server, eval_id)
    async with watching(make(eval_id, store)) as events:
        await asyncio.sleep(0.2)
        server.finish_run(a)
        await until(lambda: len(events) == 1)
        await asyncio.sleep(0.3)
    assert ids(events) == [a]
    warnings = [e for e in trigger_logs if e["log_level"] == "warning" and "cursor" in str(e["event"])]
    assert len(warnings) == 1  # said once, not once per poll
    if isinstance(exc, ValueError):
        assert store.calls == 1  # a multi-asset watcher: the store is not tried again


async def test_a_corrupt_stored_cursor_is_ignored(server: FakeEvalsServer, eval_id: str) -> None:
    store = FakeStateStore()
    trigger = make(eval_id, store)
    store.data[trigger._store_key] = {"v": 1, "floor": "soon"}
    a = add(server, eval_id, DONE)
    async with watching(trigger) as events:
        await until(lambda: len(events) == 1)
    assert ids(events) == [a]


async def test_a_gap_whose_resume_run_was_deleted_is_read_again_from_the_top(
    server: FakeEvalsServer, eval_id: str
) -> None:
    done = [add(server, eval_id, DONE) for _ in range(4)]
    trigger = make(eval_id, max_runs_per_poll=10)
    # A cursor whose open gap resumes after a run that no longer exists (the API answers 400 on `after`),
    # and whose floor is above every run, so only the gap could find them.
    cursor = _Cursor(floor=int(time.time()) + 3600, seeded=True, gap=("evalrun_deleted", 0))
    finished: list[Any] = []
    async with await EvalsHook().get_async_conn() as client:
        await trigger._poll(client, cursor, finished)
        assert finished == [] and cursor.gap is None and cursor.floor == 0
        await trigger._poll(client, cursor, finished)
    assert sorted(run.id for run in finished) == sorted(done)


async def test_a_service_without_the_status_filter_is_still_watched(
    server: FakeEvalsServer, eval_id: str, trigger_logs: list[MutableMapping[str, Any]]
) -> None:
    server.inject(Fault(kind="status", status=400, message="status not supported", path_regex=LIST_PATH))
    a = add(server, eval_id)
    async with watching(make(eval_id)) as events:
        await asyncio.sleep(0.2)
        server.finish_run(a)
        await until(lambda: len(events) == 1)
    assert ids(events) == [a]
    assert any("Cannot list queued runs" in str(e["event"]) for e in trigger_logs)


# -- errors ------------------------------------------------------------------------------------------------


async def test_transient_burst_is_survived(
    server: FakeEvalsServer, eval_id: str, trigger_logs: list[MutableMapping[str, Any]]
) -> None:
    a = add(server, eval_id)
    async with watching(make(eval_id)) as events:
        await asyncio.sleep(0.2)
        server.inject(Fault(kind="status", status=503, retry_after=0, path_regex=LIST_PATH, count=8))
        server.inject(Fault(kind="status", status=429, retry_after=0, path_regex=LIST_PATH, count=4))
        server.finish_run(a)
        await until(lambda: len(events) == 1)
        await asyncio.sleep(0.3)
    assert ids(events) == [a]
    assert not server.pending_faults
    assert any("still watching" in str(e["event"]) for e in trigger_logs)


@pytest.mark.parametrize("status", [401, 403, 404])
async def test_permanent_error_is_logged_and_retried_slowly(
    server: FakeEvalsServer, eval_id: str, status: int, trigger_logs: list[MutableMapping[str, Any]]
) -> None:
    a = add(server, eval_id, DONE)
    server.inject(Fault(kind="status", status=status, message="nope", path_regex=LIST_PATH, count=None))
    trigger = make(eval_id)
    async with watching(trigger) as events:
        await asyncio.sleep(0.5)
        polls = server.count("GET", LIST_PATH)
        assert 1 <= polls <= 4  # every permanent_error_interval (0.2 s), not every poll_interval (0.05 s)
        server.clear_faults()  # e.g. the key was fixed
        await until(lambda: len(events) == 1)
    assert ids(events) == [a]
    errors = [e for e in trigger_logs if e["log_level"] == "error"]
    assert errors and "failed permanently" in str(errors[0]["event"])
    assert str(status) in str(errors[0]["event"]) and KEY not in json.dumps(trigger_logs, default=str)


async def test_missing_connection_keeps_the_watcher_alive(
    server: FakeEvalsServer, eval_id: str, monkeypatch: pytest.MonkeyPatch, trigger_logs: list[Any]
) -> None:
    a = add(server, eval_id, DONE)
    async with watching(make(eval_id, conn_id="added_later")) as events:
        await asyncio.sleep(0.3)
        assert any("added_later" in str(e["event"]) for e in trigger_logs if e["log_level"] == "error")
        conn = {"conn_type": "aoai_evals", "host": server.base_url, "password": KEY}
        monkeypatch.setenv("AIRFLOW_CONN_ADDED_LATER", json.dumps(conn))
        await until(lambda: len(events) == 1)
    assert ids(events) == [a]


# -- identity ----------------------------------------------------------------------------------------------


def test_kwargs_are_static_secret_free_and_round_trip(server: FakeEvalsServer, eval_id: str) -> None:
    first = EvalRunFinishedTrigger(eval_id)
    time.sleep(0.01)
    second = EvalRunFinishedTrigger(eval_id)
    assert first.serialize() == second.serialize()  # nothing depends on when the DAG file was parsed
    classpath, kwargs = first.serialize()
    assert classpath == "airflow_provider_aoai_evals.triggers.eval_events.EvalRunFinishedTrigger"
    assert kwargs == {
        "eval_id": eval_id,
        "conn_id": "aoai_evals_default",
        "poll_interval": 60.0,
        "statuses": ["completed", "failed", "canceled"],
        "lookback_seconds": 3600.0,
        "max_runs_per_poll": 100,
    }
    assert KEY not in json.dumps(kwargs) and KEY not in repr(first)
    assert revive(first).serialize() == (classpath, kwargs)


def test_equal_triggers_hash_equal() -> None:
    one = EvalRunFinishedTrigger("eval_a", statuses=("completed",), lookback_seconds=3600)
    two = EvalRunFinishedTrigger("eval_a", statuses=["completed"], lookback_seconds=3600.0)
    other = EvalRunFinishedTrigger("eval_b", statuses=("completed",))
    assert BaseEventTrigger.hash(*one.serialize()) == BaseEventTrigger.hash(*two.serialize())
    assert BaseEventTrigger.hash(*one.serialize()) != BaseEventTrigger.hash(*other.serialize())
    assert isinstance(one, BaseEventTrigger)


# -- the example DAG ---------------------------------------------------------------------------------------


def test_example_dag_parses_and_reads_the_payload(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AOAI_EVALS_WATCH_EVAL_ID", "eval_from_env")
    bag = load_dagbag(EXAMPLES)
    dag = bag.get_dag("example_eval_completion_asset")
    assert dag is not None
    spec = importlib.util.spec_from_file_location(
        "example_asset", EXAMPLES / "example_eval_completion_asset.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    asset = module.eval_completion_asset
    [watcher] = asset.watchers
    classpath, kwargs = watcher.trigger.serialize()
    assert classpath.endswith("EvalRunFinishedTrigger") and kwargs["eval_id"] == "eval_from_env"
    assert kwargs["statuses"] == ["completed"]

    payload: dict[str, Any] = {
        "eval_id": "eval_from_env",
        "run_id": "evalrun_1",
        "status": "completed",
        "summary": {"pass_rate": 0.75},
        "report_url": "https://example/report",
    }
    # What the task gets in context["triggering_asset_events"]: Airflow's own accessor, built from the event
    # the scheduler makes of a trigger event (extra = {"from_trigger": True, "payload": ...}).
    event = AssetEventDagRunReferenceResult(
        asset=AssetReferenceAssetEventDagRun(name=asset.name, uri=asset.uri, extra={}),
        extra={"from_trigger": True, "payload": payload},
        source_task_id=None,
        source_dag_id=None,
        source_run_id=None,
        source_map_index=None,
        source_aliases=[],
        timestamp=datetime.now(timezone.utc),
    )
    accessor = TriggeringAssetEventsAccessor.build([event])
    callable_ = module.example_eval_completion_asset().task_dict["report_finished_runs"].python_callable
    assert callable_(triggering_asset_events=accessor) == [
        {"run_id": "evalrun_1", "status": "completed", "pass_rate": 0.75}
    ]

"""Waits starting close together share one connection read, and an edited connection is never hidden.

Reads are counted at the hook (the real Airflow lookup still runs); connections come from environment
variables or from Airflow's local-file secrets backend, and every poll goes to FakeEvalsServer.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_aoai_evals.hooks import settings_reuse
from airflow_provider_aoai_evals.hooks.evals import EvalsHook
from airflow_provider_aoai_evals.testing import FakeEvalsServer, Fault, RunScript
from airflow_provider_aoai_evals.triggers.eval_run import EvalRunTrigger
from tests.support import connection_json, one_event_each

pytestmark = pytest.mark.compat
RUN_PATH = r"/runs/[^/]+$"
WINDOW_ENV = "AIRFLOW__AOAI_EVALS__TRIGGER_CONNECTION_REUSE_SECONDS"


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Connection ids read through the hook; starts with nothing kept from earlier tests."""
    seen: list[str] = []
    real = EvalsHook.aget_settings

    async def counting(self: EvalsHook) -> Any:
        seen.append(self.conn_id)
        return await real(self)

    monkeypatch.setattr(EvalsHook, "aget_settings", counting)
    settings_reuse.forget()
    yield seen
    settings_reuse.forget()


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEvalsServer]:
    with FakeEvalsServer(api_key="sk-reuse-a") as srv:
        monkeypatch.setenv("AIRFLOW_CONN_AOAI_EVALS_DEFAULT", connection_json(srv))
        yield srv


def wait(server: FakeEvalsServer, eval_id: str, **kw: Any) -> EvalRunTrigger:
    run_id = server.add_run(eval_id, RunScript(queued_seconds=0.1, in_progress_seconds=0.1))["id"]
    kw.setdefault("deadline", time.time() + 30)
    return EvalRunTrigger(eval_id=eval_id, run_id=run_id, poll_interval=0.05, **kw)


def test_waits_starting_together_or_soon_after_read_the_connection_once(
    server: FakeEvalsServer, reads: list[str]
) -> None:
    eval_id = server.add_eval(name="e")["id"]
    assert [e["status"] for e in one_event_each(*(wait(server, eval_id) for _ in range(30)))] == [
        "success"
    ] * 30
    for _ in range(3):  # later waits, each in a fresh event loop, within the window
        assert one_event_each(wait(server, eval_id))[0]["status"] == "success"
    assert reads == ["aoai_evals_default"]


def test_reads_are_reused_only_within_the_configured_window(
    server: FakeEvalsServer, reads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    eval_id = server.add_eval(name="e")["id"]
    monkeypatch.setenv(WINDOW_ENV, "0.5")
    one_event_each(wait(server, eval_id))
    one_event_each(wait(server, eval_id))
    assert len(reads) == 1
    time.sleep(0.6)
    one_event_each(wait(server, eval_id))
    assert len(reads) == 2

    monkeypatch.setenv(WINDOW_ENV, "0")  # off: every wait reads
    settings_reuse.forget()
    for _ in range(3):
        one_event_each(wait(server, eval_id))
    assert len(reads) == 5


@pytest.mark.parametrize("value", ["-1", "soon", "nan"])
def test_a_bad_window_is_an_error_event_naming_the_option(
    server: FakeEvalsServer, reads: list[str], monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    eval_id = server.add_eval(name="e")["id"]
    monkeypatch.setenv(WINDOW_ENV, value)
    [event] = one_event_each(wait(server, eval_id))
    assert event["status"] == "error"
    assert "[aoai_evals] trigger_connection_reuse_seconds" in event["message"] and value in event["message"]
    assert server.count("GET", RUN_PATH) == 0  # nothing was polled with an unchecked setting


def test_an_edited_environment_connection_is_read_again(
    server: FakeEvalsServer, reads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    one_event_each(wait(server, server.add_eval(name="e")["id"]))
    polls = server.count("GET", RUN_PATH)
    with FakeEvalsServer(api_key="sk-reuse-b") as other:
        monkeypatch.setenv("AIRFLOW_CONN_AOAI_EVALS_DEFAULT", connection_json(other))
        [event] = one_event_each(wait(other, other.add_eval(name="e")["id"]))
    assert event["status"] == "success" and len(reads) == 2
    assert server.count("GET", RUN_PATH) == polls  # read before the first poll, not after a failed one


def test_concurrent_reads_share_a_failure_and_keep_nothing(
    reads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_MISSING_EVALS", raising=False)
    triggers = [
        EvalRunTrigger(
            eval_id="eval_x", run_id=f"evalrun_{i}", conn_id="missing_evals", deadline=time.time() + 5
        )
        for i in range(5)
    ]
    events = one_event_each(*triggers)
    assert [e["status"] for e in events] == ["error"] * 5
    assert all("missing_evals" in e["message"] for e in events)
    assert reads == ["missing_evals"]
    one_event_each(triggers[0])
    assert reads == ["missing_evals"] * 2  # a failed read is not reused


# -- a connection edited where no environment variable shows it (a secrets backend) -----------------------


@pytest.fixture
def file_connections(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """Airflow's local-file secrets backend, read by every connection lookup; rewrite the file to edit."""
    sdk_configuration = pytest.importorskip("airflow.sdk.configuration")
    clear = getattr(sdk_configuration, "clear_secrets_backends_cache", None)
    if clear is None:
        pytest.skip("this Airflow keeps its secrets backends for the process's life")
    path = tmp_path / "connections.json"
    monkeypatch.setenv("AIRFLOW__SECRETS__BACKEND", "airflow.secrets.local_filesystem.LocalFilesystemBackend")
    monkeypatch.setenv("AIRFLOW__SECRETS__BACKEND_KWARGS", json.dumps({"connections_file_path": str(path)}))
    clear()
    try:
        yield path
    finally:
        clear()


def point(path: Path, server: FakeEvalsServer) -> None:
    path.write_text(json.dumps({"rotating": json.loads(connection_json(server))}))


def test_a_wait_on_a_reused_read_picks_up_an_edit_after_one_failed_poll(
    file_connections: Path, reads: list[str], trigger_logs: list[MutableMapping[str, Any]]
) -> None:
    with FakeEvalsServer(api_key="sk-old") as old, FakeEvalsServer(api_key="sk-new") as new:
        point(file_connections, old)
        assert (
            one_event_each(wait(old, old.add_eval(name="e")["id"], conn_id="rotating"))[0]["status"]
            == "success"
        )
        # The user moves the connection to a new endpoint and key; the old key stops working.
        point(file_connections, new)
        old.inject(Fault(kind="status", status=401, message="key revoked", path_regex=RUN_PATH, count=None))
        before = old.count("GET", RUN_PATH)
        [event] = one_event_each(wait(new, new.add_eval(name="e")["id"], conn_id="rotating"))
        assert event["status"] == "success"
        assert old.count("GET", RUN_PATH) == before + 1  # one poll on the reused read, then the edit
        assert reads == ["rotating", "rotating"]
    assert any("changed since this wait read it" in str(e["event"]) for e in trigger_logs)


def test_an_unchanged_connection_still_fails_at_once_after_one_read(
    file_connections: Path, reads: list[str]
) -> None:
    with FakeEvalsServer(api_key="sk-old") as srv:
        point(file_connections, srv)
        eval_id = srv.add_eval(name="e")["id"]
        one_event_each(wait(srv, eval_id, conn_id="rotating"))
        srv.inject(Fault(kind="status", status=401, message="key revoked", path_regex=RUN_PATH, count=None))
        before = srv.count("GET", RUN_PATH)
        [event] = one_event_each(wait(srv, eval_id, conn_id="rotating"))
    assert event["status"] == "error" and event["error"]["status_code"] == 401
    assert "key revoked" in event["message"]
    assert srv.count("GET", RUN_PATH) == before + 1 and reads == ["rotating", "rotating"]

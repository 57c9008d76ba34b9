"""Example DAGs run end to end with ``dag.test()`` against FakeEvalsServer (in-process, shared AIRFLOW_HOME)."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from airflow_provider_aoai_evals.testing import FakeEvalsServer, RunScript

EXAMPLES = Path(__file__).resolve().parents[2] / "example_dags"
KEY = "sk-dag-test-key"

pytestmark = pytest.mark.compat


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEvalsServer]:
    with FakeEvalsServer(flavor="openai", api_key=KEY) as srv:
        srv.default_script = RunScript(queued_seconds=0.2, in_progress_seconds=0.5)
        conn = {"conn_type": "aoai_evals", "host": srv.base_url, "password": KEY}
        monkeypatch.setenv("AIRFLOW_CONN_AOAI_EVALS_DEFAULT", json.dumps(conn))
        yield srv


def states(dag_run: object) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}  # type: ignore[attr-defined]


def test_hook_example_completes(server: FakeEvalsServer) -> None:
    dag = load("example_eval_run_with_hook").example_eval_run_with_hook()
    dag_run = dag.test(run_conf={"poll_interval": 0.2})
    assert states(dag_run) == {"ensure_eval": "success", "start_run": "success", "wait_for_run": "success"}
    assert server.count("POST", r"/runs$") == 1
    run = server.requests[-1]
    assert run.status == 200
    # Second run of the DAG reuses the eval (found by name) and starts a new run.
    dag.test(run_conf={"poll_interval": 0.2})
    assert server.count("POST", r"^/evals$") == 1 and server.count("POST", r"/runs$") == 2


def test_hook_example_fails_on_failed_run(server: FakeEvalsServer) -> None:
    server.default_script = RunScript(
        queued_seconds=0.1,
        in_progress_seconds=0.2,
        final_status="failed",
        error={"code": "grader_error", "message": "grader crashed"},
    )
    dag = load("example_eval_run_with_hook").example_eval_run_with_hook()
    dag_run = dag.test(run_conf={"poll_interval": 0.2})
    assert states(dag_run)["wait_for_run"] == "failed"

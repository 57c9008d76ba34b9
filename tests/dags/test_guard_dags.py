"""Timeouts that cancel and token budgets, end to end through ``dag.test()`` against FakeEvalsServer: the
task's state, and what the server did to the run.

``dag.test()`` runs the trigger inline and ignores the defer timeout, so a deferred wait's timeout here is
the trigger's own deadline, the one that cancels.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_aoai_evals.testing import FakeEvalsServer, RunScript
from tests.support import served_as_default_connection

from .conftest import HERE, load_dagbag, xcom_value

KEY = "sk-guard-dag-key"
CANCEL = r"/runs/[^/]+(/cancel)?$"
pytestmark = pytest.mark.compat
#: 100 items at 100 tokens each, graded over 4 s, usage visible as it grows: 1,500 tokens in about 0.6 s.
COSTLY = RunScript(
    queued_seconds=0,
    in_progress_seconds=4.0,
    output_items=100,
    usage_while_running=True,
    prompt_tokens_per_item=98,
)
STUCK = RunScript(queued_seconds=600)


@pytest.fixture(scope="module")
def dagbag() -> Any:
    return load_dagbag(HERE / "dag_files")


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEvalsServer]:
    with served_as_default_connection(monkeypatch, KEY) as srv:
        yield srv


def run_dag(
    dagbag: Any, dag_id: str, server: FakeEvalsServer, script: RunScript
) -> tuple[str, dict[str, Any]]:
    """Run the one-task DAG on a run following ``script`` (started by the task, or watched by the sensor);
    return the task's state and the run as the server has it afterwards."""
    eval_id = server.add_eval(name="e")["id"]
    server.default_script = script
    run_id = server.add_run(eval_id)["id"] if "sensor" in dag_id else ""
    dag_run = dagbag.get_dag(dag_id).test(run_conf={"eval_id": eval_id, "run_id": run_id})
    [ti] = dag_run.get_task_instances()
    run_id = run_id or xcom_value(dag_run, "wait", "run_id")
    return str(ti.state), server.get_run(run_id)


@pytest.mark.parametrize(
    "dag_id",
    [
        "guard_create_deferrable_budget",
        "guard_create_polling_budget",
        "guard_sensor_deferrable_budget",
        "guard_sensor_poke_budget",
    ],
)
def test_over_budget_cancels_the_run_and_fails(dagbag: Any, server: FakeEvalsServer, dag_id: str) -> None:
    state, run = run_dag(dagbag, dag_id, server, COSTLY)
    assert state == "failed"
    assert run["status"] == "canceled" and run["result_counts"]["total"] < 100
    assert server.count("POST", CANCEL) == 1
    if "create" in dag_id:  # no retry started a second run
        assert server.count("POST", r"^/evals/[^/]+/runs$") == 1


@pytest.mark.parametrize(
    ("dag_id", "expected"),
    [
        ("guard_create_deferrable_timeout", "failed"),
        ("guard_sensor_deferrable_timeout", "failed"),
        ("guard_sensor_poke_timeout", "failed"),
        ("guard_sensor_poke_timeout_soft", "skipped"),
    ],
)
def test_a_timeout_cancels_the_run(dagbag: Any, server: FakeEvalsServer, dag_id: str, expected: str) -> None:
    state, run = run_dag(dagbag, dag_id, server, STUCK)
    assert state == expected
    assert run["status"] == "canceled" and server.count("POST", CANCEL) == 1

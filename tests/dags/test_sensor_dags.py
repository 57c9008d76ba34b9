"""EvalRunSensor end to end through ``dag.test()`` against FakeEvalsServer: the task state a user expects.

``dag.test()`` runs the trigger inline and ignores the defer timeout, so timeouts here come from the
trigger's own deadline, as they would after a triggerer restart.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_aoai_evals.testing import FakeEvalsServer, Fault, RunScript
from tests.support import served_as_default_connection

from .conftest import HERE, load_dagbag, xcom_value

KEY = "sk-sensor-dag-key"
pytestmark = pytest.mark.compat


@pytest.fixture(scope="module")
def dagbag() -> Any:
    return load_dagbag(HERE / "dag_files")


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEvalsServer]:
    with served_as_default_connection(monkeypatch, KEY) as srv:
        yield srv


def run_dag(dagbag: Any, dag_id: str, server: FakeEvalsServer, script: RunScript) -> tuple[str, Any]:
    """Run the one-task DAG; return the task's state and what it pushed to XCom."""
    eval_id = server.add_eval(name="e")["id"]
    run_id = server.add_run(eval_id, script)["id"]
    dag_run = dagbag.get_dag(dag_id).test(run_conf={"eval_id": eval_id, "run_id": run_id})
    [ti] = dag_run.get_task_instances()
    return str(ti.state), xcom_value(dag_run, "wait")


def quick(**kw: Any) -> RunScript:
    return RunScript(queued_seconds=0.3, in_progress_seconds=0.6, output_items=6, **kw)


@pytest.mark.parametrize("dag_id", ["sensor_deferrable", "sensor_poke", "sensor_reschedule"])
def test_completed_run_succeeds(dagbag: Any, server: FakeEvalsServer, dag_id: str) -> None:
    state, summary = run_dag(dagbag, dag_id, server, quick())
    assert state == "success"
    assert summary["status"] == "completed" and summary["counts"]["total"] == 6
    assert summary["pass_rate"] == summary["counts"]["passed"] / 6


@pytest.mark.parametrize("final", ["failed", "canceled"])
def test_failed_and_canceled_runs_fail_the_task(dagbag: Any, server: FakeEvalsServer, final: str) -> None:
    state, _ = run_dag(dagbag, "sensor_deferrable", server, quick(final_status=final))
    assert state == "failed"


def test_failed_run_accepted_when_configured(dagbag: Any, server: FakeEvalsServer) -> None:
    state, _ = run_dag(dagbag, "sensor_deferrable_any_terminal", server, quick(final_status="failed"))
    assert state == "success"


@pytest.mark.parametrize(
    ("dag_id", "expected"),
    [
        ("sensor_deferrable_timeout", "failed"),
        ("sensor_deferrable_timeout_soft", "skipped"),
        ("sensor_poke_timeout_soft", "skipped"),
    ],
)
def test_timeout(dagbag: Any, server: FakeEvalsServer, dag_id: str, expected: str) -> None:
    state, _ = run_dag(dagbag, dag_id, server, RunScript(queued_seconds=600))
    assert state == expected


def test_429_and_503_burst_during_the_wait(dagbag: Any, server: FakeEvalsServer) -> None:
    server.inject(
        Fault(kind="status", status=429, retry_after=0.2, method="GET", path_regex=r"/runs/[^/]+$", count=4)
    )
    server.inject(Fault(kind="status", status=503, method="GET", path_regex=r"/runs/[^/]+$", count=6))
    state, _ = run_dag(
        dagbag, "sensor_deferrable", server, RunScript(queued_seconds=1.0, in_progress_seconds=1.0)
    )
    assert state == "success"
    assert not server.pending_faults  # every injected fault was met and survived


def test_sensor_publishes_report_link(dagbag: Any, server: FakeEvalsServer) -> None:
    from airflow_provider_aoai_evals.links import EvalRunReportLink

    eval_id = server.add_eval(name="e")["id"]
    run_id = server.add_run(eval_id, quick())["id"]
    dag_run = dagbag.get_dag("sensor_deferrable").test(run_conf={"eval_id": eval_id, "run_id": run_id})
    report_url = server.get_run(run_id)["report_url"]
    assert xcom_value(dag_run, "wait", "report_url") == report_url
    assert xcom_value(dag_run, "wait", EvalRunReportLink().xcom_key) == report_url

"""The example DAGs end to end with ``dag.test()`` against FakeEvalsServer (in-process, shared AIRFLOW_HOME)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_aoai_evals.testing import FakeEvalsServer, RunScript

from .conftest import load_dagbag, xcom_value

EXAMPLES = Path(__file__).resolve().parents[2] / "example_dags"
KEY = "sk-dag-test-key"

pytestmark = pytest.mark.compat


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeEvalsServer]:
    with FakeEvalsServer(flavor="openai", api_key=KEY) as srv:
        srv.default_script = RunScript(queued_seconds=0.2, in_progress_seconds=0.5)
        conn = {"conn_type": "aoai_evals", "host": srv.base_url, "password": KEY}
        monkeypatch.setenv("AIRFLOW_CONN_AOAI_EVALS_DEFAULT", json.dumps(conn))
        monkeypatch.setenv("AOAI_EVALS_EXAMPLE_POLL_INTERVAL", "0.3")
        monkeypatch.setenv("AIRFLOW_VAR_AOAI_EVALS_EXPORT_ROOT", f"file://{tmp_path}")
        yield srv


@pytest.fixture
def examples(server: FakeEvalsServer) -> Any:
    return load_dagbag(EXAMPLES)  # parsed after the environment above is set


def states(dag_run: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


def test_hook_example_completes(server: FakeEvalsServer, examples: Any) -> None:
    dag = examples.get_dag("example_eval_run_with_hook")
    dag_run = dag.test(run_conf={"poll_interval": 0.2})
    assert states(dag_run) == {"ensure_eval": "success", "start_run": "success", "wait_for_run": "success"}
    assert server.count("POST", r"/runs$") == 1
    # A second DAG run reuses the eval (found by name) and starts a new run.
    dag.test(run_conf={"poll_interval": 0.2})
    assert server.count("POST", r"^/evals$") == 1 and server.count("POST", r"/runs$") == 2


def test_hook_example_fails_on_failed_run(server: FakeEvalsServer, examples: Any) -> None:
    server.default_script = RunScript(
        queued_seconds=0.1,
        in_progress_seconds=0.2,
        final_status="failed",
        error={"code": "grader_error", "message": "x"},
    )
    dag_run = examples.get_dag("example_eval_run_with_hook").test(run_conf={"poll_interval": 0.2})
    assert states(dag_run)["wait_for_run"] == "failed"


def test_nightly_eval_promotes_a_good_run(server: FakeEvalsServer, examples: Any, tmp_path: Path) -> None:
    dag_run = examples.get_dag("example_nightly_eval").test()
    assert states(dag_run) == {
        "ensure_eval": "success",
        "run_eval": "success",
        "export_failures": "success",
        "quality_gate": "success",
        "promote": "success",
        "alert": "skipped",
    }
    summary = xcom_value(dag_run, "run_eval")
    export = xcom_value(dag_run, "export_failures")
    assert summary["counts"]["failed"] == export["count"] == 3  # every third of the nine rows fails
    failures = Path(export["path"].removeprefix("file://"))
    assert failures.is_relative_to(tmp_path) and summary["run_id"] in str(failures)
    lines = [json.loads(line) for line in failures.read_text().splitlines()]
    assert len(lines) == 3 and {item["status"] for item in lines} == {"fail"}
    verdict = xcom_value(dag_run, "quality_gate", "verdict")
    assert verdict["passed"] and verdict["baseline_run_id"] is None  # first night: no baseline yet


def test_nightly_eval_alerts_on_a_regression(server: FakeEvalsServer, examples: Any) -> None:
    dag = examples.get_dag("example_nightly_eval")
    dag.test()  # night one: 6/9 pass, becomes the baseline
    server.default_script = RunScript(queued_seconds=0.2, in_progress_seconds=0.5, fail_every=2)
    dag_run = dag.test()  # night two: fewer pass
    assert states(dag_run)["alert"] == "success" and states(dag_run)["promote"] == "skipped"
    verdict = xcom_value(dag_run, "quality_gate", "verdict")
    assert not verdict["passed"] and verdict["baseline_run_id"]
    assert any(c["name"].startswith("regression") and not c["passed"] for c in verdict["checks"])
    assert server.count("POST", r"^/evals$") == 1  # the eval was reused


@pytest.mark.parametrize(("fail_every", "branch"), [(0, "accept"), (2, "reject")])
def test_watch_external_run_branches(
    server: FakeEvalsServer, examples: Any, fail_every: int, branch: str
) -> None:
    eval_id = server.add_eval(name="external")["id"]
    script = RunScript(queued_seconds=0.2, in_progress_seconds=0.5, output_items=10, fail_every=fail_every)
    run_id = server.add_run(eval_id, script)["id"]
    dag_run = examples.get_dag("example_watch_external_run").test(
        run_conf={"eval_id": eval_id, "run_id": run_id}
    )
    result = states(dag_run)
    other = "reject" if branch == "accept" else "accept"
    assert result["wait_for_run"] == "success" and result[branch] == "success" and result[other] == "skipped"

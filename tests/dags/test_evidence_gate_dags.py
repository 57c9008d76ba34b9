"""Gates on evidence through ``dag.test()``: a paired regression that is noise, one that is real, and what
the check and the branch operator do with an inconclusive verdict."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scipy.stats import binomtest

from airflow_provider_aoai_evals.testing import FakeEvalsServer, RunScript

from .conftest import load_dagbag, xcom_value

DAGS = Path(__file__).resolve().parent / "dag_files"
KEY = "sk-evidence-gate-key"
GRADERS = [
    {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}",
     "reference": "{{item.label}}", "operation": "eq"},
]  # fmt: skip

pytestmark = pytest.mark.compat


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEvalsServer]:
    with FakeEvalsServer(flavor="openai", api_key=KEY) as srv:
        conn = {"conn_type": "aoai_evals", "host": srv.base_url, "password": KEY}
        monkeypatch.setenv("AIRFLOW_CONN_AOAI_EVALS_DEFAULT", json.dumps(conn))
        yield srv


def runs(server: FakeEvalsServer, baseline: list[str], candidate: list[str]) -> dict[str, str]:
    """A baseline and a candidate run over the same rows, with the given per-item outcomes."""
    ev = server.add_eval(name="evidence", testing_criteria=GRADERS)
    rows = [{"item": {"label": "x", "i": i}} for i in range(len(baseline))]
    source = {"type": "jsonl", "source": {"type": "file_content", "content": rows}}
    ids = {"eval_id": ev["id"]}
    for key, outcomes in (("baseline_run_id", baseline), ("run_id", candidate)):
        scripted: list[str | dict[str, str]] = [*outcomes]
        script = RunScript(queued_seconds=0, in_progress_seconds=0, outcomes=scripted)
        ids[key] = server.add_run(ev["id"], script, data_source=source)["id"]
    return ids


def run_dag(params: dict[str, str]) -> tuple[dict[str, str], Any]:
    dag = load_dagbag(DAGS).get_dag("evidence_gates")
    dag_run = dag.test(run_conf=params)
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}, dag_run


def test_a_drop_that_is_noise_is_inconclusive(server: FakeEvalsServer) -> None:
    # 50 items: 3 pass->fail and 1 fail->pass, a 4-point drop past max_regression=0.02, p = 0.625.
    baseline = ["pass"] * 45 + ["fail"] * 5
    candidate = ["fail"] * 3 + ["pass"] * 42 + ["pass"] + ["fail"] * 4
    states, dag_run = run_dag(runs(server, baseline, candidate))
    assert states["gate"] == "failed"  # on_inconclusive="fail" (the default)
    assert states["gate_lenient"] == "success"
    assert (states["review"], states["promote"], states["reject"]) == ("success", "skipped", "skipped")
    verdict = xcom_value(dag_run, "branch", "verdict")
    assert verdict["outcome"] == "inconclusive"
    check = next(c for c in verdict["checks"] if c["name"] == "regression:pass_rate")
    assert check["outcome"] == "inconclusive" and check["evidence"]["test"] == "mcnemar-exact"
    assert (check["evidence"]["pass_to_fail"], check["evidence"]["fail_to_pass"]) == (3, 1)
    assert check["evidence"]["p_value"] == pytest.approx(binomtest(3, 4, 0.5).pvalue)
    assert verdict["comparison"]["paired"] is True and verdict["comparison"]["missing_in_candidate"] == 0


def test_a_significant_drop_fails_and_branches_to_reject(server: FakeEvalsServer) -> None:
    # 400 items: 40 pass->fail and none back, a 10-point drop.
    baseline = ["pass"] * 400
    candidate = ["fail"] * 40 + ["pass"] * 360
    states, dag_run = run_dag(runs(server, baseline, candidate))
    assert (states["gate"], states["gate_lenient"]) == ("failed", "failed")
    assert (states["reject"], states["promote"], states["review"]) == ("success", "skipped", "skipped")
    check = next(
        c for c in xcom_value(dag_run, "branch", "verdict")["checks"] if c["name"] == "regression:pass_rate"
    )
    assert check["outcome"] == "failed" and check["evidence"]["p_value"] == pytest.approx(
        binomtest(40, 40, 0.5).pvalue
    )


def test_no_change_passes(server: FakeEvalsServer) -> None:
    outcomes = ["pass"] * 95 + ["fail"] * 5
    states, dag_run = run_dag(runs(server, outcomes, outcomes))
    assert (states["gate"], states["gate_lenient"], states["promote"]) == ("success", "success", "success")
    assert xcom_value(dag_run, "branch", "verdict")["outcome"] == "passed"

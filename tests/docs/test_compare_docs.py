"""docs/compare.md, checked against the operator: the example DAG builds, and the summary it quotes is what
the operator logs for the runs of tests/operators/test_compare.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_aoai_evals.operators.compare import EvalRunCompareOperator
from airflow_provider_aoai_evals.testing import FakeEvalsServer
from tests.operators.test_compare import KEY, compare, pair
from tests.support import served_as_default_connection

from .markdown import REPO, code_block

DOC = REPO / "docs" / "compare.md"
pytestmark = pytest.mark.compat


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEvalsServer]:
    with served_as_default_connection(monkeypatch, KEY) as srv:
        yield srv


def test_the_summary_in_the_docs_is_what_the_operator_says(server: FakeEvalsServer) -> None:
    quoted = DOC.read_text().split("<!-- compare-summary -->\n```\n", 1)[1].split("\n```", 1)[0]
    eval_id, baseline_id, run_id = pair(server)
    lines = compare(eval_id, run_id, baseline_id).execute({})["summary"]
    said = "\n".join(lines).replace(run_id, "evalrun_now").replace(baseline_id, "evalrun_base")
    assert said == quoted


def test_the_example_dag_builds() -> None:
    namespace: dict[str, Any] = {}
    exec(compile(code_block(DOC, "## Example"), str(DOC), "exec"), namespace)
    dag = namespace["nightly_compare"]()
    task = dag.get_task("compare")
    assert isinstance(task, EvalRunCompareOperator)
    assert (task.baseline_run_id, task.baseline_same_model, task.allow_missing_baseline) == (
        "previous",
        True,
        True,
    )
    assert task.upstream_task_ids == {"run_eval"}
    assert set(task.template_fields) >= {"eval_id", "run_id", "baseline_run_id", "destination"}

"""Gates that decide on evidence, run by tests/dags/test_evidence_gate_dags.py with ``dag.test(run_conf=...)``.

The runs are made by the test (FakeEvalsServer's per-item outcomes); the DAG only judges them.
"""

from __future__ import annotations

import datetime
from typing import Any

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import dag

from airflow_provider_aoai_evals.operators.quality_gate import EvalRunBranchOperator, EvalRunCheckOperator

IDS: dict[str, Any] = {
    "eval_id": "{{ params.eval_id }}",
    "run_id": "{{ params.run_id }}",
    "baseline_run_id": "{{ params.baseline_run_id }}",
}
EVIDENCE: dict[str, Any] = {"max_regression": 0.02, "regression_alpha": 0.05, "confidence": 0.95}


@dag(
    schedule=None,
    start_date=datetime.datetime(2025, 1, 1),
    catchup=False,
    params={"eval_id": "", "run_id": "", "baseline_run_id": ""},
)
def evidence_gates() -> None:
    EvalRunCheckOperator(task_id="gate", **IDS, **EVIDENCE)
    EvalRunCheckOperator(task_id="gate_lenient", on_inconclusive="pass", **IDS, **EVIDENCE)
    branch = EvalRunBranchOperator(
        task_id="branch",
        follow_task_ids_if_true="promote",
        follow_task_ids_if_false="reject",
        inconclusive_task_ids="review",
        **IDS,
        **EVIDENCE,
    )
    branch >> [
        EmptyOperator(task_id="promote"),
        EmptyOperator(task_id="reject"),
        EmptyOperator(task_id="review"),
    ]


evidence_gates()

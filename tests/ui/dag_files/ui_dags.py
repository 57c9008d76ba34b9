"""A compare task and an evidence gate over two runs the test makes, for the "Eval run" tab's tests."""

from __future__ import annotations

import datetime
from typing import Any

from airflow.sdk import dag

from airflow_provider_aoai_evals.operators.compare import EvalRunCompareOperator
from airflow_provider_aoai_evals.operators.quality_gate import EvalRunCheckOperator

IDS: dict[str, Any] = {
    "eval_id": "{{ params.eval_id }}",
    "run_id": "{{ params.run_id }}",
    "baseline_run_id": "{{ params.baseline_run_id }}",
}


@dag(
    schedule=None,
    start_date=datetime.datetime(2025, 1, 1),
    catchup=False,
    params={"eval_id": "", "run_id": "", "baseline_run_id": ""},
)
def ui_tab_dag() -> None:
    EvalRunCompareOperator(task_id="compare", **IDS)
    EvalRunCheckOperator(task_id="gate", max_regression=0.02, regression_alpha=0.05, confidence=0.95, **IDS)


ui_tab_dag()

"""A DAG whose id templates pull from a task that does not exist: every task must fail naming its
parameter, before any request. The eval id is real (a param), so only the pulled id is wrong."""

from __future__ import annotations

import datetime

from airflow.sdk import DAG

from airflow_provider_aoai_evals.operators.eval_run import (
    CancelEvalRunOperator,
    CreateEvalRunOperator,
    GetEvalRunOperator,
)
from airflow_provider_aoai_evals.operators.output_items import ExportEvalRunOutputItemsOperator
from airflow_provider_aoai_evals.operators.quality_gate import EvalRunCheckOperator
from airflow_provider_aoai_evals.sensors.eval_run import EvalRunSensor

START = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
#: The typo a user makes: the task is called ``run_eval``.
MISSING_RUN_ID = "{{ ti.xcom_pull(task_ids='run_evl', key='run_id') }}"
MISSING_EVAL_ID = "{{ ti.xcom_pull(task_ids='ensure_evl') }}"
EVAL_ID = "{{ params.eval_id }}"
ROWS = {"type": "jsonl", "source": {"type": "file_content", "content": [{"item": {"q": "x"}}]}}

with DAG(
    "ids_pulled_from_a_missing_task",
    schedule=None,
    start_date=START,
    catchup=False,
    params={"eval_id": "", "run_id": "", "out": "", "unset_run": ""},
) as missing_xcom:
    CreateEvalRunOperator(task_id="create", eval_id=MISSING_EVAL_ID, data_source=ROWS)
    GetEvalRunOperator(task_id="get", eval_id=EVAL_ID, run_id=MISSING_RUN_ID)
    # Mapped tasks render through an unmapped copy: the template must still be quoted.
    GetEvalRunOperator.partial(task_id="get_mapped", eval_id=EVAL_ID, run_id=MISSING_RUN_ID).expand(
        full_run=[False, True]
    )
    CancelEvalRunOperator(task_id="cancel", eval_id=EVAL_ID, run_id=MISSING_RUN_ID)
    ExportEvalRunOutputItemsOperator(
        task_id="export", eval_id=EVAL_ID, run_id=MISSING_RUN_ID, destination="{{ params.out }}"
    )
    EvalRunCheckOperator(task_id="gate", eval_id=EVAL_ID, run_id=MISSING_RUN_ID, min_pass_rate=0.5)
    EvalRunCheckOperator(
        task_id="gate_baseline",
        eval_id=EVAL_ID,
        run_id="{{ params.run_id }}",
        min_pass_rate=0.5,
        baseline_run_id="{{ ti.xcom_pull(task_ids='last_good_run', key='run_id') }}",
        max_regression=0.05,
    )
    EvalRunSensor(task_id="wait", eval_id=EVAL_ID, run_id=MISSING_RUN_ID, poke_interval=0.2, timeout=5)
    EvalRunSensor(task_id="wait_empty_param", eval_id=EVAL_ID, run_id="{{ params.unset_run }}", timeout=5)

"""A DAG with all four operators that report OpenLineage, for tests/dags/test_lineage_dags.py.

The nightly example DAG covers inline rows, a deferred wait, the export and the branch; this one adds what
it does not: a dataset uploaded from object storage (with a deferred wait, so the uploaded file id must
survive the deferral), a Files API file as the source (polling), the check operator with a baseline
run, and a branch whose gate fails. Ids and paths arrive through ``airflow dags test --conf``.
"""

from __future__ import annotations

import datetime
from pathlib import Path

from airflow.providers.common.compat.sdk import ObjectStoragePath
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

from airflow_provider_aoai_evals.operators.eval_run import CreateEvalRunOperator
from airflow_provider_aoai_evals.operators.output_items import ExportEvalRunOutputItemsOperator
from airflow_provider_aoai_evals.operators.quality_gate import EvalRunBranchOperator, EvalRunCheckOperator

#: Written by the test before the DAG runs (the path must be known when the DAG file is parsed).
DATASET = Path(__file__).resolve().parents[3] / ".artifacts" / "datasets" / "lineage-rows.jsonl"
EVAL_ID = "{{ params.eval_id }}"
STORAGE_RUN = "{{ ti.xcom_pull(task_ids='run_from_storage', key='run_id') }}"
FILE_RUN = "{{ ti.xcom_pull(task_ids='run_from_file', key='run_id') }}"

with DAG(
    "lineage_all_operators",
    schedule=None,
    start_date=datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc),
    catchup=False,
    params={"eval_id": "", "file_id": "", "export_root": ""},
) as lineage_all_operators:
    from_storage = CreateEvalRunOperator(
        task_id="run_from_storage",
        eval_id=EVAL_ID,
        data_source=ObjectStoragePath(f"file://{DATASET}"),
        deferrable=True,
        poll_interval=0.3,
    )
    from_file = CreateEvalRunOperator(
        task_id="run_from_file",
        eval_id=EVAL_ID,
        data_source={"type": "jsonl", "source": {"type": "file_id", "id": "{{ params.file_id }}"}},
        deferrable=False,
        poll_interval=0.3,
    )
    export = ExportEvalRunOutputItemsOperator(
        task_id="export",
        eval_id=EVAL_ID,
        run_id=STORAGE_RUN,
        destination="{{ params.export_root }}/" + STORAGE_RUN + ".jsonl",
    )
    check = EvalRunCheckOperator(
        task_id="check",
        eval_id=EVAL_ID,
        run_id=FILE_RUN,
        min_pass_rate=0.5,
        baseline_run_id=STORAGE_RUN,
        max_regression=0.5,
    )
    branch = EvalRunBranchOperator(
        task_id="branch",
        eval_id=EVAL_ID,
        run_id=STORAGE_RUN,
        min_pass_rate=0.99,
        follow_task_ids_if_true="promote",
        follow_task_ids_if_false="hold",
    )
    (
        from_storage
        >> from_file
        >> [export, check]
        >> branch
        >> [EmptyOperator(task_id="promote"), EmptyOperator(task_id="hold")]
    )

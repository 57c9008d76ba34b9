"""DAGs for the export operator's end-to-end tests; ids and the output folder arrive as params through
``dag.test(run_conf=...)``, and the destination is templated with ``ds`` and the run id."""

from __future__ import annotations

import datetime

from airflow.sdk import DAG

from airflow_provider_aoai_evals.operators.output_items import ExportEvalRunOutputItemsOperator

START = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
PARAMS = {"eval_id": "", "run_id": "", "out_dir": ""}

with DAG("export_items_local", schedule=None, start_date=START, catchup=False, params=PARAMS) as export_local:
    ExportEvalRunOutputItemsOperator(
        task_id="export",
        eval_id="{{ params.eval_id }}",
        run_id="{{ params.run_id }}",
        destination="{{ params.out_dir }}/{{ ds }}/{{ params.run_id }}.jsonl",
    )

with DAG(
    "export_items_csv_failures", schedule=None, start_date=START, catchup=False, params=PARAMS
) as export_csv:
    ExportEvalRunOutputItemsOperator(
        task_id="export",
        eval_id="{{ params.eval_id }}",
        run_id="{{ params.run_id }}",
        destination="file://{{ params.out_dir }}/{{ ds_nodash }}/failures.csv",
        status="fail",
        format="csv",
    )

with DAG("export_items_xcom", schedule=None, start_date=START, catchup=False, params=PARAMS) as export_xcom:
    ExportEvalRunOutputItemsOperator(
        task_id="export",
        eval_id="{{ params.eval_id }}",
        run_id="{{ params.run_id }}",
        max_xcom_items=10,
    )

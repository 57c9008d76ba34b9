"""Nightly eval: start a run, wait for it without a worker slot, export the failures, then gate and branch.

    ensure_eval -> run_eval (deferred wait) -> export_failures -> quality_gate -> promote | alert

* ``ensure_eval`` creates the eval the first night and reuses it (same name and criteria) afterwards.
* ``run_eval`` starts one run per DAG run (a retry reattaches instead of starting a duplicate) and waits in
  the triggerer.
* ``export_failures`` streams the failing output items to object storage: set the Airflow Variable
  ``aoai_evals_export_root`` to any ObjectStoragePath root: ``s3://bucket/evals``, ``abfs://container/evals``
  (the storage account comes from the Azure connection, docs/export.md), ``file:///data/evals``.
* ``quality_gate`` follows ``promote`` when the run meets its thresholds and did not regress more than
  ten points against the previous completed run of the same dataset, else ``alert``.

Connection: ``aoai_evals_default``. ``make demo`` runs this DAG against a local FakeEvalsServer.
"""

from __future__ import annotations

import datetime
import os
from typing import Any

from airflow.providers.common.compat.sdk import dag, get_current_context, task

from airflow_provider_aoai_evals.operators.eval_run import CreateEvalOperator, CreateEvalRunOperator
from airflow_provider_aoai_evals.operators.output_items import ExportEvalRunOutputItemsOperator
from airflow_provider_aoai_evals.operators.quality_gate import EvalRunBranchOperator

#: Seconds between polls of the run; the demo and tests shorten it through the environment.
POLL_INTERVAL = float(os.environ.get("AOAI_EVALS_EXAMPLE_POLL_INTERVAL", "60"))

TESTING_CRITERIA = [
    {
        "type": "string_check",
        "name": "exact-label",
        "input": "{{sample.output_text}}",
        "reference": "{{item.label}}",
        "operation": "eq",
    }
]
HEADLINES = [
    ("Chipmaker unveils faster GPU", "Technology"),
    ("Stocks rally after rate cut", "Markets"),
    ("Champions League final tonight", "Sports"),
    ("Merger talks between two banks", "Business"),
    ("Summit ends without agreement", "World"),
    ("New phone sells out in hours", "Technology"),
    ("Bond yields climb to a year high", "Markets"),
    ("Striker signs record contract", "Sports"),
    ("Retailer posts surprise loss", "Business"),
]
RUN_ID = "{{ ti.xcom_pull(task_ids='run_eval', key='run_id') }}"
EVAL_ID = "{{ ti.xcom_pull(task_ids='ensure_eval') }}"


@dag(
    schedule="@daily",
    start_date=datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc),
    catchup=False,
    tags=["example", "aoai-evals"],
)
def example_nightly_eval() -> None:
    ensure_eval = CreateEvalOperator(
        task_id="ensure_eval",
        name="headline-classifier",
        if_exists="reuse",
        data_source_config={
            "type": "custom",
            "item_schema": {"type": "object"},
            "include_sample_schema": True,
        },
        testing_criteria=TESTING_CRITERIA,
    )
    run_eval = CreateEvalRunOperator(
        task_id="run_eval",
        eval_id=EVAL_ID,
        name="nightly-{{ ds }}",
        metadata={"dataset": "headlines-v1"},
        data_source={
            "type": "jsonl",
            "source": {
                "type": "file_content",
                "content": [{"item": {"headline": h, "label": label}} for h, label in HEADLINES],
            },
        },
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        timeout=datetime.timedelta(hours=6),
    )
    export_failures = ExportEvalRunOutputItemsOperator(
        task_id="export_failures",
        eval_id=EVAL_ID,
        run_id=RUN_ID,
        status="fail",
        destination=(
            "{{ var.value.get('aoai_evals_export_root', 'file:///tmp/aoai-evals-exports') }}"
            "/{{ ds }}/" + RUN_ID + "/failures.jsonl"
        ),
    )
    quality_gate = EvalRunBranchOperator(
        task_id="quality_gate",
        eval_id=EVAL_ID,
        run_id=RUN_ID,
        min_pass_rate=0.6,
        min_criterion_pass_rates={"exact-label": 0.6},
        max_errored_rate=0.05,
        baseline_run_id="previous",
        baseline_metadata_key="dataset",
        max_regression=0.10,
        allow_missing_baseline=True,
        follow_task_ids_if_true="promote",
        follow_task_ids_if_false="alert",
    )

    @task
    def promote() -> str:
        summary = get_current_context()["ti"].xcom_pull(task_ids="run_eval")
        print(f"PROMOTE: run {summary['run_id']} passed with pass rate {summary['pass_rate']:.1%}")
        return str(summary["run_id"])

    @task
    def alert() -> dict[str, Any]:
        ti = get_current_context()["ti"]
        verdict = ti.xcom_pull(task_ids="quality_gate", key="verdict")
        export = ti.xcom_pull(task_ids="export_failures")
        failing = [c["detail"] for c in verdict["checks"] if not c["passed"]]
        print(f"ALERT: run {verdict['run_id']} failed its gate: {failing}; failing items at {export['path']}")
        return {"failing_checks": failing, "failures_path": export["path"]}

    ensure_eval >> run_eval >> export_failures >> quality_gate >> [promote(), alert()]


example_nightly_eval()

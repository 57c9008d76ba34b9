"""Watch an eval run started elsewhere (a notebook, CI, another DAG) and branch on its pass rate.

Trigger it with ``{"eval_id": "eval_...", "run_id": "evalrun_..."}`` as the DAG run's conf. The sensor
waits in the triggerer (no worker slot); the branch follows ``accept`` when the run's overall pass rate is at
least ``min_pass_rate`` (default 0.8), else ``reject``.
"""

from __future__ import annotations

import datetime
import os

from airflow.providers.common.compat.sdk import dag, get_current_context, task

from airflow_provider_aoai_evals.operators.quality_gate import EvalRunBranchOperator
from airflow_provider_aoai_evals.sensors.eval_run import EvalRunSensor

POLL_INTERVAL = float(os.environ.get("AOAI_EVALS_EXAMPLE_POLL_INTERVAL", "60"))


@dag(
    schedule=None,
    start_date=datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc),
    catchup=False,
    tags=["example", "aoai-evals"],
    params={"eval_id": "", "run_id": ""},
)
def example_watch_external_run() -> None:
    wait = EvalRunSensor(
        task_id="wait_for_run",
        eval_id="{{ params.eval_id }}",
        run_id="{{ params.run_id }}",
        deferrable=True,
        poke_interval=POLL_INTERVAL,
        timeout=24 * 60 * 60,
    )
    gate = EvalRunBranchOperator(
        task_id="check_pass_rate",
        eval_id="{{ params.eval_id }}",
        run_id="{{ params.run_id }}",
        min_pass_rate=0.8,
        follow_task_ids_if_true="accept",
        follow_task_ids_if_false="reject",
    )

    @task
    def accept() -> None:
        summary = get_current_context()["ti"].xcom_pull(task_ids="wait_for_run")
        print(f"ACCEPT: {summary['run_id']} pass rate {summary['pass_rate']:.1%}")

    @task
    def reject() -> None:
        summary = get_current_context()["ti"].xcom_pull(task_ids="wait_for_run")
        print(f"REJECT: {summary['run_id']} pass rate {summary['pass_rate']}")

    wait >> gate >> [accept(), reject()]


example_watch_external_run()

"""e2e: deferred tasks with cancel_on_kill=True, marked failed through the REST API; Airflow 3.3 calls the
trigger's on_kill, which must cancel the run on the service.

conf: {"eval_id": "eval_...", "run_id": "evalrun_..."}  (the run the sensor watches; the operator starts its own)
"""

from __future__ import annotations

import datetime

from airflow.sdk import dag

from airflow_provider_aoai_evals.operators.eval_run import CreateEvalRunOperator
from airflow_provider_aoai_evals.sensors.eval_run import EvalRunSensor


@dag(
    schedule=None,
    start_date=datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc),
    catchup=False,
    params={"eval_id": "", "run_id": ""},
    tags=["e2e"],
)
def e2e_cancel_on_kill() -> None:
    EvalRunSensor(
        task_id="wait",
        eval_id="{{ params.eval_id }}",
        run_id="{{ params.run_id }}",
        deferrable=True,
        cancel_on_kill=True,
        poke_interval=3,
        timeout=1800,
    )
    CreateEvalRunOperator(
        task_id="create",
        eval_id="{{ params.eval_id }}",
        data_source={"type": "jsonl", "source": {"type": "file_content", "content": [{"item": {"x": "1"}}]}},
        deferrable=True,
        cancel_on_kill=True,
        poll_interval=3,
        timeout=1800,
    )


e2e_cancel_on_kill()

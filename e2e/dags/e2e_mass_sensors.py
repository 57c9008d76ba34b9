"""e2e: many deferred EvalRunSensors at once, one per run listed in the DAG run's conf.

conf: {"eval_id": "eval_...", "waits": [{"run_id": "evalrun_...", "timeout": 900}, ...]}
Map index i waits for waits[i]. Every sensor defers (the runs are still going when the tasks start).
"""

from __future__ import annotations

import datetime
from typing import Any

from airflow.sdk import dag, get_current_context, task

from airflow_provider_aoai_evals.sensors.eval_run import EvalRunSensor


@dag(
    schedule=None,
    start_date=datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc),
    catchup=False,
    max_active_tasks=256,
    params={"eval_id": "", "waits": []},
    tags=["e2e"],
)
def e2e_mass_sensors() -> None:
    @task
    def plan() -> list[dict[str, Any]]:
        waits = get_current_context()["params"]["waits"]
        return [{"run_id": w["run_id"], "timeout": float(w["timeout"])} for w in waits]

    EvalRunSensor.partial(
        task_id="wait",
        eval_id="{{ params.eval_id }}",
        deferrable=True,
        poke_interval=3,
    ).expand_kwargs(plan())


e2e_mass_sensors()

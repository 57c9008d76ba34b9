"""e2e: many deferred EvalRunSensors for the two-triggerer (HA) scenario, one per run listed in the conf.

conf: {"eval_id": "eval_...",
       "waits": [{"run_id": "evalrun_...", "cancel_on_kill": true, "poke_interval": 3}, ...]}
Map index i waits for waits[i]. Every sensor defers (the runs are still going when the tasks start).
``cancel_on_kill`` is set per wait: with it, a trigger whose ``on_kill`` is called when it should not be
(a triggerer giving up triggers another one adopted) cancels its run, which the fake's request log shows;
without it the sensor never sends a cancel. The timeout is long: no wait of the scenario ends by it.
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
def e2e_ha_sensors() -> None:
    @task
    def plan() -> list[dict[str, Any]]:
        waits = get_current_context()["params"]["waits"]
        return [
            {
                "run_id": w["run_id"],
                "cancel_on_kill": bool(w["cancel_on_kill"]),
                "poke_interval": float(w["poke_interval"]),
            }
            for w in waits
        ]

    EvalRunSensor.partial(
        task_id="wait",
        eval_id="{{ params.eval_id }}",
        deferrable=True,
        timeout=1800,
    ).expand_kwargs(plan())


e2e_ha_sensors()

"""DAGs for the wait guard's end-to-end tests (timeouts that cancel, token budgets); ids and the eval
arrive through ``dag.test(run_conf=...)`` as params."""

from __future__ import annotations

import datetime

from airflow.sdk import DAG

from airflow_provider_aoai_evals.operators.eval_run import CreateEvalRunOperator
from airflow_provider_aoai_evals.sensors.eval_run import EvalRunSensor

START = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
ROWS = {"type": "jsonl", "source": {"type": "file_content", "content": [{"item": {"q": "a"}}]}}
CREATE_VARIANTS: dict[str, dict[str, object]] = {
    # retries: over budget is final, a retry would start a new run and spend again.
    "guard_create_deferrable_budget": {"deferrable": True, "max_total_tokens": 1500, "retries": 1},
    "guard_create_polling_budget": {"deferrable": False, "max_total_tokens": 1500, "retries": 1},
    "guard_create_deferrable_timeout": {"deferrable": True, "timeout": 1.5},
}
SENSOR_VARIANTS: dict[str, dict[str, object]] = {
    "guard_sensor_deferrable_budget": {"deferrable": True, "timeout": 60, "max_total_tokens": 1500},
    "guard_sensor_poke_budget": {
        "deferrable": False,
        "mode": "poke",
        "timeout": 60,
        "max_total_tokens": 1500,
    },
    "guard_sensor_deferrable_timeout": {"deferrable": True, "timeout": 1.5, "cancel_on_timeout": True},
    "guard_sensor_poke_timeout": {
        "deferrable": False,
        "mode": "poke",
        "timeout": 1.5,
        "cancel_on_timeout": True,
    },
    "guard_sensor_poke_timeout_soft": {
        "deferrable": False,
        "mode": "poke",
        "timeout": 1.5,
        "soft_fail": True,
        "cancel_on_timeout": True,
    },
}


def dag(dag_id: str) -> DAG:
    return DAG(dag_id, schedule=None, start_date=START, catchup=False, params={"eval_id": "", "run_id": ""})


for dag_id, options in CREATE_VARIANTS.items():
    with dag(dag_id) as created:
        CreateEvalRunOperator(
            task_id="wait",
            eval_id="{{ params.eval_id }}",
            data_source=ROWS,
            poll_interval=0.2,
            retry_delay=datetime.timedelta(seconds=0),
            **options,  # type: ignore[arg-type]
        )
    globals()[dag_id] = created

for dag_id, options in SENSOR_VARIANTS.items():
    with dag(dag_id) as sensed:
        EvalRunSensor(
            task_id="wait",
            eval_id="{{ params.eval_id }}",
            run_id="{{ params.run_id }}",
            poke_interval=0.2,
            **options,  # type: ignore[arg-type]
        )
    globals()[dag_id] = sensed

"""DAGs for the sensor's end-to-end tests; ids arrive through ``dag.test(run_conf=...)`` as params."""

from __future__ import annotations

import datetime

from airflow.sdk import DAG

from airflow_provider_aoai_evals.sensors.eval_run import EvalRunSensor

START = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
VARIANTS: dict[str, dict[str, object]] = {
    "sensor_deferrable": {"deferrable": True, "timeout": 60},
    "sensor_deferrable_timeout": {"deferrable": True, "timeout": 2},
    "sensor_deferrable_timeout_soft": {"deferrable": True, "timeout": 2, "soft_fail": True},
    "sensor_deferrable_any_terminal": {
        "deferrable": True,
        "timeout": 60,
        "success_statuses": ["completed", "failed", "canceled"],
    },
    "sensor_poke": {"deferrable": False, "mode": "poke", "timeout": 60},
    "sensor_poke_timeout_soft": {"deferrable": False, "mode": "poke", "timeout": 2, "soft_fail": True},
    "sensor_reschedule": {"deferrable": False, "mode": "reschedule", "timeout": 60},
}

for dag_id, options in VARIANTS.items():
    with DAG(
        dag_id, schedule=None, start_date=START, catchup=False, params={"eval_id": "", "run_id": ""}
    ) as dag:
        EvalRunSensor(
            task_id="wait",
            eval_id="{{ params.eval_id }}",
            run_id="{{ params.run_id }}",
            poke_interval=0.3,
            **options,  # type: ignore[arg-type]
        )
    globals()[dag_id] = dag

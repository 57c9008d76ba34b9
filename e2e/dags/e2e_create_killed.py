"""e2e: a polling (non-deferrable) CreateEvalRunOperator with one retry; the suite SIGKILLs its task process
while it waits, and the retry must reattach to the run the first try started.

conf: {"eval_id": "eval_..."}
"""

from __future__ import annotations

import datetime

from airflow.sdk import dag

from airflow_provider_aoai_evals.operators.eval_run import CreateEvalRunOperator


@dag(
    schedule=None,
    start_date=datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc),
    catchup=False,
    params={"eval_id": ""},
    tags=["e2e"],
)
def e2e_create_killed() -> None:
    CreateEvalRunOperator(
        task_id="create",
        eval_id="{{ params.eval_id }}",
        data_source={"type": "jsonl", "source": {"type": "file_content", "content": [{"item": {"x": "1"}}]}},
        name="killed-{{ run_id }}",
        deferrable=False,
        poll_interval=1,
        timeout=900,
        retries=1,
        retry_delay=datetime.timedelta(seconds=2),
    )


e2e_create_killed()

"""e2e: a deferred CreateEvalRunOperator whose run never finishes, with a 20 s timeout and the default
cancel_on_timeout=True: its run must end canceled on the service, also when no triggerer runs at the deadline.

conf: {"eval_id": "eval_..."}
"""

from __future__ import annotations

import datetime

from airflow.sdk import dag

from airflow_provider_aoai_evals.operators.eval_run import CreateEvalRunOperator

#: The wait's timeout, in seconds (the test reads it from here).
WAIT_TIMEOUT = 20


@dag(
    schedule=None,
    start_date=datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc),
    catchup=False,
    params={"eval_id": ""},
    tags=["e2e"],
)
def e2e_wait_deadline() -> None:
    CreateEvalRunOperator(
        task_id="create",
        eval_id="{{ params.eval_id }}",
        data_source={"type": "jsonl", "source": {"type": "file_content", "content": [{"item": {"x": "1"}}]}},
        deferrable=True,
        poll_interval=3,
        timeout=WAIT_TIMEOUT,
    )


e2e_wait_deadline()

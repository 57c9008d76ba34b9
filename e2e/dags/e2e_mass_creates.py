"""e2e: many deferrable CreateEvalRunOperators at once (one run each, reattach-safe).

conf: {"eval_id": "eval_...", "names": ["run-0", ...]}
"""

from __future__ import annotations

import datetime

from airflow.sdk import dag, get_current_context, task

from airflow_provider_aoai_evals.operators.eval_run import CreateEvalRunOperator

ROWS = [{"item": {"input": f"q{i}", "ground_truth": f"a{i}"}} for i in range(6)]


@dag(
    schedule=None,
    start_date=datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc),
    catchup=False,
    max_active_tasks=256,
    params={"eval_id": "", "names": []},
    tags=["e2e"],
)
def e2e_mass_creates() -> None:
    @task
    def names() -> list[str]:
        return list(get_current_context()["params"]["names"])

    CreateEvalRunOperator.partial(
        task_id="create",
        eval_id="{{ params.eval_id }}",
        data_source={"type": "jsonl", "source": {"type": "file_content", "content": ROWS}},
        deferrable=True,
        poll_interval=3,
        timeout=1800,
    ).expand(name=names())


e2e_mass_creates()

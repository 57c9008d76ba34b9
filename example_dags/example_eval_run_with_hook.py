"""Start an eval run and wait for its result using only EvalsHook, in TaskFlow tasks.

This is the foundation example: it shows the hook and client that every operator of this provider is
built on. It waits by polling inside the task (which holds a worker slot); for production waits use the
deferrable ``EvalRunSensor`` instead.

Connection: ``aoai_evals_default`` (an OpenAI key or an Azure OpenAI resource). ``make demo`` points it at a
local FakeEvalsServer.
"""

from __future__ import annotations

import time
from typing import Any

from airflow.providers.common.compat.sdk import dag, get_current_context, task

from airflow_provider_aoai_evals.api.models import EvalRun
from airflow_provider_aoai_evals.hooks.evals import EvalsHook

EVAL_NAME = "headline-classifier"
TESTING_CRITERIA = [
    {
        "type": "string_check",
        "name": "exact-label",
        "input": "{{sample.output_text}}",
        "reference": "{{item.label}}",
        "operation": "eq",
    }
]
ROWS = [
    {"item": {"headline": "Chipmaker unveils faster GPU", "label": "Technology"}},
    {"item": {"headline": "Stocks rally after rate cut", "label": "Markets"}},
    {"item": {"headline": "Champions League final tonight", "label": "Sports"}},
    {"item": {"headline": "Merger talks between two banks", "label": "Business"}},
    {"item": {"headline": "Summit ends without agreement", "label": "World"}},
    {"item": {"headline": "New phone sells out in hours", "label": "Technology"}},
]


def summarize(run: EvalRun) -> dict[str, Any]:
    """What goes to XCom: ids, status and counts; never the data source's contents."""
    counts = run.result_counts
    return {
        "eval_id": run.eval_id,
        "run_id": run.id,
        "status": run.status,
        "report_url": run.report_url,
        "passed": counts.passed if counts else 0,
        "failed": counts.failed if counts else 0,
        "errored": counts.errored if counts else 0,
        "total": counts.total if counts else 0,
    }


@dag(schedule=None, catchup=False, tags=["example", "aoai-evals"], params={"poll_interval": 1.0})
def example_eval_run_with_hook() -> None:
    @task
    def ensure_eval() -> str:
        client = EvalsHook().get_conn()
        existing = [e for e in client.list_evals(order="desc") if e.name == EVAL_NAME]
        if existing:
            return existing[0].id
        created = client.create_eval(
            name=EVAL_NAME,
            data_source_config={
                "type": "custom",
                "item_schema": {"type": "object"},
                "include_sample_schema": True,
            },
            testing_criteria=TESTING_CRITERIA,
        )
        return created.id

    @task
    def start_run(eval_id: str) -> str:
        ti = get_current_context()["ti"]
        # One key per task instance: a retry of this task finds the run its earlier try started.
        key = f"{ti.dag_id}.{ti.task_id}.{ti.run_id}.{ti.map_index}"
        run = (
            EvalsHook()
            .get_conn()
            .create_run(
                eval_id,
                data_source={"type": "jsonl", "source": {"type": "file_content", "content": ROWS}},
                name="demo-run",
                idempotency_key=key,
            )
        )
        return run.id

    @task
    def wait_for_run(eval_id: str, eval_run_id: str) -> dict[str, Any]:
        interval = float(get_current_context()["params"]["poll_interval"])
        client = EvalsHook().get_conn()
        while True:
            run = client.get_run(eval_id, eval_run_id)
            counts = run.result_counts
            print(f"run {run.id}: {run.status} ({counts.passed if counts else 0} passed so far)")
            if run.is_terminal:
                break
            time.sleep(interval)
        if run.status != "completed":
            message = run.error.message if run.error else "no error message"
            raise RuntimeError(f"eval run {run.id} of eval {eval_id} ended {run.status}: {message}")
        return summarize(run)

    eval_id = ensure_eval()
    # Task outputs are XComArgs at parse time and plain values at run time.
    wait_for_run(eval_id, start_run(eval_id))  # type: ignore[arg-type]


example_eval_run_with_hook()

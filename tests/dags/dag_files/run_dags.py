"""DAGs for the run operators' end-to-end tests; ids and rows arrive through ``dag.test(run_conf=...)``."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from airflow.providers.common.compat.sdk import AirflowException, ObjectStoragePath
from airflow.sdk import DAG

from airflow_provider_aoai_evals.operators.eval_run import (
    CancelEvalRunOperator,
    CreateEvalOperator,
    CreateEvalRunOperator,
    GetEvalRunOperator,
)

START = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)
#: The dataset the storage test writes before running ``run_create_from_storage``.
DATASET = Path(__file__).resolve().parents[3] / ".artifacts" / "datasets" / "rows.jsonl"
PARAMS = {"eval_id": "", "run_id": "", "rows": 3, "path": ""}
ROWS_SOURCE = {
    "type": "jsonl",
    "source": {
        "type": "file_content",
        "content": [{"item": {"question": "q{{ params.rows }}", "label": "{{ ds }}"}}],
    },
}
COMPLETIONS_SOURCE = {
    "type": "completions",
    "model": "gpt-4o-mini",
    "input_messages": {
        "type": "template",
        "template": [{"role": "user", "content": "Classify {{item.headline}}"}],
    },
    "source": {"type": "file_content", "content": [{"item": {"headline": "a"}}, {"item": {"headline": "b"}}]},
}


class DiesWhileWaitingOnFirstTry(CreateEvalRunOperator):
    """Stands in for a worker killed mid-wait: the first try starts the run, then dies before it finishes."""

    def _wait(self, context: Any, run: Any) -> dict[str, Any]:
        if context["ti"].try_number == 1:
            raise AirflowException("simulated worker death while waiting")
        return super()._wait(context, run)


def dag(dag_id: str) -> DAG:
    return DAG(dag_id, schedule=None, start_date=START, catchup=False, params=dict(PARAMS))


with dag("run_create_deferrable") as run_create_deferrable:
    CreateEvalRunOperator(
        task_id="create",
        eval_id="{{ params.eval_id }}",
        data_source=ROWS_SOURCE,
        name="nightly-{{ ds }}",
        metadata={"git_sha": "abc123"},
        deferrable=True,
        poll_interval=0.3,
    )

with dag("run_create_polling") as run_create_polling:
    CreateEvalRunOperator(
        task_id="create",
        eval_id="{{ params.eval_id }}",
        data_source=COMPLETIONS_SOURCE,
        deferrable=False,
        poll_interval=0.3,
    )

with dag("run_create_no_wait") as run_create_no_wait:
    CreateEvalRunOperator(
        task_id="create", eval_id="{{ params.eval_id }}", data_source=ROWS_SOURCE, wait_for_completion=False
    )

with dag("run_create_mapped") as run_create_mapped:
    CreateEvalRunOperator.partial(
        task_id="create", eval_id="{{ params.eval_id }}", deferrable=True, poll_interval=0.3
    ).expand(
        data_source=[
            {"type": "jsonl", "source": {"type": "file_content", "content": [{"item": {"i": i}}] * (i + 1)}}
            for i in range(3)
        ]
    )

with dag("run_create_retry") as run_create_retry:
    DiesWhileWaitingOnFirstTry(
        task_id="create",
        eval_id="{{ params.eval_id }}",
        data_source=ROWS_SOURCE,
        deferrable=True,
        poll_interval=0.3,
        retries=1,
        retry_delay=datetime.timedelta(seconds=0),
    )

with dag("run_create_from_storage") as run_create_from_storage:
    CreateEvalRunOperator(
        task_id="create",
        eval_id="{{ params.eval_id }}",
        data_source=ObjectStoragePath(f"file://{DATASET}"),
        deferrable=True,
        poll_interval=0.3,
    )

with dag("run_get") as run_get:
    GetEvalRunOperator(task_id="get", eval_id="{{ params.eval_id }}", run_id="{{ params.run_id }}")
    GetEvalRunOperator(
        task_id="get_full", eval_id="{{ params.eval_id }}", run_id="{{ params.run_id }}", full_run=True
    )

with dag("run_cancel") as run_cancel:
    CancelEvalRunOperator(
        task_id="cancel",
        eval_id="{{ params.eval_id }}",
        run_id="{{ params.run_id }}",
        wait_for_cancellation=True,
        deferrable=True,
        poll_interval=0.3,
    )

with dag("eval_create_or_reuse") as eval_create_or_reuse:
    CreateEvalOperator(
        task_id="create_eval",
        name="quality-gate",
        if_exists="reuse",
        data_source_config={"type": "custom", "item_schema": {"type": "object"}},
        testing_criteria=[
            {
                "type": "string_check",
                "name": "exact",
                "input": "{{sample.output_text}}",
                "reference": "{{item.label}}",
                "operation": "eq",
            }
        ],
    )

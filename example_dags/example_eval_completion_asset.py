"""Run a DAG whenever a run of an eval finishes: event-driven scheduling with an ``AssetWatcher``.

The triggerer runs ``EvalRunFinishedTrigger``, which polls the eval's runs and fires once per run that
finished with a status in ``statuses``. Each firing becomes an asset event on ``eval_completion_asset``;
the DAG is scheduled on that asset, so it runs after each finished eval run instead of on a clock.

Which eval is watched is read from the environment variable ``AOAI_EVALS_WATCH_EVAL_ID`` when the DAG file
is parsed (default ``eval_example``). Trigger kwargs cannot be templated: Airflow identifies an event
trigger by a hash of its kwargs, so they must be plain, static values.

Connection: ``aoai_evals_default``. See docs/event-driven.md for delivery semantics per Airflow version.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from airflow.sdk import Asset, AssetWatcher, dag, task

from airflow_provider_aoai_evals.triggers.eval_events import EvalRunFinishedTrigger

log = logging.getLogger(__name__)

WATCHED_EVAL_ID = os.environ.get("AOAI_EVALS_WATCH_EVAL_ID", "eval_example")

eval_completion_asset = Asset(
    name="aoai_evals_run_completed",
    uri=f"aoai-evals://evals/{WATCHED_EVAL_ID}/runs",
    watchers=[
        AssetWatcher(
            name="aoai_evals_run_completed_watcher",
            trigger=EvalRunFinishedTrigger(
                eval_id=WATCHED_EVAL_ID,
                conn_id="aoai_evals_default",
                poll_interval=60.0,
                statuses=("completed",),
            ),
        )
    ],
)


@dag(schedule=[eval_completion_asset], catchup=False, tags=["example", "aoai-evals"])
def example_eval_completion_asset() -> None:
    @task
    def report_finished_runs(triggering_asset_events: Any = None) -> list[dict[str, Any]]:
        """One DAG run can carry several asset events (runs that finished while the DAG was queued): handle
        each. The trigger's payload is in the event's ``extra["payload"]``."""
        finished = []
        for event in (triggering_asset_events or {}).get(eval_completion_asset, []):
            payload = (event.extra or {}).get("payload") or {}
            summary = payload.get("summary") or {}
            pass_rate = summary.get("pass_rate")
            log.info(
                "Eval run %s of eval %s finished: %s, pass rate %s (%s)",
                payload.get("run_id"),
                payload.get("eval_id"),
                payload.get("status"),
                "n/a" if pass_rate is None else f"{pass_rate:.1%}",
                payload.get("report_url"),
            )
            finished.append(
                {"run_id": payload.get("run_id"), "status": payload.get("status"), "pass_rate": pass_rate}
            )
        return finished

    report_finished_runs()


example_eval_completion_asset()

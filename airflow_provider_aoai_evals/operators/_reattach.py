"""Never a duplicate run: one idempotency key per task instance, and the run an earlier try of it started.

``CreateEvalRunOperator`` writes ``<task instance>|try=<n>`` into the run's metadata. A later try of the same
task instance looks for a run whose key has its prefix, first through the run id an earlier try left in
the task state store (Airflow 3.3+), then by listing the eval's runs created since the DAG run started.
A run still going is reattached to; a completed one is reused only when asked; any other is left alone.
"""

from __future__ import annotations

import hashlib
import time

from airflow.providers.common.compat.sdk import Context
from structlog.typing import FilteringBoundLogger

from airflow_provider_aoai_evals.api.client import EvalsClient
from airflow_provider_aoai_evals.api.errors import EvalsAPIError
from airflow_provider_aoai_evals.api.models import EvalRun, RunStatus
from airflow_provider_aoai_evals.api.operations import IDEMPOTENCY_METADATA_KEY

#: task_state_store key (Airflow 3.3+) holding the run an earlier try started.
STATE_RUN_ID_KEY = "aoai_evals_run_id"


def idempotency_base(context: Context) -> str:
    """One key per task instance (dag, task, DAG run, map index), the same for every try of it."""
    ti = context["ti"]
    base = f"{ti.dag_id}/{ti.task_id}/{ti.run_id}/{ti.map_index}"
    if len(base) > 400:  # metadata values hold 512 characters; keep room for the try suffix
        base = "sha256:" + hashlib.sha256(base.encode()).hexdigest()
    return base


def idempotency_key(context: Context, base: str) -> str:
    """The key of this try's run: the task instance's base, then the try."""
    return f"{base}|try={context['ti'].try_number}"


def earlier_run(
    client: EvalsClient,
    context: Context,
    *,
    eval_id: str,
    base: str,
    reuse_finished_run: bool,
    log: FilteringBoundLogger,
) -> EvalRun | None:
    """A run an earlier try of this task instance started, if it may be reused; else None."""
    run = _remembered_run(client, context, eval_id)
    if run is None:
        prefix = base + "|"
        run = client.find_run(
            eval_id,
            lambda r: (r.metadata or {}).get(IDEMPOTENCY_METADATA_KEY, "").startswith(prefix),
            since=_dag_run_start(context),
        )
    if run is None:
        return None
    if not run.is_terminal:
        log.info("Reattaching to eval run %s (%s) started by an earlier try", run.id, run.status)
        return run
    if run.status == RunStatus.COMPLETED and reuse_finished_run:
        log.info("Reusing eval run %s, completed by an earlier try (reuse_finished_run=True)", run.id)
        return run
    log.info("An earlier try's eval run %s ended %s; starting a new run", run.id, run.status)
    return None


def remember_run(context: Context, run_id: str) -> None:
    """Leave the run's id for a later try (Airflow 3.3+; elsewhere the key lookup finds it)."""
    store = context.get("task_state_store")
    if store is not None:
        store.set(STATE_RUN_ID_KEY, run_id)


def _remembered_run(client: EvalsClient, context: Context, eval_id: str) -> EvalRun | None:
    store = context.get("task_state_store")  # Airflow 3.3+
    if store is None:
        return None
    run_id = store.get(STATE_RUN_ID_KEY)
    if not isinstance(run_id, str) or not run_id:
        return None
    try:
        return client.get_run(eval_id, run_id)
    except EvalsAPIError as exc:
        if exc.status_code == 404:
            return None
        raise


def _dag_run_start(context: Context) -> float:
    """Runs started for this DAG run cannot be older than the DAG run; bound the key lookup by it."""
    dag_run = context.get("dag_run")
    for attr in ("start_date", "queued_at", "run_after", "logical_date"):
        value = getattr(dag_run, attr, None)
        if value is not None:
            return float(value.timestamp())
    return time.time() - 7 * 24 * 3600

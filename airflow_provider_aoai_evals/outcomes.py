"""How a task turns a finished run, or a trigger's event, into its result or its error.

The sensor and the run operators both wait for runs and must agree on what success is and on which
trigger events they accept, so that policy is written once here.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from airflow.providers.common.compat.sdk import AirflowSensorTimeout

from airflow_provider_aoai_evals.api.errors import EvalsConfigError
from airflow_provider_aoai_evals.api.models import EvalRun, RunStatus
from airflow_provider_aoai_evals.api.summary import summarize
from airflow_provider_aoai_evals.exceptions import EvalRunError, EvalRunOverBudget, run_ended_message
from airflow_provider_aoai_evals.triggers.eval_run import EVENT_STATUSES


def check_success_statuses(success_statuses: Collection[str]) -> list[str]:
    unknown = set(success_statuses) - RunStatus.TERMINAL
    if not success_statuses or unknown or isinstance(success_statuses, str):
        raise EvalsConfigError(
            "success_statuses",
            f"must be a non-empty list drawn from {sorted(RunStatus.TERMINAL)}; got {success_statuses!r}",
        )
    return list(success_statuses)


def finished_run_result(run: EvalRun, success_statuses: Collection[str]) -> dict[str, Any]:
    """The summary of a terminal run whose status is accepted; otherwise the error a person can act on."""
    summary = summarize(run)
    if run.status not in success_statuses:
        raise EvalRunError(
            run_ended_message(run.eval_id, run.id, run.status, summary.error_message),
            eval_id=run.eval_id,
            run_id=run.id,
            status=run.status,
            api_message=summary.error_message,
        )
    return summary.to_xcom()


class WaitTimeout(AirflowSensorTimeout):
    """The wait for a run ended at its deadline (a sensor with ``soft_fail`` turns this into a skip).

    ``canceled`` says whether the run was canceled on the way out (None: no cancel was tried).
    """

    def __init__(self, message: str, *, canceled: bool | None = None) -> None:
        self.canceled = canceled
        super().__init__(message)


def event_result(event: dict[str, Any] | None, *, eval_id: str, run_id: str) -> dict[str, Any]:
    """Accept only the events EvalRunTrigger yields: an unknown event is an error, never a success."""
    status = (event or {}).get("status")
    if event is None or status not in EVENT_STATUSES:
        raise EvalRunError(
            f"Unexpected event from the trigger for eval run {run_id}: {event!r}",
            eval_id=eval_id,
            run_id=run_id,
        )
    message = str(event.get("message"))
    if status == "success":
        summary: dict[str, Any] = event["summary"]
        return summary
    # Whether the run was canceled on the way out; None when no cancel was tried.
    canceled = event.get("canceled")
    canceled = canceled if isinstance(canceled, bool) else None
    if status == "timeout":
        raise WaitTimeout(message, canceled=canceled)
    if status == "over_budget":
        raise EvalRunOverBudget(
            message,
            eval_id=eval_id,
            run_id=run_id,
            status=event.get("run_status"),
            max_total_tokens=int(event.get("max_total_tokens") or 0),
            total_tokens=int(event.get("total_tokens") or 0),
            canceled=canceled,
        )
    error = event.get("error") or {}
    summary = event.get("summary") or {}
    raise EvalRunError(
        message,
        eval_id=eval_id,
        run_id=run_id,
        status=event.get("run_status"),
        api_message=summary.get("error_message") or error.get("message"),
    )

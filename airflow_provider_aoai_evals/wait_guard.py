"""The blocking side of a wait's end: the cancel on the way out, and the backstop for a lost deferral.

A wait that ends at its deadline or over its token budget must not leave the run spending after nobody
waits for it. ``api.waiting`` decides when a run is to be canceled; this module does it on a worker (the
run operators' polling mode, the sensor's poke modes, and a deferred task the scheduler resumes only to
fail it) and builds the error the task fails with. The trigger does the same in the triggerer.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any, NoReturn

from airflow.providers.common.compat.sdk import AirflowNotFoundException, conf

from airflow_provider_aoai_evals.api.errors import EvalsError
from airflow_provider_aoai_evals.api.models import EvalRun
from airflow_provider_aoai_evals.api.waiting import (
    DEFAULT_CANCEL_TIMEOUT,
    CancelOutcome,
    Decision,
    deferral_margin,
)
from airflow_provider_aoai_evals.exceptions import EvalRunOverBudget, over_budget_message, with_cancel
from airflow_provider_aoai_evals.hooks.evals import EvalsHook

#: The ``next_method`` the scheduler resumes a deferred task with when it is to fail.
TRIGGER_FAIL_METHOD = "__fail__"
#: ``TriggerFailureReason.TRIGGER_TIMEOUT``'s value. The scheduler stores the reason in ``next_kwargs``, a
#: JSON column, so the resumed task reads back this string on Airflow 3.1 and 3.3 alike.
TRIGGER_TIMEOUT_REASON = "Trigger timeout"
#: Used when the option cannot be read: Airflow's own default.
_DEFAULT_HEALTH_CHECK_THRESHOLD = 30.0


def deferral_timeout(wait_seconds: float) -> timedelta:
    """The ``timeout`` a task defers with: its wait plus ``api.waiting.deferral_margin``, so Airflow's own
    timeout of the deferral fires only when no triggerer ran the trigger to its end."""
    threshold = conf.getfloat(
        "triggerer", "triggerer_health_check_threshold", fallback=_DEFAULT_HEALTH_CHECK_THRESHOLD
    )
    margin = deferral_margin(cancel_timeout=DEFAULT_CANCEL_TIMEOUT, adoption_seconds=threshold)
    return timedelta(seconds=wait_seconds + margin)


def deferral_timed_out(next_method: str, next_kwargs: dict[str, Any] | None) -> bool:
    """The scheduler resumed the task only to fail it, because its deferral's timeout passed with the
    trigger still not fired (no triggerer ran it)."""
    return next_method == TRIGGER_FAIL_METHOD and (next_kwargs or {}).get("error") == TRIGGER_TIMEOUT_REASON


def cancel_run(hook: EvalsHook, eval_id: str, run_id: str, log: Any) -> CancelOutcome:
    """Cancel as a wait ends, within ``DEFAULT_CANCEL_TIMEOUT``. A failure is reported, not raised: the
    task fails anyway, and its message must say the run may still be going."""
    try:
        run = hook.get_conn().cancel_run(eval_id, run_id, deadline=time.time() + DEFAULT_CANCEL_TIMEOUT)
    except (EvalsError, AirflowNotFoundException) as exc:
        log.warning("Could not cancel eval run %s as its wait ended: %s", run_id, exc)
        return CancelOutcome.failed(str(exc))
    log.info("Canceled eval run %s as its wait ended; it is now %s", run_id, run.status)
    return CancelOutcome.answered(run.status)


def fail_over_budget(
    hook: EvalsHook, run: EvalRun, decision: Decision, max_total_tokens: int | None, log: Any
) -> NoReturn:
    """End a wait whose run went over its budget: cancel it if it is still going, then fail saying so."""
    # Both are set when the policy says OVER_BUDGET.
    assert max_total_tokens is not None
    assert decision.tokens_used is not None
    eval_id = str(run.eval_id)
    cancel = cancel_run(hook, eval_id, run.id, log) if decision.cancel else None
    message = over_budget_message(
        eval_id,
        run.id,
        status=run.status,
        max_total_tokens=max_total_tokens,
        total_tokens=decision.tokens_used,
        cancel=cancel,
    )
    raise EvalRunOverBudget(
        message,
        eval_id=eval_id,
        run_id=run.id,
        status=(cancel.status or run.status) if cancel is not None else run.status,
        max_total_tokens=max_total_tokens,
        total_tokens=decision.tokens_used,
        canceled=cancel.canceled if cancel is not None else None,
    )


def lost_deferral_event(
    hook: EvalsHook, eval_id: str, run_id: str, *, ending: Decision, log: Any
) -> dict[str, Any]:
    """The ``timeout`` event the trigger would have yielded had a triggerer run it to its deadline, so the
    task ends the same way (and through the same ``execute_complete``) whichever timeout fired."""
    message = (
        f"Eval run {run_id} of eval {eval_id}: the wait's deadline passed while no triggerer ran its "
        "trigger (Airflow's timeout of the deferral fired)"
    )
    event: dict[str, Any] = {"status": "timeout", "eval_id": eval_id, "run_id": run_id}
    if not ending.cancel:
        return {
            **event,
            "message": f"{message}; it was not canceled (cancel_on_timeout=False)",
            "run_status": None,
        }
    cancel = cancel_run(hook, eval_id, run_id, log)
    return {
        **event,
        "message": with_cancel(message, cancel),
        "run_status": cancel.status,
        **cancel.to_event(),
    }

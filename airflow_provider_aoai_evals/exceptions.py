"""Airflow-side errors: a task fails with one of these, carrying what a person needs to act."""

from __future__ import annotations

from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

from airflow_provider_aoai_evals.api.waiting import CancelOutcome


class EvalRunError(AirflowException):
    """A run ended in a status the task does not accept, or could not be watched to its end.

    The message names the run, the eval, the status and the API's own error message. ``canceled`` says
    whether the task canceled the run on its way out (None: it did not try).
    """

    def __init__(
        self,
        message: str,
        *,
        eval_id: str | None = None,
        run_id: str | None = None,
        status: str | None = None,
        api_message: str | None = None,
        canceled: bool | None = None,
    ) -> None:
        self.eval_id = eval_id
        self.run_id = run_id
        self.status = status
        self.api_message = api_message
        self.canceled = canceled
        super().__init__(message)


class EvalRunOverBudget(EvalRunError, AirflowFailException):
    """The run used more tokens than the task's ``max_total_tokens``; a run still going was canceled.

    Final for the task (no retry): a retry of the operator that started the run would start a new one and
    spend again, and a sensor's would find the same run over the same budget.
    """

    def __init__(
        self,
        message: str,
        *,
        eval_id: str | None,
        run_id: str,
        status: str | None,
        max_total_tokens: int,
        total_tokens: int,
        canceled: bool | None,
    ) -> None:
        self.max_total_tokens = max_total_tokens
        self.total_tokens = total_tokens
        super().__init__(message, eval_id=eval_id, run_id=run_id, status=status, canceled=canceled)


class EvalRunCanceledOnTimeout(EvalRunError, AirflowFailException):
    """A polling wait timed out and canceled its run (``cancel_on_timeout``).

    Final for the task (no retry), as a deferred wait's timeout is: a retry would find its run canceled and
    start a new one, waiting and spending for the whole timeout again.
    """


def run_ended_message(eval_id: str | None, run_id: str, status: str, api_message: str | None) -> str:
    detail = f": {api_message}" if api_message else " (the API gave no error message)"
    return f"Eval run {run_id} of eval {eval_id} ended with status {status!r}{detail}"


def with_cancel(message: str, cancel: CancelOutcome | None) -> str:
    """A wait's ending message, told what the cancel on the way out did (unchanged when none was tried)."""
    return message if cancel is None else f"{message}; {cancel.describe()}"


def over_budget_message(
    eval_id: str | None,
    run_id: str,
    *,
    status: str,
    max_total_tokens: int,
    total_tokens: int,
    cancel: CancelOutcome | None,
) -> str:
    """Why a task failed over its token budget: the budget, the usage so far, the run, and the cancel."""
    head = f"Eval run {run_id} of eval {eval_id} used {total_tokens} tokens, over max_total_tokens={max_total_tokens}"
    if cancel is None:
        return f"{head}: it finished ({status!r}) over budget, so there was nothing to cancel"
    return f"{head} while {status}; {cancel.describe()}"

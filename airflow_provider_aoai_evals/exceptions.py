"""Airflow-side errors: a task fails with one of these, carrying what a person needs to act."""

from __future__ import annotations

from airflow.providers.common.compat.sdk import AirflowException


class EvalRunError(AirflowException):
    """A run ended in a status the task does not accept, or could not be watched to its end.

    The message names the run, the eval, the status and the API's own error message.
    """

    def __init__(
        self,
        message: str,
        *,
        eval_id: str | None = None,
        run_id: str | None = None,
        status: str | None = None,
        api_message: str | None = None,
    ) -> None:
        self.eval_id = eval_id
        self.run_id = run_id
        self.status = status
        self.api_message = api_message
        super().__init__(message)


def run_ended_message(eval_id: str | None, run_id: str, status: str, api_message: str | None) -> str:
    detail = f": {api_message}" if api_message else " (the API gave no error message)"
    return f"Eval run {run_id} of eval {eval_id} ended with status {status!r}{detail}"

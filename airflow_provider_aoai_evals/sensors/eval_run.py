"""EvalRunSensor: wait for an eval run to finish, deferrable by default setting, poke/reschedule too.

The sensor may watch a run started elsewhere, so ending its wait cancels nothing unless asked
(``cancel_on_timeout``); a run over the sensor's token budget is canceled, since that budget is the
reason to give one.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import cached_property
from typing import Any

from airflow.providers.common.compat.sdk import (
    AirflowSensorTimeout,
    AirflowSkipException,
    BaseSensorOperator,
    Context,
    PokeReturnValue,
    conf,
)

from airflow_provider_aoai_evals.api.errors import EvalsAPIError
from airflow_provider_aoai_evals.api.models import EvalRun, RunStatus
from airflow_provider_aoai_evals.api.summary import summarize
from airflow_provider_aoai_evals.api.validation import validate_id
from airflow_provider_aoai_evals.api.waiting import Verdict, WaitPolicy, check_flag, check_token_budget
from airflow_provider_aoai_evals.exceptions import with_cancel
from airflow_provider_aoai_evals.hooks.evals import EvalsHook
from airflow_provider_aoai_evals.links import EvalRunReportLink, publish_report_url
from airflow_provider_aoai_evals.outcomes import (
    WaitTimeout,
    check_success_statuses,
    event_result,
    finished_run_result,
)
from airflow_provider_aoai_evals.templating import TemplatedIds
from airflow_provider_aoai_evals.triggers.eval_run import (
    DEFAULT_MAX_CONSECUTIVE_FAILURES,
    EvalRunTrigger,
)
from airflow_provider_aoai_evals.wait_guard import (
    cancel_run,
    deferral_timed_out,
    deferral_timeout,
    fail_over_budget,
    lost_deferral_event,
)


class EvalRunSensor(TemplatedIds, BaseSensorOperator):
    """Wait for an eval run (started by this DAG or elsewhere) to reach a terminal status.

    Returns the run summary (status, counts, pass rates overall and per criterion, usage, report_url) as
    its XCom. A terminal status not in ``success_statuses`` fails the task with an error naming the run,
    the eval, the status and the API's message.

    :param eval_id: the eval (templated).
    :param run_id: the run (templated).
    :param conn_id: an ``aoai_evals`` connection.
    :param success_statuses: terminal statuses that count as success (default: only ``completed``).
    :param deferrable: wait in the triggerer instead of a worker slot; defaults to Airflow's
        ``[operators] default_deferrable``. The run is checked once before deferring.
    :param max_consecutive_failures: transient polling failures in a row tolerated while deferred.
    :param cancel_on_kill: on Airflow 3.3+, cancel the run when a user marks the deferred task failed or
        succeeded or clears it (opt-in; the run may be shared with other consumers).
    :param cancel_on_timeout: cancel the run when the wait times out, in every mode (opt-in, for the same
        reason); the timeout's message says whether it was canceled.
    :param max_total_tokens: fail once the run has used more tokens than this (``per_model_usage``
        summed, checked on every poll), cancelling it if it is still going. None: no budget.

    ``poke_interval``, ``timeout`` (the whole wait, in seconds), ``soft_fail`` and ``mode`` work as on
    every Airflow sensor; the deferred wait honours ``timeout``, not ``execution_timeout``.
    """

    template_fields: Sequence[str] = ("eval_id", "run_id")
    templated_ids = ("eval_id", "run_id")
    operator_extra_links = (EvalRunReportLink(),)
    ui_color = "#d5e8f6"

    def __init__(
        self,
        *,
        eval_id: str,
        run_id: str,
        conn_id: str = EvalsHook.default_conn_name,
        success_statuses: Sequence[str] = (RunStatus.COMPLETED,),
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        max_consecutive_failures: int = DEFAULT_MAX_CONSECUTIVE_FAILURES,
        cancel_on_kill: bool = False,
        cancel_on_timeout: bool = False,
        max_total_tokens: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.eval_id = eval_id
        self.run_id = run_id
        self.conn_id = conn_id
        self.success_statuses = check_success_statuses(success_statuses)
        self.deferrable = deferrable
        self.max_consecutive_failures = max_consecutive_failures
        self.cancel_on_kill = cancel_on_kill
        self.cancel_on_timeout = check_flag("cancel_on_timeout", cancel_on_timeout)
        self.max_total_tokens = check_token_budget(max_total_tokens)
        self._published: str | None = None
        #: The poke mode's wait, made at the first poke (a rescheduled poke starts a new one).
        self._poke_wait: WaitPolicy | None = None
        #: The last poke found the run still going: a timeout Airflow raises next is the wait's, not the run's.
        self._poke_pending = False

    @cached_property
    def hook(self) -> EvalsHook:
        return EvalsHook(self.conn_id)

    def _check_ids(self) -> None:
        self.check_rendered_ids()
        validate_id("eval_id", self.eval_id)
        validate_id("run_id", self.run_id)

    def _policy(self, heartbeat: float | None = None) -> WaitPolicy:
        # Airflow ends a poking sensor at its timeout, and transient failures are tolerated until then
        # (max_consecutive_failures is for the deferred wait).
        return WaitPolicy(
            poll_interval=self.poke_interval,
            deadline=None,
            success_statuses=self.success_statuses,
            max_consecutive_failures=None,
            heartbeat=heartbeat,
            max_total_tokens=self.max_total_tokens,
            cancel_on_timeout=self.cancel_on_timeout,
        )

    def _finish(self, run: EvalRun) -> dict[str, Any]:
        result = finished_run_result(run, self.success_statuses)
        self.log.info("%s", summarize(run).progress_line())
        return result

    def execute(self, context: Context) -> Any:  # noqa: RET503 - defer() raises TaskDeferred
        self._check_ids()
        if not self.deferrable:
            return self._poke_until_done(context)
        try:
            run = self.hook.get_conn().get_run(self.eval_id, self.run_id)
        except EvalsAPIError as exc:
            if not exc.transient:
                raise
            # The trigger tolerates a run of transient failures; the pre-check must not be stricter.
            self.log.warning(
                "Could not check eval run %s before deferring (%s); deferring anyway", self.run_id, exc
            )
        else:
            publish_report_url(context, run.report_url)  # the link works while deferred
            decision = self._policy().observe(run, time.time())
            if decision.verdict is Verdict.OVER_BUDGET:
                fail_over_budget(self.hook, run, decision, self.max_total_tokens, self.log)
            if run.is_terminal:  # already done: no deferral, no triggerer round trip
                return self._finish(run)
            self.log.info("%s; deferring until it finishes", summarize(run).progress_line())
        self.defer(
            trigger=EvalRunTrigger.for_task(
                self, eval_id=self.eval_id, run_id=self.run_id, poll_interval=self.poke_interval
            ),
            method_name="execute_complete",
            # Past the trigger's deadline by what the trigger may still need after it (see
            # api.waiting.deferral_margin): the trigger ends the wait, cancelling first when asked.
            timeout=deferral_timeout(self.timeout),
        )

    def _poke_until_done(self, context: Context) -> Any:
        """Airflow's poke loop, and the cancel when its timeout ends the wait (``cancel_on_timeout``).

        Airflow raises that timeout in ``BaseSensorOperator.execute`` after a poke that found the run still
        going (``AirflowSkipException`` instead with ``soft_fail``); the same exceptions raised while a poke
        failed are not the wait's timeout and pass unchanged.
        """
        try:
            return super().execute(context)
        except (AirflowSensorTimeout, AirflowSkipException) as exc:
            wait = self._poke_wait
            if wait is None or not (self._poke_pending and wait.timed_out().cancel):
                raise
            status = wait.last_status or "unknown"
            cancel = cancel_run(self.hook, self.eval_id, self.run_id, self.log)
            message = with_cancel(
                f"Eval run {self.run_id} of eval {self.eval_id} was still {status} after the sensor's "
                f"timeout of {self.timeout:g}s",
                cancel,
            )
            if isinstance(exc, AirflowSkipException):
                raise AirflowSkipException(message) from exc
            raise WaitTimeout(message, canceled=cancel.canceled) from exc

    def poke(self, context: Context) -> PokeReturnValue | bool:
        self._poke_pending = False
        if self._poke_wait is None:
            self._poke_wait = self._policy(heartbeat=0.0)  # every poke shows the run's progress
        wait = self._poke_wait
        try:
            run = self.hook.get_conn().get_run(self.eval_id, self.run_id)
        except EvalsAPIError as exc:
            if not exc.transient or wait.poll_failed().over:
                raise
            self.log.warning("Polling eval run %s failed, will poke again: %s", self.run_id, exc)
            self._poke_pending = True
            return False
        decision = wait.observe(run, time.time())
        if decision.verdict is Verdict.OVER_BUDGET:
            publish_report_url(context, run.report_url)
            fail_over_budget(self.hook, run, decision, self.max_total_tokens, self.log)
        if not decision.over:
            if self._published != run.report_url:
                publish_report_url(context, run.report_url)
                self._published = run.report_url
            if decision.log_progress:
                self.log.info("%s", summarize(run).progress_line())
            self._poke_pending = True
            return False
        publish_report_url(context, run.report_url)
        return PokeReturnValue(is_done=True, xcom_value=self._finish(run))

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Accept only the events EvalRunTrigger yields; anything else is an error, never a success."""
        result = event_result(event, eval_id=self.eval_id, run_id=self.run_id)
        self.log.info("%s", (event or {}).get("message"))
        return result

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        """The backstop for a deferral no triggerer ran to its end: Airflow's timeout of the deferral fired
        and the scheduler resumes the task only to fail it. Cancel the run here when asked (the trigger
        never did), and end as the trigger's ``timeout`` would have: through ``execute_complete`` and
        Airflow's own sensor handling, so ``soft_fail`` still skips."""
        if deferral_timed_out(next_method, next_kwargs):
            self._check_ids()
            event = lost_deferral_event(
                self.hook, self.eval_id, self.run_id, ending=self._policy().timed_out(), log=self.log
            )
            next_method, next_kwargs = "execute_complete", {"event": event}
        return super().resume_execution(next_method, next_kwargs, context)

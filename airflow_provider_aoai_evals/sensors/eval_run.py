"""EvalRunSensor: wait for an eval run to finish, deferrable by default setting, poke/reschedule too."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import Any

from airflow.providers.common.compat.sdk import (
    BaseSensorOperator,
    Context,
    PokeReturnValue,
    conf,
)

from airflow_provider_aoai_evals.api.errors import EvalsAPIError
from airflow_provider_aoai_evals.api.models import EvalRun, RunStatus
from airflow_provider_aoai_evals.api.summary import summarize
from airflow_provider_aoai_evals.api.validation import validate_id
from airflow_provider_aoai_evals.api.waiting import WaitPolicy
from airflow_provider_aoai_evals.hooks.evals import EvalsHook
from airflow_provider_aoai_evals.links import EvalRunReportLink, publish_report_url
from airflow_provider_aoai_evals.outcomes import check_success_statuses, event_result, finished_run_result
from airflow_provider_aoai_evals.templating import TemplatedIds
from airflow_provider_aoai_evals.triggers.eval_run import (
    DEFAULT_MAX_CONSECUTIVE_FAILURES,
    EvalRunTrigger,
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
        self._published: str | None = None
        #: The poke mode's wait, made at the first poke (a rescheduled poke starts a new one).
        self._poke_wait: WaitPolicy | None = None

    @cached_property
    def hook(self) -> EvalsHook:
        return EvalsHook(self.conn_id)

    def _check_ids(self) -> None:
        self.check_rendered_ids()
        validate_id("eval_id", self.eval_id)
        validate_id("run_id", self.run_id)

    def _finish(self, run: EvalRun) -> dict[str, Any]:
        result = finished_run_result(run, self.success_statuses)
        self.log.info("%s", summarize(run).progress_line())
        return result

    def execute(self, context: Context) -> Any:  # noqa: RET503 - defer() raises TaskDeferred
        self._check_ids()
        if not self.deferrable:
            return super().execute(context)
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
            if run.is_terminal:  # already done: no deferral, no triggerer round trip
                return self._finish(run)
            self.log.info("%s; deferring until it finishes", summarize(run).progress_line())
        self.defer(
            trigger=EvalRunTrigger.for_task(
                self, eval_id=self.eval_id, run_id=self.run_id, poll_interval=self.poke_interval
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=self.timeout),
        )

    def poke(self, context: Context) -> PokeReturnValue | bool:
        if self._poke_wait is None:
            # Airflow ends a poking sensor at its timeout, and transient failures are tolerated until then
            # (max_consecutive_failures is for the deferred wait); every poke shows the run's progress.
            self._poke_wait = WaitPolicy(
                poll_interval=self.poke_interval,
                deadline=None,
                success_statuses=self.success_statuses,
                max_consecutive_failures=None,
                heartbeat=0.0,
            )
        wait = self._poke_wait
        try:
            run = self.hook.get_conn().get_run(self.eval_id, self.run_id)
        except EvalsAPIError as exc:
            if not exc.transient or wait.poll_failed().over:
                raise
            self.log.warning("Polling eval run %s failed, will poke again: %s", self.run_id, exc)
            return False
        decision = wait.observe(run, time.time())
        if not decision.over:
            if self._published != run.report_url:
                publish_report_url(context, run.report_url)
                self._published = run.report_url
            if decision.log_progress:
                self.log.info("%s", summarize(run).progress_line())
            return False
        publish_report_url(context, run.report_url)
        return PokeReturnValue(is_done=True, xcom_value=self._finish(run))

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Accept only the events EvalRunTrigger yields; anything else is an error, never a success."""
        result = event_result(event, eval_id=self.eval_id, run_id=self.run_id)
        self.log.info("%s", (event or {}).get("message"))
        return result

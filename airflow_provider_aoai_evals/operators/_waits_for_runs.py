"""How the run operators wait for a run: in the triggerer (deferrable) or by polling on the worker.

Both ways follow ``api.waiting.WaitPolicy``, so a deferred and a polling wait end the same way; what a
finished run or a trigger event turns into is ``outcomes``'s, shared with the sensor. A wait that times out
or goes over its token budget cancels the run on its way out (``wait_guard``): these operators started or
chose the run, so nobody else is waiting for it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import Any, NoReturn

from airflow.providers.common.compat.sdk import BaseOperator, Context, conf

from airflow_provider_aoai_evals.api.errors import EvalsAPIError, EvalsConfigError
from airflow_provider_aoai_evals.api.models import EvalRun, RunStatus
from airflow_provider_aoai_evals.api.summary import summarize
from airflow_provider_aoai_evals.api.waiting import (
    DEFAULT_MAX_CONSECUTIVE_FAILURES,
    Decision,
    Verdict,
    WaitPolicy,
    check_flag,
    check_token_budget,
)
from airflow_provider_aoai_evals.exceptions import EvalRunCanceledOnTimeout, EvalRunError, with_cancel
from airflow_provider_aoai_evals.hooks.evals import EvalsHook
from airflow_provider_aoai_evals.operators._lineage import ObservedRun
from airflow_provider_aoai_evals.operators._reattach import STATE_RUN_ID_KEY
from airflow_provider_aoai_evals.outcomes import (
    WaitTimeout,
    check_success_statuses,
    event_result,
    finished_run_result,
)
from airflow_provider_aoai_evals.triggers.eval_run import EvalRunTrigger
from airflow_provider_aoai_evals.wait_guard import (
    cancel_run,
    deferral_timed_out,
    deferral_timeout,
    fail_over_budget,
    lost_deferral_event,
)

DEFAULT_WAIT_TIMEOUT = timedelta(days=7)


def _seconds(value: float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class WaitsForRuns(BaseOperator):
    """What the run operators share: waiting for a run deferrably or by polling, and reading the outcome."""

    def __init__(
        self,
        *,
        conn_id: str = EvalsHook.default_conn_name,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 30.0,
        timeout: float | timedelta = DEFAULT_WAIT_TIMEOUT,
        success_statuses: Sequence[str] = (RunStatus.COMPLETED,),
        max_consecutive_failures: int = DEFAULT_MAX_CONSECUTIVE_FAILURES,
        cancel_on_kill: bool = True,
        cancel_on_timeout: bool = True,
        max_total_tokens: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.deferrable = deferrable
        if poll_interval <= 0:
            raise EvalsConfigError("poll_interval", f"must be positive, got {poll_interval!r}")
        self.poll_interval = float(poll_interval)
        self.timeout = _seconds(timeout)
        if self.timeout <= 0:
            raise EvalsConfigError("timeout", f"must be positive, got {timeout!r}")
        self.success_statuses = check_success_statuses(success_statuses)
        self.max_consecutive_failures = max_consecutive_failures
        self.cancel_on_kill = cancel_on_kill
        self.cancel_on_timeout = check_flag("cancel_on_timeout", cancel_on_timeout)
        self.max_total_tokens = check_token_budget(max_total_tokens)
        self._active: tuple[str, str] | None = None
        #: The run as last seen, for lineage; execute_complete sets it too (a new instance after deferral).
        self._observed: ObservedRun | None = None

    @cached_property
    def hook(self) -> EvalsHook:
        return EvalsHook(self.conn_id)

    def _policy(self, deadline: float | None) -> WaitPolicy:
        return WaitPolicy(
            poll_interval=self.poll_interval,
            deadline=deadline,
            success_statuses=self.success_statuses,
            max_consecutive_failures=self.max_consecutive_failures,
            max_total_tokens=self.max_total_tokens,
            cancel_on_timeout=self.cancel_on_timeout,
        )

    def _wait(self, context: Context, run: EvalRun) -> dict[str, Any]:
        """Wait for ``run``: at once if it is over, in the triggerer if deferrable, else by polling."""
        # The run as created or reattached to is an observation too: one an earlier try left going may
        # already be over budget.
        first = self._policy(None).observe(run, time.time())
        if first.verdict is Verdict.OVER_BUDGET:
            self._over_budget(run, first)
        if run.is_terminal:
            return self._finished(run)
        eval_id, run_id = str(run.eval_id), run.id
        if self.deferrable:
            self.log.info("%s; deferring until it finishes", summarize(run).progress_line())
            self.defer(
                trigger=EvalRunTrigger.for_task(
                    self, eval_id=eval_id, run_id=run_id, poll_interval=self.poll_interval
                ),
                method_name="execute_complete",
                kwargs={"eval_id": eval_id, "run_id": run_id, **self._resume_kwargs()},
                # Past the trigger's deadline by what the trigger may still need after it (see
                # api.waiting.deferral_margin): the trigger ends the wait, cancelling first when asked.
                timeout=deferral_timeout(self.timeout),
            )
        return self._poll(eval_id, run_id)

    def _poll(self, eval_id: str, run_id: str) -> dict[str, Any]:
        client = self.hook.get_conn()
        deadline = time.time() + self.timeout
        wait = self._policy(deadline)
        while True:
            now = time.time()
            ending = wait.before_poll(now)
            if ending.over:
                status = wait.last_status or "unknown"
                cancel = cancel_run(self.hook, eval_id, run_id, self.log) if ending.cancel else None
                error = EvalRunCanceledOnTimeout if cancel is not None and cancel.canceled else EvalRunError
                raise error(
                    with_cancel(
                        f"Eval run {run_id} of eval {eval_id} was still {status} after {self.timeout:.0f}s",
                        cancel,
                    ),
                    eval_id=eval_id,
                    run_id=run_id,
                    status=(cancel.status if cancel is not None else None) or status,
                    canceled=cancel.canceled if cancel is not None else None,
                )
            try:
                run = client.get_run(eval_id, run_id, deadline=deadline)
            except EvalsAPIError as exc:
                if not exc.transient or wait.poll_failed().over:
                    raise
                self.log.warning(
                    "Polling eval run %s failed (%d in a row), will retry: %s", run_id, wait.failures, exc
                )
            else:
                decision = wait.observe(run, now)
                if decision.log_progress:
                    self.log.info("%s", summarize(run).progress_line())
                if decision.verdict is Verdict.OVER_BUDGET:
                    self._over_budget(run, decision)
                if decision.over:
                    return self._finished(run)
            time.sleep(wait.pause(time.time()))

    def execute_complete(
        self, context: Context, event: dict[str, Any] | None = None, eval_id: str = "", run_id: str = ""
    ) -> dict[str, Any]:
        """Accept only the events EvalRunTrigger yields; anything else fails the task."""
        # Before the event is judged: a failed run's FAIL lineage event names it too.
        self._observed = ObservedRun.from_event(eval_id, run_id, event)
        result = event_result(event, eval_id=eval_id, run_id=run_id)
        self.log.info("%s", (event or {}).get("message"))
        return result

    def _over_budget(self, run: EvalRun, decision: Decision) -> NoReturn:
        self._observed = ObservedRun(str(run.eval_id), run.id, summarize(run).to_xcom())
        fail_over_budget(self.hook, run, decision, self.max_total_tokens, self.log)

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        """The backstop for a deferral no triggerer ran to its end: Airflow's timeout of the deferral fired
        and the scheduler resumes the task only to fail it. The trigger never cancelled the run then, so
        cancel it here (when ``cancel_on_timeout``) and fail as the trigger's own ``timeout`` would have."""
        if not deferral_timed_out(next_method, next_kwargs):
            return super().resume_execution(next_method, next_kwargs, context)
        ids = self._waited_run(context)
        if ids is None:
            raise WaitTimeout(
                "The wait's deadline passed while no triggerer ran its trigger (Airflow's timeout of the "
                "deferral fired), and this try recorded no run id, so no run was canceled"
            )
        eval_id, run_id = ids
        event = lost_deferral_event(
            self.hook, eval_id, run_id, ending=self._policy(None).timed_out(), log=self.log
        )
        return super().resume_execution(
            "execute_complete", {"event": event, "eval_id": eval_id, "run_id": run_id}, context
        )

    def _waited_run(self, context: Context) -> tuple[str, str] | None:
        """The run a deferred wait was for, found again by the instance resumed to fail: what ``execute``
        recorded (the ``run_id`` XCom, or the task state store on Airflow 3.3+), else the task's own
        templated ids (``CancelEvalRunOperator``)."""
        ti = context["ti"]
        eval_id = ti.xcom_pull(task_ids=ti.task_id, key="eval_id") or getattr(self, "eval_id", None)
        run_id = ti.xcom_pull(task_ids=ti.task_id, key="run_id")
        store = context.get("task_state_store")
        if not run_id and store is not None:
            run_id = store.get(STATE_RUN_ID_KEY)
        run_id = run_id or getattr(self, "run_id", None)
        if not (isinstance(eval_id, str) and eval_id and isinstance(run_id, str) and run_id):
            return None
        return eval_id, run_id

    def _finished(self, run: EvalRun) -> dict[str, Any]:
        self._observed = ObservedRun(str(run.eval_id), run.id, summarize(run).to_xcom())
        return finished_run_result(run, self.success_statuses)

    def _resume_kwargs(self) -> dict[str, Any]:
        """Extra ``execute_complete`` keyword arguments: what the instance that resumes after the deferral
        needs and cannot get back from the event. Must be serializable and never a secret."""
        return {}

    def on_kill(self) -> None:
        """Cancel the run this task is waiting for (polling mode), best-effort; a deferred wait is cancelled
        by the trigger's ``on_kill`` on Airflow 3.3+."""
        if not (self.cancel_on_kill and self._active):
            return
        eval_id, run_id = self._active
        try:
            run = self.hook.get_conn().cancel_run(eval_id, run_id, deadline=time.time() + 30)
            self.log.info("on_kill: eval run %s is now %s", run_id, run.status)
        except EvalsAPIError as exc:
            self.log.warning("on_kill: could not cancel eval run %s: %s", run_id, exc)

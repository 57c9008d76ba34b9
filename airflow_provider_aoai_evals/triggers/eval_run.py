"""EvalRunTrigger: waits for one eval run in the triggerer, without a worker slot.

It polls with the async client (one shared aiohttp session per loop and endpoint, so thousands of waits
share a connection pool), yields exactly one event, and keeps only ids, intervals and an absolute
deadline in its kwargs, so a triggerer restart resumes the same wait and no secret is stored.

The trigger, not Airflow's timeout of the deferral, ends a wait at its deadline: only the trigger can
cancel the run first (``cancel_on_timeout``), so the task that started it never fails while the run goes
on spending. The same holds for a run over its token budget (``max_total_tokens``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

from airflow.providers.common.compat.sdk import AirflowNotFoundException
from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_aoai_evals.api.client import AsyncEvalsClient, RunPoll
from airflow_provider_aoai_evals.api.errors import EvalsAPIError, EvalsConfigError, EvalsError
from airflow_provider_aoai_evals.api.models import EvalRun, RunStatus
from airflow_provider_aoai_evals.api.settings import ClientSettings
from airflow_provider_aoai_evals.api.summary import summarize
from airflow_provider_aoai_evals.api.waiting import (
    DEFAULT_CANCEL_TIMEOUT,
    DEFAULT_MAX_CONSECUTIVE_FAILURES,
    CancelOutcome,
    Decision,
    Verdict,
    WaitPolicy,
)
from airflow_provider_aoai_evals.exceptions import over_budget_message, run_ended_message, with_cancel
from airflow_provider_aoai_evals.hooks import settings_reuse
from airflow_provider_aoai_evals.hooks.evals import EvalsHook
from airflow_provider_aoai_evals.triggers._task_state import still_deferred

#: The event statuses this trigger yields; ``execute_complete`` accepts only these.
EVENT_STATUSES = ("success", "failure", "timeout", "error", "over_budget")
#: ``on_kill``'s work in progress (see there).
_KILLS: set[asyncio.Future[None]] = set()
#: While a run's status and counts stay the same, its progress line is repeated this often (seconds).
PROGRESS_HEARTBEAT_SECONDS = 300.0


def _error_fields(exc: Exception) -> dict[str, Any]:
    if isinstance(exc, EvalsAPIError):
        return {
            "status_code": exc.status_code,
            "request_id": exc.request_id,
            "code": exc.code,
            "message": exc.message,
        }
    return {"status_code": None, "request_id": None, "code": None, "message": str(exc)}


class WaitingTask(Protocol):
    """What a task that defers to this trigger says about its wait (the run operators and the sensor)."""

    @property
    def conn_id(self) -> str: ...
    @property
    def timeout(self) -> float: ...
    @property
    def success_statuses(self) -> Sequence[str]: ...
    @property
    def max_consecutive_failures(self) -> int: ...
    @property
    def cancel_on_kill(self) -> bool: ...
    @property
    def cancel_on_timeout(self) -> bool: ...
    @property
    def max_total_tokens(self) -> int | None: ...


class EvalRunTrigger(BaseTrigger):
    """Poll an eval run until it reaches a terminal status, the deadline passes, or polling must stop.

    :param eval_id: the eval.
    :param run_id: the run to wait for.
    :param conn_id: an ``aoai_evals`` connection.
    :param poll_interval: seconds between polls.
    :param deadline: absolute end of the wait (epoch seconds); survives triggerer restarts.
    :param success_statuses: terminal statuses that yield ``success``; other terminal ones yield ``failure``.
    :param max_consecutive_failures: transient poll failures in a row tolerated before giving up
        (each poll already retries with backoff inside the client). Permanent errors end the wait at once.
    :param cancel_on_kill: on Airflow 3.3+, cancel the run when a user marks the deferred task failed or
        succeeded, or clears it. Airflow 3.1 and 3.2 never call ``on_kill``.
    :param cancel_timeout: upper bound in seconds for that cancel, and for the cancels below.
    :param cancel_on_timeout: at the deadline, cancel the run before yielding ``timeout`` (the event says
        whether that worked). Off by default so a trigger serialized by an earlier release, without this
        kwarg, ends as it did.
    :param max_total_tokens: the run's token budget; a run seen over it is canceled if still going and ends
        the wait with ``over_budget``. None (and the default of an earlier release's trigger): no budget.
    """

    def __init__(
        self,
        *,
        eval_id: str,
        run_id: str,
        conn_id: str = EvalsHook.default_conn_name,
        poll_interval: float = 30.0,
        deadline: float,
        success_statuses: Sequence[str] = (RunStatus.COMPLETED,),
        max_consecutive_failures: int = DEFAULT_MAX_CONSECUTIVE_FAILURES,
        cancel_on_kill: bool = False,
        cancel_timeout: float = DEFAULT_CANCEL_TIMEOUT,
        cancel_on_timeout: bool = False,
        max_total_tokens: int | None = None,
    ) -> None:
        super().__init__()
        self.eval_id = eval_id
        self.run_id = run_id
        self.conn_id = conn_id
        self.poll_interval = float(poll_interval)
        self.deadline = float(deadline)
        # A tuple of strings: the garbage collector stops tracking it, a list it would walk every full pass.
        self.success_statuses = tuple(success_statuses)
        self.max_consecutive_failures = int(max_consecutive_failures)
        self.cancel_on_kill = bool(cancel_on_kill)
        self.cancel_timeout = float(cancel_timeout)
        self.cancel_on_timeout = bool(cancel_on_timeout)
        self.max_total_tokens = None if max_total_tokens is None else int(max_total_tokens)

    @classmethod
    def for_task(
        cls, task: WaitingTask, *, eval_id: str, run_id: str, poll_interval: float
    ) -> EvalRunTrigger:
        """The trigger ``task`` defers to, on its wait settings; the deadline is its ``timeout`` from now."""
        return cls(
            eval_id=eval_id,
            run_id=run_id,
            conn_id=task.conn_id,
            poll_interval=poll_interval,
            deadline=time.time() + task.timeout,
            success_statuses=task.success_statuses,
            max_consecutive_failures=task.max_consecutive_failures,
            cancel_on_kill=task.cancel_on_kill,
            cancel_on_timeout=task.cancel_on_timeout,
            max_total_tokens=task.max_total_tokens,
        )

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "eval_id": self.eval_id,
                "run_id": self.run_id,
                "conn_id": self.conn_id,
                "poll_interval": self.poll_interval,
                "deadline": self.deadline,
                "success_statuses": list(self.success_statuses),
                "max_consecutive_failures": self.max_consecutive_failures,
                "cancel_on_kill": self.cancel_on_kill,
                "cancel_timeout": self.cancel_timeout,
                "cancel_on_timeout": self.cancel_on_timeout,
                "max_total_tokens": self.max_total_tokens,
            },
        )

    @property
    def log(self) -> Any:
        """The class's logger, not one per trigger: thousands of waits share a triggerer, and each logger
        adds long-lived objects that every full garbage collection walks. Same name, same routing."""
        return type(self).logger()

    def _event(self, status: str, message: str, **extra: Any) -> TriggerEvent:
        payload = {"status": status, "eval_id": self.eval_id, "run_id": self.run_id, "message": message}
        payload.update(extra)
        return TriggerEvent(payload)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        try:
            # Waits starting close together share one connection read (see hooks.settings_reuse).
            settings, reused = await settings_reuse.settings_for_wait(self.conn_id)
        except (EvalsError, AirflowNotFoundException) as exc:
            yield self._event(
                "error", f"Cannot watch eval run {self.run_id}: {exc}", error=_error_fields(exc)
            )
            return
        while True:
            # The loop's client for these settings, shared by every wait that uses them.
            async with await EvalsHook(self.conn_id).get_async_conn(settings) as client:
                try:
                    poll = client.run_poll(self.eval_id, self.run_id)
                except EvalsConfigError as exc:
                    yield self._event("error", str(exc), error=_error_fields(exc))
                    return
                outcome = await self._wait(client, poll, settings if reused else None)
            if isinstance(outcome, TriggerEvent):
                yield outcome
                return
            settings, reused = outcome, False

    async def _changed_settings(self, used: ClientSettings) -> ClientSettings | None:
        """After a poll with reused settings failed: the connection's current settings if they differ."""
        try:
            current = await settings_reuse.reread(self.conn_id, used)
        except (EvalsError, AirflowNotFoundException) as exc:
            self.log.warning("Could not read connection %s again: %s", self.conn_id, exc)
            return None
        if current == used:
            return None
        self.log.info(
            "Connection %s changed since this wait read it; polling eval run %s with its current settings",
            self.conn_id,
            self.run_id,
        )
        return current

    async def _wait(
        self, client: AsyncEvalsClient, poll: RunPoll, reused: ClientSettings | None
    ) -> TriggerEvent | ClientSettings:
        """Poll until there is an event to yield, or return the connection's new settings when a poll
        with ``reused`` settings (read by an earlier wait) failed and the connection has since changed."""
        wait = WaitPolicy(
            poll_interval=self.poll_interval,
            deadline=self.deadline,
            success_statuses=self.success_statuses,
            max_consecutive_failures=self.max_consecutive_failures,
            heartbeat=PROGRESS_HEARTBEAT_SECONDS,
            max_total_tokens=self.max_total_tokens,
            cancel_on_timeout=self.cancel_on_timeout,
        )
        while True:
            now = time.time()
            decision = wait.before_poll(now)
            if decision.over:
                return await self._timed_out(client, wait, decision)
            try:
                run = await poll(deadline=self.deadline)
            except EvalsAPIError as exc:
                if reused is not None:
                    current = await self._changed_settings(reused)
                    if current is not None:
                        return current
                    reused = None
                if not exc.transient:
                    return self._event(
                        "error",
                        f"Polling eval run {self.run_id} failed permanently: {exc}",
                        error=_error_fields(exc),
                    )
                if wait.poll_failed().over:
                    return self._event(
                        "error",
                        f"Polling eval run {self.run_id} failed {wait.failures} times in a row; last error: {exc}",
                        error=_error_fields(exc),
                    )
                self.log.warning(
                    "Polling eval run %s failed (%d in a row), will retry: %s",
                    self.run_id,
                    wait.failures,
                    exc,
                )
            else:
                decision = wait.observe(run, now)
                if decision.verdict is Verdict.OVER_BUDGET:
                    return await self._over_budget(client, run, decision)
                if decision.over:
                    return self._finished(run, decision)
                if decision.log_progress:
                    self.log.info("%s", summarize(run).progress_line())
                # Not kept alive across the sleep: thousands of waits share this process.
                del run
            await asyncio.sleep(wait.pause(time.time()))

    async def _timed_out(
        self, client: AsyncEvalsClient, wait: WaitPolicy, decision: Decision
    ) -> TriggerEvent:
        message = (
            f"Eval run {self.run_id} of eval {self.eval_id} was still {wait.last_status or 'unknown'} "
            "when the wait's deadline passed"
        )
        if not decision.cancel:  # as an earlier release's trigger ended: no cancel keys
            return self._event("timeout", message, run_status=wait.last_status)
        cancel = await self._cancel_at_end(client)
        return self._event(
            "timeout",
            with_cancel(message, cancel),
            run_status=cancel.status or wait.last_status,
            **cancel.to_event(),
        )

    async def _over_budget(self, client: AsyncEvalsClient, run: EvalRun, decision: Decision) -> TriggerEvent:
        summary = summarize(run)
        self.log.info("%s", summary.progress_line())
        cancel = await self._cancel_at_end(client) if decision.cancel else None
        # Both are set when the policy says OVER_BUDGET.
        assert self.max_total_tokens is not None
        assert decision.tokens_used is not None
        message = over_budget_message(
            self.eval_id,
            self.run_id,
            status=run.status,
            max_total_tokens=self.max_total_tokens,
            total_tokens=decision.tokens_used,
            cancel=cancel,
        )
        return self._event(
            "over_budget",
            message,
            run_status=(cancel.status if cancel is not None else None) or run.status,
            max_total_tokens=self.max_total_tokens,
            total_tokens=decision.tokens_used,
            summary=summary.to_xcom(),
            **(cancel.to_event() if cancel is not None else {}),  # a finished run: no cancel tried
        )

    async def _cancel_at_end(self, client: AsyncEvalsClient) -> CancelOutcome:
        """Cancel the run as the wait ends, through the wait's own (shared) client, within
        ``cancel_timeout``; a failure is reported in the event rather than raised, so the wait still
        ends with its one event and the task fails saying the run may still be going."""
        try:
            run = await asyncio.wait_for(
                client.cancel_run(self.eval_id, self.run_id, deadline=time.time() + self.cancel_timeout),
                timeout=self.cancel_timeout,
            )
        except asyncio.TimeoutError:
            error = f"no answer within {self.cancel_timeout:g}s"
        except EvalsError as exc:
            error = str(exc)
        else:
            self.log.info("Canceled eval run %s as its wait ended; it is now %s", self.run_id, run.status)
            return CancelOutcome.answered(run.status)
        self.log.warning("Could not cancel eval run %s as its wait ended: %s", self.run_id, error)
        return CancelOutcome.failed(error)

    def _finished(self, run: EvalRun, decision: Decision) -> TriggerEvent:
        summary = summarize(run)
        self.log.info("%s", summary.progress_line())
        ok = decision.verdict is Verdict.DONE
        message = (
            f"Eval run {self.run_id} of eval {self.eval_id} finished: {run.status}"
            if ok
            else run_ended_message(self.eval_id, self.run_id, run.status, decision.api_message)
        )
        return self._event(
            "success" if ok else "failure", message, run_status=run.status, summary=summary.to_xcom()
        )

    async def on_kill(self) -> None:
        """Cancel the run when a user kills the deferred task (Airflow 3.3+). Best-effort and bounded:
        failures are logged, never raised.

        Airflow also calls this when another triggerer has adopted the trigger (apache/airflow#73454), so
        a task instance that is still deferred keeps its run (``_task_state``); a run that already ended
        is not sent a cancel either. The work runs in a task of its own that this only waits for: the
        triggerer repeats its cancel of a trigger on every sync until the trigger is gone, which cancels
        ``on_kill`` too, and the first state read of a triggerer can outlast a sync.
        """
        if not self.cancel_on_kill:
            return
        kill = asyncio.ensure_future(self._kill())
        _KILLS.add(kill)  # held until done: the event loop keeps only a weak reference to a task
        kill.add_done_callback(_KILLS.discard)
        await asyncio.shield(kill)

    async def _kill(self) -> None:
        try:
            deferred = await asyncio.wait_for(
                still_deferred(getattr(self, "task_instance", None)), timeout=self.cancel_timeout
            )
        except asyncio.TimeoutError:
            deferred = None
        if deferred:
            self.log.info(
                "on_kill: the task is still deferred, so another triggerer took this trigger over (not a "
                "kill); eval run %s is left running",
                self.run_id,
            )
            return
        try:
            status = await asyncio.wait_for(self._cancel(), timeout=self.cancel_timeout)
            self.log.info("on_kill: eval run %s is now %s", self.run_id, status)
        except (EvalsError, asyncio.TimeoutError) as exc:
            self.log.warning("on_kill: could not cancel eval run %s: %r", self.run_id, exc)

    async def _cancel(self) -> str:  # on_kill's: the wait's client is gone by then
        deadline = time.time() + self.cancel_timeout
        async with await EvalsHook(self.conn_id).get_async_conn() as client:
            run = await client.get_run(self.eval_id, self.run_id, deadline=deadline)
            if not run.is_terminal:
                run = await client.cancel_run(self.eval_id, self.run_id, deadline=deadline)
        return run.status

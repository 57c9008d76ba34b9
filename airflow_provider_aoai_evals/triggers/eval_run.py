"""EvalRunTrigger: waits for one eval run in the triggerer, without a worker slot.

It polls with the async client (one shared aiohttp session per loop and endpoint, so thousands of waits
share a connection pool), yields exactly one event, and keeps only ids, intervals and an absolute
deadline in its kwargs, so a triggerer restart resumes the same wait and no secret is stored.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from airflow.providers.common.compat.sdk import AirflowNotFoundException
from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_aoai_evals.api.client import RunPoll
from airflow_provider_aoai_evals.api.errors import EvalsAPIError, EvalsConfigError, EvalsError
from airflow_provider_aoai_evals.api.models import RunStatus
from airflow_provider_aoai_evals.api.settings import ClientSettings
from airflow_provider_aoai_evals.api.summary import summarize
from airflow_provider_aoai_evals.exceptions import run_ended_message
from airflow_provider_aoai_evals.hooks import settings_reuse
from airflow_provider_aoai_evals.hooks.evals import EvalsHook

#: The event statuses this trigger yields; ``execute_complete`` accepts only these.
EVENT_STATUSES = ("success", "failure", "timeout", "error")
DEFAULT_MAX_CONSECUTIVE_FAILURES = 10
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
    :param cancel_timeout: upper bound in seconds for that cancel.
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
        cancel_timeout: float = 30.0,
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
                outcome = await self._wait(poll, settings if reused else None)
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

    async def _wait(self, poll: RunPoll, reused: ClientSettings | None) -> TriggerEvent | ClientSettings:
        """Poll until there is an event to yield, or return the connection's new settings when a poll
        with ``reused`` settings (read by an earlier wait) failed and the connection has since changed."""
        failures = 0
        last_status: str | None = None
        last_state: tuple[str, tuple[int, int, int, int] | None] | None = None
        last_logged = time.monotonic()
        while True:
            if time.time() >= self.deadline:
                return self._event(
                    "timeout",
                    f"Eval run {self.run_id} of eval {self.eval_id} was still {last_status or 'unknown'} "
                    "when the wait's deadline passed",
                    run_status=last_status,
                )
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
                failures += 1
                if failures >= self.max_consecutive_failures:
                    return self._event(
                        "error",
                        f"Polling eval run {self.run_id} failed {failures} times in a row; last error: {exc}",
                        error=_error_fields(exc),
                    )
                self.log.warning(
                    "Polling eval run %s failed (%d in a row), will retry: %s", self.run_id, failures, exc
                )
            else:
                failures = 0
                last_status = run.status
                counts = run.result_counts
                tally = (counts.total, counts.passed, counts.failed, counts.errored) if counts else None
                state = (run.status, tally)
                now = time.monotonic()
                # A line per change of status or counts, like a progress bar; an unchanged run gets a line
                # every PROGRESS_HEARTBEAT_SECONDS so a reader sees the wait is alive, not one per poll.
                summary = None
                if state != last_state or now - last_logged >= PROGRESS_HEARTBEAT_SECONDS:
                    summary = summarize(run)
                    self.log.info("%s", summary.progress_line())
                    last_state, last_logged = state, now
                if run.is_terminal:
                    summary = summary or summarize(run)
                    ok = run.status in self.success_statuses
                    api_message = summary.error_message
                    message = (
                        f"Eval run {self.run_id} of eval {self.eval_id} finished: {run.status}"
                        if ok
                        else run_ended_message(self.eval_id, self.run_id, run.status, api_message)
                    )
                    return self._event(
                        "success" if ok else "failure",
                        message,
                        run_status=run.status,
                        summary=summary.to_xcom(),
                    )
                # Not kept alive across the sleep: thousands of waits share this process.
                del run, counts, summary, tally, state
            await asyncio.sleep(max(0.0, min(self.poll_interval, self.deadline - time.time())))

    async def on_kill(self) -> None:
        """Cancel the run when a user kills the deferred task (Airflow 3.3+). Best-effort and bounded:
        failures are logged, never raised; cancelling a finished run is harmless."""
        if not self.cancel_on_kill:
            return
        try:
            status = await asyncio.wait_for(self._cancel(), timeout=self.cancel_timeout)
            self.log.info("on_kill: eval run %s is now %s", self.run_id, status)
        except (EvalsError, asyncio.TimeoutError) as exc:
            self.log.warning("on_kill: could not cancel eval run %s: %r", self.run_id, exc)

    async def _cancel(self) -> str:
        async with await EvalsHook(self.conn_id).get_async_conn() as client:
            run = await client.cancel_run(
                self.eval_id, self.run_id, deadline=time.time() + self.cancel_timeout
            )
        return run.status

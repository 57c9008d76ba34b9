"""EvalRunFinishedTrigger: an event trigger for ``AssetWatcher``, firing once per finished run of an eval.

It lets a DAG be scheduled on eval completion rather than on a clock. Unlike ``EvalRunTrigger`` (one wait,
one event), it never returns: each poll lists the eval's newest runs and yields one ``TriggerEvent`` per run
that reached a terminal status in ``statuses``, with the run id in the payload.

Delivery is *at least once*. The algorithm (see docs/event-driven.md for the long form):

* A **cursor** remembers what has been decided: ``handled`` (terminal runs already fired, or skipped because
  their status is not in ``statuses``), ``pending`` (runs seen queued / in progress, tracked until they
  finish however far down the list newer runs push them), a ``floor`` (runs created before it that are not
  pending need no look) and a ``gap`` (where a listing cut short by ``max_runs_per_poll`` resumes).
* A poll lists runs newest first down to the floor (at most ``max_runs_per_poll``), continues an open gap,
  and fetches pending runs the listing did not reach. A run that is terminal and not handled fires.
* The floor trails the newest ``created_at`` the *server* reported by ``settle_seconds``, so a run that
  shows up in the list late, or a clock skew between triggerer and service, cannot slip under it.
* On a start without a cursor, in-flight runs are found with the list's ``status`` filter (whatever their
  age), and runs already terminal that were created within ``lookback_seconds`` fire: that is the recent
  history on a first deployment, and the safety net after a restart where nothing was persisted.
* On Airflow 3.3+ the triggerer injects ``asset_state_store``; the cursor is kept there, so a restart
  repeats nothing and misses nothing. A run is written there as handled only ``cursor_commit_delay`` seconds
  after its event was yielded: the triggerer persists events asynchronously, and a cursor must never be
  ahead of the events (a crash in that window repeats the event instead of losing it). The cursor and how
  it is kept are in ``triggers._watch_cursor``; this module decides what a poll reads and what fires.

Errors: transient ones (network, 429, 5xx) are logged and polling continues at ``poll_interval``; permanent
ones (401/403/404, a missing connection) are logged as errors and retried every
``permanent_error_interval`` seconds with a freshly read connection. An event trigger that died would stop
the DAG's schedule without a sound, so it keeps running and says loudly what is wrong.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import AirflowNotFoundException
from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from airflow_provider_aoai_evals.api.errors import (
    EvalsAPIError,
    EvalsBadRequestError,
    EvalsConfigError,
    EvalsError,
    EvalsNotFoundError,
)
from airflow_provider_aoai_evals.api.models import RunStatus
from airflow_provider_aoai_evals.api.summary import summarize
from airflow_provider_aoai_evals.api.validation import validate_id
from airflow_provider_aoai_evals.hooks.evals import EvalsHook
from airflow_provider_aoai_evals.triggers._watch_cursor import (
    CURSOR_VERSION,
    MAX_HANDLED,
    STORE_TIMEOUT,
    CursorStore,
    WatchCursor,
    created_at,
)

if TYPE_CHECKING:
    from airflow_provider_aoai_evals.api.client import AsyncEvalsClient
    from airflow_provider_aoai_evals.api.models import EvalRun

# The cursor's limits live with it and are still importable from here.
__all__ = [
    "CURSOR_VERSION",
    "MAX_HANDLED",
    "MAX_SEEDED_PER_STATUS",
    "STORE_TIMEOUT",
    "EvalRunFinishedTrigger",
]

#: In-flight runs looked up at start-up through the list's status filter, per status.
MAX_SEEDED_PER_STATUS = 1000
_MAX_PAGE = 100


class EvalRunFinishedTrigger(BaseEventTrigger):
    """Fire one event per run of ``eval_id`` that reaches a terminal status in ``statuses``. Runs forever.

    Use it in an ``AssetWatcher``; each event becomes an asset event whose ``extra["payload"]`` is
    ``{"eval_id", "run_id", "status", "summary", "report_url"}`` (``summary``: the run summary with counts and
    pass rates, as the sensors return it).

    :param eval_id: the eval whose runs to watch.
    :param conn_id: an ``aoai_evals`` connection.
    :param poll_interval: seconds between polls.
    :param statuses: terminal statuses that fire (others are remembered and skipped).
    :param lookback_seconds: on a start without a stored cursor (first deployment; every restart on Airflow
        3.1/3.2), runs already terminal that were created this recently fire. Set it longer than your runs
        take plus a triggerer's downtime, or a run that started earlier and finished while the triggerer was
        down is missed on 3.1/3.2. ``0`` fires nothing from history.
    :param max_runs_per_poll: most runs one listing reads (pages of up to 100); a larger burst is read over
        the next polls, not skipped.

    All parameters are static: Airflow identifies an event trigger by the hash of its kwargs, so nothing here
    may be computed at DAG-parse time, and none of them is a secret.
    """

    #: Seconds between retries after a permanent error (bad key, missing eval or connection).
    permanent_error_interval: float = 300.0
    #: Seconds after yielding an event before its run is persisted as handled (see the module docstring).
    cursor_commit_delay: float = 10.0
    #: How far the floor trails the newest ``created_at`` seen, so late-listed runs are still found.
    settle_seconds: int = 120
    #: Attempts at reading the stored cursor at start-up before starting without one.
    cursor_read_attempts: int = 3

    def __init__(
        self,
        eval_id: str,
        conn_id: str = EvalsHook.default_conn_name,
        poll_interval: float = 60.0,
        statuses: Sequence[str] = (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELED),
        lookback_seconds: float = 3600,
        max_runs_per_poll: int = 100,
    ) -> None:
        super().__init__()
        self.eval_id = validate_id("eval_id", eval_id)
        self.conn_id = conn_id
        self.poll_interval = float(poll_interval)
        self.statuses = [str(s) for s in statuses]
        self.lookback_seconds = float(lookback_seconds)
        self.max_runs_per_poll = int(max_runs_per_poll)
        if isinstance(statuses, str):
            raise EvalsConfigError("statuses", f"must be a list of statuses, not the string {statuses!r}")
        unknown = sorted(set(self.statuses) - RunStatus.TERMINAL)
        if not self.statuses or unknown:
            raise EvalsConfigError(
                "statuses",
                f"must be a non-empty subset of {sorted(RunStatus.TERMINAL)}; got {self.statuses}",
            )
        if self.poll_interval <= 0:
            raise EvalsConfigError("poll_interval", "must be greater than 0")
        if self.lookback_seconds < 0:
            raise EvalsConfigError("lookback_seconds", "must be 0 or more")
        if self.max_runs_per_poll < 1:
            raise EvalsConfigError("max_runs_per_poll", "must be 1 or more")

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "eval_id": self.eval_id,
                "conn_id": self.conn_id,
                "poll_interval": self.poll_interval,
                "statuses": list(self.statuses),
                "lookback_seconds": self.lookback_seconds,
                "max_runs_per_poll": self.max_runs_per_poll,
            },
        )

    # -- the loop ------------------------------------------------------------------------------------------

    async def run(self) -> AsyncIterator[TriggerEvent]:
        store = CursorStore(getattr(self, "asset_state_store", None), self._store_key, self.eval_id, self.log)
        cursor = await store.load(lookback_seconds=self.lookback_seconds, attempts=self.cursor_read_attempts)
        while True:
            try:
                client = await EvalsHook(self.conn_id).get_async_conn()
            except (EvalsError, AirflowNotFoundException) as exc:
                self._log_permanent(exc)
            else:
                async with client:
                    async for event in self._watch(client, cursor, store):
                        yield event
            # Only a permanent error gets here. Read the connection afresh next time: it may be fixed.
            await asyncio.sleep(self.permanent_error_interval)

    async def _watch(
        self, client: AsyncEvalsClient, cursor: WatchCursor, store: CursorStore
    ) -> AsyncIterator[TriggerEvent]:
        """Poll until a permanent error; yield an event per newly finished run."""
        failures = 0
        while True:
            finished: list[EvalRun] = []
            permanent: Exception | None = None
            try:
                await self._poll(client, cursor, finished)
            except EvalsConfigError as exc:
                permanent = exc
            except EvalsAPIError as exc:
                if not exc.transient:
                    permanent = exc
                else:
                    failures += 1
                    log = self.log.error if failures % 10 == 0 else self.log.warning
                    log(
                        "Polling runs of eval %s failed (%d in a row); still watching, next poll in %.0f s: %s",
                        self.eval_id,
                        failures,
                        self.poll_interval,
                        exc,
                    )
            else:
                failures = 0
            # Runs recorded as handled before a failure part-way through a poll still fire.
            for run in sorted(finished, key=lambda r: (r.created_at or 0, r.id)):
                self.log.info("Eval run %s of eval %s finished: %s", run.id, self.eval_id, run.status)
                yield self._event(run)
                store.fired(run.id)
            await store.commit(cursor, delay=self.cursor_commit_delay)
            if permanent is not None:
                self._log_permanent(permanent)
                return
            await asyncio.sleep(self.poll_interval)

    def _log_permanent(self, exc: Exception) -> None:
        self.log.error(
            "Watching runs of eval %s with connection %r failed permanently: %s. The watcher keeps running "
            "and retries every %.0f s; fix the connection, key or eval id, or remove the watcher.",
            self.eval_id,
            self.conn_id,
            exc,
            self.permanent_error_interval,
        )

    def _event(self, run: EvalRun) -> TriggerEvent:
        return TriggerEvent(
            {
                "eval_id": self.eval_id,
                "run_id": run.id,
                "status": run.status,
                "summary": summarize(run).to_xcom(),
                "report_url": run.report_url,
            }
        )

    # -- one poll ------------------------------------------------------------------------------------------

    async def _poll(self, client: AsyncEvalsClient, cursor: WatchCursor, finished: list[EvalRun]) -> None:
        """Bring the cursor up to date, appending each run that became terminal to ``finished``.

        Every step leaves the cursor consistent with ``finished``, so an error part-way loses nothing.
        """
        if not cursor.seeded:
            await self._seed(client, cursor)
        seen: set[str] = set()
        newest = await self._scan_top(client, cursor, finished, seen)
        if cursor.gap is not None:
            await self._scan_gap(client, cursor, finished, seen)
        if newest is not None:
            cursor.floor = max(cursor.floor, newest - self.settle_seconds)
        await self._check_pending(client, cursor, finished, seen)
        cursor.prune()

    async def _seed(self, client: AsyncEvalsClient, cursor: WatchCursor) -> None:
        """Track the runs in flight now, whatever their age: they finish after we started watching."""
        for status in (RunStatus.QUEUED, RunStatus.IN_PROGRESS):
            count = 0
            try:
                async for run in client.list_runs(self.eval_id, order="desc", status=status, limit=_MAX_PAGE):
                    if run.id not in cursor.handled:
                        cursor.pending.setdefault(run.id, created_at(run, cursor.floor))
                    count += 1
                    if count >= MAX_SEEDED_PER_STATUS:
                        self.log.warning(
                            "Eval %s has more than %d %s runs; only the newest are tracked from the start",
                            self.eval_id,
                            count,
                            status,
                        )
                        break
            except EvalsBadRequestError as exc:
                # A service without the list's status filter: runs in flight that were created before
                # lookback_seconds are then not followed. Say so, and watch the rest.
                self.log.warning(
                    "Cannot list %s runs of eval %s (%s); only runs created in the last %.0f s are followed",
                    status,
                    self.eval_id,
                    exc,
                    self.lookback_seconds,
                )
        cursor.seeded = True
        self.log.info(
            "Watching eval %s for runs finishing as %s; %d in flight",
            self.eval_id,
            "/".join(self.statuses),
            len(cursor.pending),
        )

    async def _scan_top(
        self, client: AsyncEvalsClient, cursor: WatchCursor, finished: list[EvalRun], seen: set[str]
    ) -> int | None:
        """List newest first down to the floor, at most ``max_runs_per_poll`` runs; open a gap if cut short.
        Return the newest ``created_at`` seen (server time), or None."""
        newest: int | None = None
        last: EvalRun | None = None
        count = 0
        cut_short = unknown = False
        page = min(self.max_runs_per_poll, _MAX_PAGE)
        async for run in client.list_runs(self.eval_id, order="desc", limit=page):
            if run.created_at is not None and run.created_at < cursor.floor:
                break
            if count >= self.max_runs_per_poll:
                cut_short = True
                break
            count += 1
            if run.created_at is not None:
                newest = run.created_at if newest is None else max(newest, run.created_at)
            unknown = run.id not in cursor.handled and run.id not in cursor.pending
            self._observe(run, cursor, finished, seen)
            last = run
        # New runs are the newest, so once a known run is read, everything below it was read before or is
        # in the open gap. Only a cut among new runs (a burst) leaves unread runs: resume there next time
        # (an open gap is folded in, re-reading what lies between; repeated bursts slow its progress).
        if cut_short and unknown and last is not None:
            lower = cursor.floor if cursor.gap is None else min(cursor.floor, cursor.gap[1])
            cursor.gap = (last.id, lower)
            self.log.warning(
                "More than %d runs of eval %s to read in one poll; the rest are read over the next polls "
                "(raise max_runs_per_poll or poll more often if this repeats)",
                self.max_runs_per_poll,
                self.eval_id,
            )
        return newest

    async def _scan_gap(
        self, client: AsyncEvalsClient, cursor: WatchCursor, finished: list[EvalRun], seen: set[str]
    ) -> None:
        """Continue a listing that an earlier poll cut short, from where it stopped down to its floor."""
        assert cursor.gap is not None
        after, lower = cursor.gap
        count = 0
        page = min(self.max_runs_per_poll, _MAX_PAGE)
        try:
            async for run in client.list_runs(self.eval_id, order="desc", limit=page, after=after):
                if (run.created_at is not None and run.created_at < lower) or count >= self.max_runs_per_poll:
                    break
                count += 1
                self._observe(run, cursor, finished, seen)
                cursor.gap = (run.id, lower)  # progress survives an error on the next page
            else:
                cursor.gap = None  # the list ended
                return
            if count < self.max_runs_per_poll:
                cursor.gap = None  # reached the gap's floor
        except EvalsBadRequestError as exc:
            # The run the gap resumes after was deleted. Widen the next top listing to the gap's floor
            # instead: it re-reads runs already handled (skipped) and opens a new gap if it has to.
            self.log.warning(
                "Resuming the listing of eval %s failed (%s); re-reading from the top", self.eval_id, exc
            )
            cursor.floor = min(cursor.floor, lower)
            cursor.gap = None

    async def _check_pending(
        self, client: AsyncEvalsClient, cursor: WatchCursor, finished: list[EvalRun], seen: set[str]
    ) -> None:
        """Fetch tracked in-flight runs that no listing reached this poll (newer runs pushed them down)."""
        due = [run_id for run_id in cursor.pending if run_id not in seen][: self.max_runs_per_poll]
        for run_id in due:
            try:
                run = await client.get_run(self.eval_id, run_id)
            except EvalsNotFoundError:
                self.log.warning(
                    "Eval run %s of eval %s was deleted before it finished", run_id, self.eval_id
                )
                cursor.pending.pop(run_id, None)
                continue
            # Round-robin: a run checked now goes to the back, so a long queue is read over several polls.
            created = cursor.pending.pop(run_id)
            cursor.pending[run_id] = created
            self._observe(run, cursor, finished, seen)

    def _observe(self, run: EvalRun, cursor: WatchCursor, finished: list[EvalRun], seen: set[str]) -> None:
        seen.add(run.id)
        if run.id in cursor.handled:
            return
        if run.is_terminal:
            created = cursor.pending.pop(run.id, None)
            cursor.handled[run.id] = created_at(run, created if created is not None else cursor.floor)
            if run.status in self.statuses:
                finished.append(run)
        else:
            cursor.pending.setdefault(run.id, created_at(run, cursor.floor))

    @property
    def _store_key(self) -> str:
        # Several watchers may share one asset; the key keeps their cursors apart.
        statuses = ",".join(sorted(self.statuses))
        return f"aoai_evals.eval_run_finished/{self.conn_id}/{self.eval_id}/{statuses}"

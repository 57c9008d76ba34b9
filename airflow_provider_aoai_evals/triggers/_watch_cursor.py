"""The asset watcher's cursor: what ``EvalRunFinishedTrigger`` has decided, and how it is kept.

On Airflow 3.3+ the triggerer gives an event trigger an ``asset_state_store``; the cursor is kept there, so a
restart repeats nothing and misses nothing. The triggerer persists yielded events asynchronously, so the
cursor must never be ahead of them: a run is written there as handled only a delay after its event was
yielded, and a crash in that window repeats the event instead of losing it. The store is an optimisation:
when it fails or is missing, the watch goes on with the cursor in memory and says what a restart may repeat.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from structlog.typing import FilteringBoundLogger

from airflow_provider_aoai_evals.api.models import EvalRun

CURSOR_VERSION = 1
#: Terminal runs remembered as handled. About 50 bytes each in the state store, whose values Airflow 3.3
#: warns about above 64 KB by default. Only a burst of more runs than this within ``settle_seconds``
#: evicts an entry that still matters, and then the floor is raised past it (a repeat is avoided; see
#: ``WatchCursor.prune``).
MAX_HANDLED = 500
#: Seconds a state-store read or write may take before it is given up (the watch must not hang on it).
STORE_TIMEOUT = 30.0


@dataclass
class WatchCursor:
    """What the watcher has decided so far. JSON-ready; persisted in the asset state store on Airflow 3.3+."""

    floor: int
    handled: dict[str, int] = field(default_factory=dict)  # run id -> created_at
    pending: dict[str, int] = field(default_factory=dict)  # run id -> created_at
    gap: tuple[str, int] | None = None  # (list desc after this run id, down to this created_at)
    seeded: bool = False  # in-flight runs have been looked up (done once, on a start without a cursor)

    def snapshot(self, unacked: set[str]) -> dict[str, Any]:
        """The cursor as it may be persisted: runs whose events are not yet surely stored by the triggerer
        are written as *pending*, so a restart fires them again rather than never."""
        handled = {k: v for k, v in self.handled.items() if k not in unacked}
        pending = dict(self.pending)
        pending.update({k: v for k, v in self.handled.items() if k in unacked})
        return {
            "v": CURSOR_VERSION,
            "floor": self.floor,
            "handled": handled,
            "pending": pending,
            "gap": list(self.gap) if self.gap else None,
            "seeded": self.seeded,
        }

    @classmethod
    def from_json(cls, value: Any) -> WatchCursor | None:
        """The cursor from a stored value, or None if it is not one this version wrote."""
        if not isinstance(value, dict) or value.get("v") != CURSOR_VERSION:
            return None
        try:
            gap = value.get("gap")
            return cls(
                floor=int(value["floor"]),
                handled={str(k): int(v) for k, v in value["handled"].items()},
                pending={str(k): int(v) for k, v in value["pending"].items()},
                gap=(str(gap[0]), int(gap[1])) if gap else None,
                seeded=bool(value.get("seeded", True)),
            )
        except (KeyError, TypeError, ValueError, AttributeError, IndexError):
            return None

    def retention_floor(self) -> int:
        return min(self.floor, self.gap[1]) if self.gap else self.floor

    def prune(self) -> None:
        """Forget handled runs that no scan can reach any more; cap the rest (raising the floor past what is
        evicted, so an evicted run is not fired again)."""
        keep_from = self.retention_floor()
        self.handled = {k: v for k, v in self.handled.items() if v >= keep_from}
        if len(self.handled) > MAX_HANDLED:
            ordered = sorted(self.handled.items(), key=lambda kv: (kv[1], kv[0]))
            evicted = ordered[: len(ordered) - MAX_HANDLED]
            self.handled = dict(ordered[len(ordered) - MAX_HANDLED :])
            self.floor = max(self.floor, evicted[-1][1] + 1)


_T = TypeVar("_T")


async def _within_store_timeout(call: Awaitable[_T]) -> _T:
    """``call``, given up after ``STORE_TIMEOUT`` seconds.

    Not ``asyncio.wait_for``: before Python 3.12, when the task is cancelled just as the call finishes, it
    returns the call's result (or raises its error, which the caller logs and drops) instead of the
    cancellation, and a watcher that lost its cancellation keeps polling after the triggerer let it go.
    """
    task = asyncio.ensure_future(call)
    try:
        done, _ = await asyncio.wait({task}, timeout=STORE_TIMEOUT)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not done:
        task.cancel()
        raise asyncio.TimeoutError
    return task.result()


def created_at(run: EvalRun, default: int) -> int:
    return run.created_at if run.created_at is not None else default


class CursorStore:
    """One watcher's cursor in the asset state store: read at start-up, written after each poll.

    :param store: the trigger's ``asset_state_store``, or None (Airflow < 3.3, or a watcher without one).
    :param key: where the cursor is kept; several watchers may share one asset.
    :param eval_id: the eval watched, for the log.
    :param log: the trigger's logger.
    """

    def __init__(self, store: Any, key: str, eval_id: str, log: FilteringBoundLogger) -> None:
        self._store = store
        self.key = key
        self.eval_id = eval_id
        self.log = log
        self._unacked: dict[str, float] = {}  # run id -> monotonic time its event was yielded
        self._last_committed: dict[str, Any] | None = None
        self._warned = False

    def fired(self, run_id: str) -> None:
        """The event of ``run_id`` was yielded just now; it stays pending in the store for a while."""
        self._unacked[run_id] = time.monotonic()

    async def load(self, *, lookback_seconds: float, attempts: int) -> WatchCursor:
        """The stored cursor, or a new one starting ``lookback_seconds`` ago."""
        if self._store is None:
            self.log.info(
                "No asset state store (Airflow < 3.3): watching eval %s from runs created in the last %.0f s; "
                "a triggerer restart may repeat events",
                self.eval_id,
                lookback_seconds,
            )
        else:
            for attempt in range(attempts):
                try:
                    stored = await _within_store_timeout(self._store.aget(self.key, None))
                except Exception as exc:  # noqa: BLE001 - the store is an optimisation: never fatal
                    self._failed("read", exc)
                    if self._store is None or attempt + 1 == attempts:
                        break
                    await asyncio.sleep(min(0.5 * 2.0**attempt, 5.0))
                    continue
                cursor = WatchCursor.from_json(stored)
                if cursor is not None:
                    self._last_committed = cursor.snapshot(set())
                    self.log.info(
                        "Resuming the watch of eval %s from the stored cursor (%d tracked in flight)",
                        self.eval_id,
                        len(cursor.pending),
                    )
                    return cursor
                if stored is not None:
                    self.log.warning("Ignoring a stored cursor this version cannot read: %.200r", stored)
                break
        return WatchCursor(floor=int(time.time() - lookback_seconds))

    async def commit(self, cursor: WatchCursor, *, delay: float) -> None:
        """Persist the cursor if it changed; runs fired less than ``delay`` seconds ago stay pending."""
        now = time.monotonic()
        self._unacked = {k: t for k, t in self._unacked.items() if now - t < delay}
        if self._store is None:
            return
        snapshot = cursor.snapshot(set(self._unacked))
        if snapshot == self._last_committed:
            return
        try:
            await _within_store_timeout(self._store.aset(self.key, snapshot))
        except Exception as exc:  # noqa: BLE001 - the store is an optimisation: never fatal
            self._failed("write", exc)
        else:
            self._last_committed = snapshot

    def _failed(self, action: str, exc: Exception) -> None:
        if isinstance(exc, ValueError):
            # AssetStateStoreAccessors of a watcher with several assets raises ValueError: there is no
            # single place for the cursor, and asking again will not change that.
            self._store = None
            self.log.warning(
                "The asset state store cannot hold the cursor of eval %s (a watcher with several assets?); "
                "it is kept in memory only, so a triggerer restart may repeat events: %s",
                self.eval_id,
                exc,
            )
            return
        if not self._warned:
            self._warned = True
            self.log.warning(
                "Could not %s the cursor in the asset state store (a restart may repeat events): %r",
                action,
                exc,
            )

"""Connection reads shared by the waits that start close together in one triggerer process.

Why: reading a connection in the triggerer goes through Airflow's secrets backends, secret masking and
a thread hop, and leaves short-lived objects behind. With thousands of waits starting in one event loop
that is most of a wait's set-up cost and the main source of the full garbage collections that lag the
loop (figures in docs/benchmarks.md, "Trigger waits"). A wait keeps the settings it read for its whole life anyway, so
reusing a read made at most ``trigger_connection_reuse_seconds`` earlier only makes a new wait behave as
if it had started that much earlier.

Two guards keep an edit from being hidden behind a reused read:
- a connection defined by an ``AIRFLOW_CONN_<ID>`` environment variable is read again when the variable
  changes (cheap to check, and how tests and containers define connections);
- a wait that polls with reused settings reads the connection again once when a poll fails
  (``reread``), and switches to the new settings when they differ (``EvalRunTrigger``).

Concurrent reads of one connection in one loop share a single read, so a triggerer restart that starts
every wait at once reads each connection once. Failed reads are never kept.
"""

from __future__ import annotations

import asyncio
import os
import time

from airflow.providers.common.compat.sdk import conf

from airflow_provider_aoai_evals.api import shared_state
from airflow_provider_aoai_evals.api.defaults import (
    DEFAULT_TRIGGER_CONNECTION_REUSE_SECONDS,
    TRIGGER_CONNECTION_REUSE_OPTION,
)
from airflow_provider_aoai_evals.api.errors import EvalsConfigError
from airflow_provider_aoai_evals.api.settings import ClientSettings
from airflow_provider_aoai_evals.hooks.evals import EvalsHook


class _Read:
    __slots__ = ("env", "expires", "settings")

    def __init__(self, settings: ClientSettings, expires: float, env: str | None) -> None:
        self.settings = settings
        self.expires = expires
        self.env = env


class _Pending:
    __slots__ = ("env", "loop", "task")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[ClientSettings], env: str | None
    ) -> None:
        self.loop = loop
        self.task = task
        self.env = env


_reads: dict[str, _Read] = shared_state.CONNECTION_READS
_pending: dict[str, _Pending] = shared_state.PENDING_READS


def reuse_seconds() -> float:
    """The configured reuse window; read once per connection read, not per wait."""
    section, key = TRIGGER_CONNECTION_REUSE_OPTION
    raw = conf.get(section, key, fallback=None)
    if raw is None or str(raw).strip() == "":
        return DEFAULT_TRIGGER_CONNECTION_REUSE_SECONDS
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:  # also rejects nan
        raise EvalsConfigError(
            f"[{section}] {key}", f"must be a number of seconds >= 0 (0 turns reuse off), got {raw!r}"
        )
    return seconds


def _env_value(conn_id: str) -> str | None:
    return os.environ.get(f"AIRFLOW_CONN_{conn_id.upper()}")


async def settings_for_wait(conn_id: str) -> tuple[ClientSettings, bool]:
    """The connection's settings for a new wait, and whether they come from an earlier read."""
    env = _env_value(conn_id)
    read = _reads.get(conn_id)
    if read is not None and read.env == env and read.expires > time.monotonic():
        return read.settings, True
    loop = asyncio.get_running_loop()
    pending = _pending.get(conn_id)
    if pending is None or pending.loop is not loop or pending.env != env or pending.task.done():
        task = loop.create_task(_read(conn_id, env))
        pending = _pending[conn_id] = _Pending(loop, task, env)
        task.add_done_callback(lambda done: _drop_pending(conn_id, done))
    # Shielded: a wait cancelled while the read runs must not cancel it for the others sharing it.
    return await asyncio.shield(pending.task), False


def _drop_pending(conn_id: str, task: asyncio.Task[ClientSettings]) -> None:
    pending = _pending.get(conn_id)
    if pending is not None and pending.task is task:
        del _pending[conn_id]
    if not task.cancelled():
        task.exception()  # retrieved: a failed read is reported to its waiters, not as "never retrieved"


async def _read(conn_id: str, env: str | None) -> ClientSettings:
    settings = await EvalsHook(conn_id).aget_settings()
    seconds = reuse_seconds()
    if seconds > 0:
        _reads[conn_id] = _Read(settings, time.monotonic() + seconds, env)
    else:
        _reads.pop(conn_id, None)
    return settings


async def reread(conn_id: str, used: ClientSettings) -> ClientSettings:
    """Read the connection again after ``used`` (reused settings) failed a poll.

    Drops the reused read unless another wait has already replaced it, so many waits failing together
    still read the connection once.
    """
    read = _reads.get(conn_id)
    if read is not None and read.settings is used:
        del _reads[conn_id]
    settings, _ = await settings_for_wait(conn_id)
    return settings


def forget(conn_id: str | None = None) -> None:
    """Drop kept reads (all, or one connection's), e.g. between tests that redefine a connection."""
    if conn_id is None:
        _reads.clear()
    else:
        _reads.pop(conn_id, None)

"""Everything this package keeps from one call to the next, in one place, with one reset for tests.

A triggerer runs thousands of waits in one event loop, so they share what they can:
- per event loop: one aiohttp session (connection pool) per endpoint, one ``AsyncEvalsClient`` per
  connection's settings (see ``AsyncEvalsClient.shared``), and one throttle gate per endpoint and
  credential (``throttle_gate``), so a throttled endpoint gets one stream of retries, not one per wait;
- per process: one Entra ID credential per identity, whose token cache every client of that identity uses
  (``hooks.connection_settings``), and the triggerer's recent connection reads, which waits that start
  together share (``hooks.settings_reuse``).

Nothing else in the package holds state at module level. The per-loop registry is weak on the loop, so a
closed and dropped loop takes its sessions and clients with it.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from typing import Any

from airflow_provider_aoai_evals.api.throttle_gate import GateRegistry


class LoopState:
    """What the waits of one event loop share."""

    __slots__ = ("__weakref__", "clients", "gates", "sessions")

    def __init__(self) -> None:
        #: pool key (``ClientSettings.pool_key()``) -> ``async_client.SharedSession``
        self.sessions: dict[tuple[object, ...], Any] = {}
        #: ``ClientSettings`` -> the ``AsyncEvalsClient`` every user of those settings shares
        self.clients: dict[Any, Any] = {}
        #: ``throttle_gate.endpoint_key`` -> that endpoint's gate. Benchmarks and tests may replace it with
        #: ``GateRegistry(enabled=False)`` to measure the same waits without gates; the provider never does.
        self.gates = GateRegistry()


_LOOPS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopState] = weakref.WeakKeyDictionary()

#: Entra ID credentials by identity (tenant, client, scope...), guarded by ``ENTRA_LOCK``.
ENTRA_AUTH: dict[tuple[str, ...], Any] = {}
ENTRA_LOCK = threading.Lock()

#: The triggerer's recent connection reads by connection id, and the reads under way.
CONNECTION_READS: dict[str, Any] = {}
PENDING_READS: dict[str, Any] = {}


def for_loop(loop: asyncio.AbstractEventLoop | None = None) -> LoopState:
    """The shared state of ``loop`` (default: the running loop), made on first use."""
    loop = loop or asyncio.get_running_loop()
    state = _LOOPS.get(loop)
    if state is None:
        state = _LOOPS[loop] = LoopState()
    return state


def peek_loop(loop: asyncio.AbstractEventLoop) -> LoopState | None:
    """The shared state of ``loop`` if it has any, without making it."""
    return _LOOPS.get(loop)


def reset() -> None:
    """Forget everything shared, as in a new process: for tests that must not see an earlier test's
    sessions, clients, throttle gates, credentials or connection reads. Sessions are not closed here (that
    needs their loop); a client still in use keeps its session and gate until it is left, then closes that
    session itself."""
    _LOOPS.clear()
    with ENTRA_LOCK:
        ENTRA_AUTH.clear()
    CONNECTION_READS.clear()
    PENDING_READS.clear()

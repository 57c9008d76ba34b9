"""Everything this package keeps from one call to the next, in one place, with one reset for tests.

A triggerer runs thousands of waits in one event loop, so they share what they can:
- per event loop: one aiohttp session (connection pool) per endpoint, and one ``AsyncEvalsClient`` per
  connection's settings (see ``AsyncEvalsClient.shared``);
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


class LoopState:
    """What the waits of one event loop share."""

    __slots__ = ("__weakref__", "clients", "sessions")

    def __init__(self) -> None:
        #: pool key (``ClientSettings.pool_key()``) -> ``async_client.SharedSession``
        self.sessions: dict[tuple[object, ...], Any] = {}
        #: ``ClientSettings`` -> the ``AsyncEvalsClient`` every user of those settings shares
        self.clients: dict[Any, Any] = {}


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
    sessions, clients, credentials or connection reads. Sessions are not closed here (that needs their
    loop); a client still in use closes its own session when it is left."""
    _LOOPS.clear()
    with ENTRA_LOCK:
        ENTRA_AUTH.clear()
    CONNECTION_READS.clear()
    PENDING_READS.clear()

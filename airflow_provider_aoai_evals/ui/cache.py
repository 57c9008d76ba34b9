"""A small, bounded, thread-safe cache with a time to live, for API answers the pages show.

The api-server serves requests from several threads; the same eval's 10 list requests would otherwise be
sent again for every page view. Entries are keyed by connection id first, and a route checks the user's
access to the connection *before* it asks the cache, so a cached answer is never a way around
permissions. Bounded by entry count (least recently used goes first), so a long-running api-server does
not grow with the number of evals people look at.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")


class TTLCache:
    def __init__(self, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def get_or_load(self, key: Hashable, ttl: float, load: Callable[[], T]) -> T:
        """The value cached under ``key`` if younger than ``ttl`` seconds, else ``load()`` (then cached).

        A failing ``load`` caches nothing, so the next view asks the API again. ``ttl`` 0 turns caching off.
        """
        now = self._clock()
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None and now - hit[0] < ttl:
                self._entries.move_to_end(key)
                value: T = hit[1]
                return value
        value = load()  # outside the lock: a slow API must not stall views of other evals
        if ttl > 0:
            with self._lock:
                self._entries[key] = (self._clock(), value)
                self._entries.move_to_end(key)
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

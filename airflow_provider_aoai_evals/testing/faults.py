"""Scripted faults: what goes wrong, for which requests, and how many times.

Faults model the failures a production client meets between it and the service (throttling, proxies,
dropped connections, half-written bodies), so they are matched on method and path only and consumed in
the order they were injected. A fault with ``seconds`` is a time window instead (an endpoint throttled for
30 s, then recovered): it answers every matching request in the window, however many, and its ``hits``
then say how many requests a client sent while it was throttled.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any

FAULT_KINDS = frozenset(
    {"status", "slow", "drop_before", "drop_after", "html", "malformed", "unknown_status"}
)


@dataclass
class Fault:
    """One injected fault.

    ``count`` is how many matching requests it applies to (``None``: every one until cleared).
    ``path_regex`` is searched in the path after the API root (``/evals/eval_x/runs``), so the same fault
    works for both flavors. ``status`` is used by kind ``status`` (and ``html``, default 502);
    ``delay`` by ``slow``; ``run_status`` by ``unknown_status``.

    ``seconds`` makes it a window: it applies to every matching request for that many seconds after it
    is injected (``count`` is then ignored), and afterwards stays listed, matching nothing, with its
    ``hits``, until the faults are cleared.
    """

    kind: str = "status"
    method: str | None = None
    path_regex: str | None = None
    count: int | None = 1
    status: int | None = None
    retry_after: float | None = None
    retry_after_ms: int | None = None
    delay: float = 1.0
    run_status: str = "paused"
    message: str | None = None
    code: str | None = None
    seconds: float | None = None
    hits: int = field(default=0, compare=False)
    #: When it was injected (epoch seconds; set by ``FaultQueue.add``): the start of a window.
    started_at: float | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"Unknown fault kind {self.kind!r}; expected one of {sorted(FAULT_KINDS)}")
        if self.kind == "status" and self.status is None:
            self.status = 500
        if self.kind == "html" and self.status is None:
            self.status = 502
        if self.path_regex is not None:
            re.compile(self.path_regex)  # fail at injection time, not on the request that trips it
        if self.seconds is not None and not self.seconds > 0:
            raise ValueError(f"Fault seconds must be positive, got {self.seconds!r}")

    @property
    def window_over(self) -> bool:
        """A window fault whose window has passed (it then matches nothing)."""
        if self.seconds is None or self.started_at is None:
            return False
        return time.time() >= self.started_at + self.seconds

    def matches(self, method: str, api_path: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path_regex is None or re.search(self.path_regex, api_path) is not None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fault:
        """Build from JSON; unknown keys are an error so a typo does not inject a catch-all fault."""
        known = {f.name for f in fields(cls)} - {"hits", "started_at"}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"Unknown Fault field(s): {sorted(unknown)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class FaultQueue:
    """Thread-safe list of pending faults; the first injected match wins and is consumed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            fault.started_at = time.time()
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def take(self, method: str, api_path: str) -> Fault | None:
        if not self._faults:  # fast path: no lock on the hot path of a benchmark without faults
            return None
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, api_path):
                    if fault.seconds is not None:
                        if fault.window_over:
                            continue  # kept for its hits
                        fault.hits += 1
                        return fault
                    fault.hits += 1
                    if fault.count is not None and fault.hits >= fault.count:
                        self._faults.remove(fault)
                    return fault
        return None

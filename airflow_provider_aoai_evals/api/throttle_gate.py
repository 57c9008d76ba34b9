"""One gate per endpoint and event loop that holds requests while the endpoint is throttled.

A triggerer polls thousands of runs through one endpoint. When that endpoint answers 429 with a
``Retry-After`` (or ``retry-after-ms``), or 503, every wait used to retry on its own schedule, so one
throttled endpoint got one retry stream per wait. The gate turns them into one: the answer closes it for
the cool-down the server asked for, every request of that endpoint waits at it (never past its own
deadline), and when the cool-down ends one request probes. The probe's answer opens the gate for all, or
closes it again.

``GateState`` is the policy, sans-IO: it reads no clock and never awaits, so its rules are tested on plain
numbers. ``ThrottleGate`` is the thin async part: a FIFO of waiting futures, one timer for the end of the
cool-down, one timer per waiter for its deadline. ``async_client`` asks it before and tells it after each
attempt; an open gate costs the hot path one attribute read.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import time
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from airflow_provider_aoai_evals.api.errors import EvalsAPIError, EvalsRateLimitError, EvalsServerError
from airflow_provider_aoai_evals.api.retry import RetryPolicy, parse_retry_after

if TYPE_CHECKING:
    from airflow_provider_aoai_evals.api.settings import ClientSettings

log = logging.getLogger(__name__)

#: Answers that may close the gate (a 429 only with a hint of how long; see ``cool_down``).
THROTTLE_STATUSES = frozenset({429, 503})
#: Expired waiters tolerated in the queue before it is compacted (they are skipped, not searched for).
_COMPACT_AFTER = 32


class Admission(enum.Enum):
    """What a request may do now."""

    #: The gate is open: send.
    SEND = "send"
    #: The cool-down is over and nobody probes: send, as the one request whose answer decides.
    PROBE = "probe"
    #: Wait (the gate is closed, or another request is probing).
    WAIT = "wait"
    #: The request's deadline came before the gate let it through: it was not sent.
    EXPIRED = "expired"


def cool_down(status: int, headers: Mapping[str, str], policy: RetryPolicy) -> tuple[float, str] | None:
    """How long an answer closes the gate, and why (for the log line); None when it does not.

    A 429 closes it only when it says for how long: a 429 without a hint is left to each call's own
    backoff, since it may be a quota that no waiting fixes. A 503 closes it with or without one. A hint is
    clamped like the retry policy clamps it (``min_retry_after``..``max_retry_after``), so the gate never
    holds a call longer than the policy would wait; ``Retry-After: 0`` and a 503 without a hint get the
    policy's first backoff (``initial_delay`` with its jitter, 0.375-0.5 s by default), the same pause a
    call would take before its own second try.
    """
    if status not in THROTTLE_STATUSES:
        return None
    hint = parse_retry_after(headers)
    if hint is None and status == 429:
        return None
    if hint is not None and math.isfinite(hint) and hint > 0:
        seconds = min(max(hint, policy.min_retry_after), policy.max_retry_after)
        lowered = {k.lower() for k in headers}
        said = "retry-after-ms" if "retry-after-ms" in lowered else "Retry-After"
        capped = f", capped at max_retry_after {policy.max_retry_after:g} s" if hint > seconds else ""
        return seconds, f"HTTP {status} with {said} {hint:g} s{capped}"
    return policy.backoff(0), f"HTTP {status} without a usable Retry-After: the retry policy's first backoff"


class GateState:
    """The gate's rules and the little it remembers. Times are seconds on one monotonic clock.

    Open, closed until ``until``, or half-open (cool-down over, closed until a probe answers). A later
    throttled answer moves ``until`` later, never earlier. Only the probe's answer opens the gate: an
    answer to a request sent before the gate closed says nothing about now.
    """

    __slots__ = ("closings", "is_open", "probing", "status", "until")

    def __init__(self) -> None:
        self.is_open = True
        #: When the cool-down ends (meaningful while closed).
        self.until = 0.0
        #: A probe is out: nobody else may go until it is answered or lost.
        self.probing = False
        #: The status of the answer that closed the gate last (for the error of a wait that expires).
        self.status = 0
        #: How many times the gate closed: one log line each.
        self.closings = 0

    def admit(self, now: float) -> Admission:
        """SEND when open; PROBE once the cool-down is over and no probe is out (the caller must then
        report the probe's outcome); WAIT otherwise."""
        if self.is_open:
            return Admission.SEND
        if self.probing or now < self.until:
            return Admission.WAIT
        self.probing = True
        return Admission.PROBE

    def throttled(self, now: float, seconds: float, status: int, *, probe: bool) -> bool:
        """An answer asked for ``seconds`` of quiet. True when this is a new closing (the gate was open,
        or this was the probe): the one time it is logged. Otherwise it only extends the cool-down."""
        new = self.is_open or probe
        if probe:
            self.probing = False
        if new:
            self.closings += 1
        self.is_open = False
        end = now + seconds
        if new or end > self.until:
            self.status = status
        self.until = max(self.until, end)
        return new

    def answered(self, *, probe: bool) -> bool:
        """An answer that is not a throttle. True when it opens the gate (it was the probe's)."""
        if not probe or self.is_open:
            return False
        self.probing = False
        self.is_open = True
        self.until = 0.0  # the cool-down is over: the next closing starts its own
        return True

    def probe_lost(self) -> None:
        """The probe got no answer (a network failure, its task cancelled): the next waiter probes."""
        self.probing = False

    def wake_at(self) -> float | None:
        """When a waiter should be handed the probe, or None while open or while a probe is out."""
        if self.is_open or self.probing:
            return None
        return self.until


class ThrottleGate:
    """The async side of one endpoint's gate in one event loop: who waits, who probes, who is woken.

    Waiters are served first come, first served: the oldest waiter probes, and a request arriving while
    others wait queues behind them. When the probe's answer opens the gate, every waiter goes.
    """

    __slots__ = ("_dead", "_timer", "_waiters", "enabled", "endpoint", "state")

    def __init__(self, endpoint: str, *, enabled: bool = True) -> None:
        #: The API root without credentials or query, for the log line.
        self.endpoint = endpoint
        self.enabled = enabled
        self.state = GateState()
        self._waiters: deque[asyncio.Future[Admission]] = deque()
        self._dead = 0
        self._timer: asyncio.TimerHandle | None = None

    @property
    def waiting(self) -> int:
        """Requests waiting at the gate now (for tests)."""
        return sum(1 for fut in self._waiters if not fut.done())

    async def enter(self, deadline: float | None, policy: RetryPolicy, method: str, path: str) -> bool:
        """Wait until this request may be sent; True when it goes as the probe (then report its outcome
        with ``observe`` or ``lost``). ``deadline`` is epoch seconds; without one the wait is bounded by
        the policy's ``max_retry_after``. Raises the throttle's transient error, marked as not sent, when
        the bound comes first."""
        loop = asyncio.get_running_loop()
        if not self._has_waiters():
            admission = self.state.admit(loop.time())
            if admission is not Admission.WAIT:
                return admission is Admission.PROBE
        left = policy.max_retry_after if deadline is None else deadline - time.time()
        fut: asyncio.Future[Admission] = loop.create_future()
        self._waiters.append(fut)
        self._schedule(loop)
        expiry = loop.call_later(max(left, 0.0), _expire, fut)
        try:
            admission = await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.result() is Admission.PROBE:
                self.lost()  # handed the probe, then cancelled before it could go: pass it on
            else:
                self._forget_one()
            raise
        finally:
            expiry.cancel()
        if admission is Admission.EXPIRED:
            self._forget_one()
            raise self._not_sent(method, path)
        return admission is Admission.PROBE

    def observe(self, status: int, headers: Mapping[str, str], policy: RetryPolicy, *, probe: bool) -> None:
        """An attempt was answered: close or extend on a throttle, open on the probe's other answers."""
        if not self.enabled:
            return
        loop = asyncio.get_running_loop()
        closing = cool_down(status, headers, policy)
        if closing is None:
            if self.state.answered(probe=probe):
                log.info("Evals endpoint %s answers again: its requests go on", self.endpoint)
                self._release_all()
            return
        seconds, why = closing
        if self.state.throttled(loop.time(), seconds, status, probe=probe):
            log.warning(
                "Evals endpoint %s is throttled (%s): its requests in this event loop wait %.2f s, then one "
                "request probes before the others go",
                self.endpoint,
                why,
                seconds,
            )
        self._schedule(loop)

    def lost(self) -> None:
        """The probe ended without an answer: the next waiter takes its place once the cool-down is over."""
        self.state.probe_lost()
        self._schedule(asyncio.get_running_loop())

    # -- waking ------------------------------------------------------------------------------------------

    def _has_waiters(self) -> bool:
        waiters = self._waiters
        while waiters and waiters[0].done():
            waiters.popleft()
            self._dead = max(0, self._dead - 1)
        return bool(waiters)

    def _forget_one(self) -> None:
        """A waiter left (expired or cancelled); its future stays queued, skipped, until compacted."""
        self._dead += 1
        if self._dead > _COMPACT_AFTER and 2 * self._dead > len(self._waiters):
            self._waiters = deque(fut for fut in self._waiters if not fut.done())
            self._dead = 0

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        """One timer at the end of the cool-down, while someone waits and no probe is out."""
        at = self.state.wake_at()
        if at is None or not self._has_waiters():
            return
        if self._timer is not None:
            if self._timer.when() == at:
                return
            self._timer.cancel()
        self._timer = loop.call_at(at, self._wake, loop)

    def _wake(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        if not self._has_waiters():
            return
        admission = self.state.admit(loop.time())
        if admission is Admission.PROBE:
            self._waiters.popleft().set_result(Admission.PROBE)
        elif admission is Admission.SEND:
            self._release_all()
        else:
            self._schedule(loop)  # extended meanwhile

    def _release_all(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        waiters, self._waiters, self._dead = self._waiters, deque(), 0
        for fut in waiters:
            if not fut.done():
                fut.set_result(Admission.SEND)

    def _not_sent(self, method: str, path: str) -> EvalsAPIError:
        status = self.state.status
        error_class: type[EvalsAPIError] = EvalsRateLimitError if status == 429 else EvalsServerError
        return error_class(
            f"not sent: the endpoint answered HTTP {status} and its requests are held until it answers "
            "again; this call's deadline came first",
            status_code=status,
            method=method,
            path=path,
        )


def _expire(fut: asyncio.Future[Admission]) -> None:
    if not fut.done():
        fut.set_result(Admission.EXPIRED)


def endpoint_key(settings: ClientSettings) -> tuple[object, ...]:
    """What one gate stands for: the API root and the identity whose limits the server counts (the
    credential, and OpenAI's organization and project). Two keys on one root have their own limits."""
    return (settings.api_root, settings.auth, settings.organization, settings.project)


def endpoint_label(api_root: str) -> str:
    """The API root as logged: scheme, host, port and path; no user info, query or fragment."""
    parts = urlsplit(api_root)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class GateRegistry:
    """The gates of one event loop (``shared_state.LoopState.gates``), one per ``endpoint_key``.

    ``enabled=False`` hands out gates that never close. It exists only so the benchmark and the tests can
    measure the same waits without the gate (``benchmarks/trigger_waits.py``); it is not a user option,
    and nothing in the provider turns it off.
    """

    __slots__ = ("_gates", "enabled")

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self._gates: dict[tuple[object, ...], ThrottleGate] = {}

    def for_settings(self, settings: ClientSettings) -> ThrottleGate:
        key = endpoint_key(settings)
        gate = self._gates.get(key)
        if gate is None:
            gate = self._gates[key] = ThrottleGate(endpoint_label(settings.api_root), enabled=self.enabled)
        return gate

    def __len__(self) -> int:
        return len(self._gates)

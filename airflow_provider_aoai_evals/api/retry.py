"""The one retry policy, used by the sync and the async transport alike.

It follows the rules of the API's own Python client (see contract notes): retry connection errors,
timeouts, 408, 409, 429 and 5xx; honour ``retry-after-ms`` then ``Retry-After`` (seconds or an HTTP date);
give up at once when the server asks for a wait longer than the cap; otherwise back off exponentially with
jitter. On top of that it can stop at an absolute deadline, so retries inside a trigger never outlive the
wait the user configured.
"""

from __future__ import annotations

import email.utils
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import tenacity

from airflow_provider_aoai_evals.api.errors import (
    EvalsAPIError,
    EvalsConfigError,
    EvalsRetryAfterTooLongError,
    EvalsTransientError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")


def _seconds(raw: str | None, scale: float = 1.0) -> float | None:
    """A finite, non-negative number of seconds, or None for anything else (junk, NaN, inf, negative).

    Why so strict: a NaN pause compares false with every deadline, so it slipped past the check that no
    pause outlives a wait, made tenacity's sleep raise outside the error hierarchy, and put a timer with
    no set time into the event loop that every trigger shares.
    """
    if not raw:
        return None
    try:
        value = float(raw) / scale
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds the server asks us to wait, from ``retry-after-ms`` then ``Retry-After`` (seconds or an
    HTTP date); None when unsaid or not a finite, non-negative value."""
    lowered = {k.lower(): v for k, v in headers.items()}
    from_ms = _seconds(lowered.get("retry-after-ms"), 1000.0)
    if from_ms is not None:
        return from_ms
    raw = lowered.get("retry-after")
    if not raw:
        return None
    seconds = _seconds(raw)
    if seconds is not None:
        return seconds
    parsed = email.utils.parsedate_tz(raw)
    if parsed is None:
        return None
    try:
        until = email.utils.mktime_tz(parsed)
    except (OverflowError, ValueError):
        return None
    return max(until - (time.time() if now is None else now), 0.0)


@dataclass(frozen=True)
class RetryPolicy:
    """How many times, and how long apart, a transient failure is tried again.

    ``max_attempts`` counts the first try (the official client's 2 retries are ``max_attempts=3``).
    """

    max_attempts: int = 3
    initial_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 120.0
    #: The shortest pause a server's ``Retry-After`` can ask for: a server answering ``retry-after-ms: 1``
    #: to every request would otherwise get the whole attempt budget spent in a few milliseconds.
    min_retry_after: float = 0.1
    jitter: float = 0.25
    #: After a create whose connection failed mid-request, how long to keep looking the run up by its
    #: idempotency key before posting again: the server may still be processing the first request.
    create_settle_seconds: float = 3.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise EvalsConfigError("max_attempts", "must be at least 1")
        delays = (self.initial_delay, self.max_delay, self.max_retry_after, self.min_retry_after)
        if not all(math.isfinite(d) and d >= 0 for d in delays):
            raise EvalsConfigError("retry delays", "must be finite and not negative")
        if not 0 <= self.jitter < 1:
            raise EvalsConfigError("jitter", "must be in [0, 1)")

    def is_retryable(self, exc: BaseException) -> bool:
        """Transient API errors are retried, unless the server said not to or asked for too long a wait."""
        if not isinstance(exc, EvalsAPIError):
            return False
        if exc.should_retry is False:
            return False
        if not (exc.transient or exc.should_retry):
            return False
        return not self.too_long(exc)

    def backoff(self, retries_taken: int) -> float:
        """Exponential backoff with downward jitter, as ``min(0.5 * 2**n, 8) * (1 - 0.25 * random())``."""
        delay = min(self.initial_delay * (2.0**retries_taken), self.max_delay)
        return delay * (1.0 - self.jitter * random.random())

    def wait_for(self, retries_taken: int, exc: BaseException | None) -> float:
        """The pause before the next try: what the server asked for (at least ``min_retry_after``, at most
        ``max_retry_after``), else the backoff. ``Retry-After: 0`` gets the backoff, as in the official
        client: "retry now", said to every try, must not turn the budget into a burst."""
        hint = exc.retry_after if isinstance(exc, EvalsAPIError) else None
        if hint is not None and math.isfinite(hint) and hint > 0:
            return min(max(hint, self.min_retry_after), self.max_retry_after)
        return self.backoff(retries_taken)

    def too_long(self, exc: BaseException) -> bool:
        """Whether the server asked for a longer wait than this policy allows (so the call gives up)."""
        return (
            isinstance(exc, EvalsAPIError)
            and exc.retry_after is not None
            and exc.retry_after > self.max_retry_after
        )

    def final_error(self, exc: BaseException) -> BaseException:
        """The error to raise when retrying stops on ``exc``: the typed give-up when the server asked for
        too long a wait, so callers can tell it from a plain failure; ``exc`` itself otherwise."""
        if not isinstance(exc, EvalsTransientError) or isinstance(exc, EvalsRetryAfterTooLongError):
            return exc
        if not self.too_long(exc):
            return exc
        return EvalsRetryAfterTooLongError.from_error(exc, self.max_retry_after)

    # -- running a call under the policy --------------------------------------------------------------------

    def call(
        self,
        attempt: Callable[[], T],
        *,
        deadline: float | None = None,
        retry_if: Callable[[BaseException], bool] | None = None,
    ) -> T:
        """``attempt()`` under this policy. The first try runs outside tenacity and only a failure that
        may be retried enters it, where that failure counts as attempt 1: nearly every call succeeds at
        once, and setting tenacity up for every poll of thousands of trigger waits would cost a large
        share of the triggerer's CPU."""
        try:
            return attempt()
        except Exception as exc:  # noqa: BLE001 - handed on below, or re-raised as it is
            first = self._first_failure(exc, retry_if)
        replay = [first]
        try:
            for retry in self.retrying(deadline=deadline, retry_if=retry_if):
                with retry:
                    if replay:
                        raise replay.pop()
                    return attempt()
        except EvalsTransientError as exc:
            raise self.final_error(exc) from None
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    async def acall(
        self,
        attempt: Callable[[], Awaitable[T]],
        *,
        deadline: float | None = None,
        retry_if: Callable[[BaseException], bool] | None = None,
    ) -> T:
        """The same as :meth:`call` for coroutines; pauses are ``asyncio.sleep``."""
        try:
            return await attempt()
        except Exception as exc:  # noqa: BLE001 - handed on below, or re-raised as it is
            first = self._first_failure(exc, retry_if)
        replay = [first]
        try:
            async for retry in self.async_retrying(deadline=deadline, retry_if=retry_if):
                with retry:
                    if replay:
                        raise replay.pop()
                    return await attempt()
        except EvalsTransientError as exc:
            raise self.final_error(exc) from None
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    def pause_before_retry(
        self,
        attempt_number: int,
        exc: BaseException,
        *,
        retry_if: Callable[[BaseException], bool] | None = None,
        deadline: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> float | None:
        """The pause before trying again after attempt ``attempt_number`` (from 1) failed with ``exc``, or
        None when the policy stops there. For a flow that runs its own attempts (a create looks its run up
        between them): the same stops, pauses and warning as :meth:`retrying`."""
        if not (retry_if or self.is_retryable)(exc):
            return None
        pause = self.wait_for(attempt_number - 1, exc)
        if self._stops(attempt_number, pause, deadline, clock):
            return None
        _log_retry(attempt_number, self.max_attempts, pause, exc)
        return pause

    def _stops(
        self, attempt_number: int, pause: float, deadline: float | None, clock: Callable[[], float]
    ) -> bool:
        if attempt_number >= self.max_attempts:
            return True
        # Never start a pause that would end after the deadline: the caller's wait is over by then.
        return deadline is not None and clock() + pause >= deadline

    def _first_failure(self, exc: Exception, retry_if: Callable[[BaseException], bool] | None) -> Exception:
        """``exc`` if the policy may retry it; otherwise re-raise it now, as tenacity would."""
        if self.max_attempts <= 1 or not (retry_if or self.is_retryable)(exc):
            raise self.final_error(exc)
        return exc

    # -- tenacity plumbing ---------------------------------------------------------------------------------

    def _tenacity_kwargs(
        self,
        deadline: float | None,
        retry_if: Callable[[BaseException], bool] | None,
        clock: Callable[[], float],
    ) -> dict[str, object]:
        predicate = retry_if or self.is_retryable

        def wait(state: tenacity.RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            return self.wait_for(state.attempt_number - 1, exc)

        def stop(state: tenacity.RetryCallState) -> bool:
            return self._stops(state.attempt_number, state.upcoming_sleep, deadline, clock)

        def before_sleep(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            _log_retry(state.attempt_number, self.max_attempts, state.upcoming_sleep, exc)

        return {
            "retry": tenacity.retry_if_exception(predicate),
            "wait": wait,
            "stop": stop,
            "before_sleep": before_sleep,
            "reraise": True,
        }

    def retrying(
        self,
        *,
        deadline: float | None = None,
        retry_if: Callable[[BaseException], bool] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> tenacity.Retrying:
        """A tenacity ``Retrying`` for blocking code (``for attempt in policy.retrying(): with attempt: ...``)."""
        return tenacity.Retrying(**self._tenacity_kwargs(deadline, retry_if, clock))  # type: ignore[arg-type]

    def async_retrying(
        self,
        *,
        deadline: float | None = None,
        retry_if: Callable[[BaseException], bool] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> tenacity.AsyncRetrying:
        """The same policy for coroutines; its pauses are ``asyncio.sleep`` and never block the loop."""
        return tenacity.AsyncRetrying(**self._tenacity_kwargs(deadline, retry_if, clock))  # type: ignore[arg-type]


def _log_retry(attempt_number: int, max_attempts: int, pause: float, exc: BaseException | None) -> None:
    log.warning(
        "Evals API call failed (attempt %d of %d), retrying in %.2fs: %s",
        attempt_number,
        max_attempts,
        pause,
        exc,
    )

"""The retry policy's rules, on plain values."""

from __future__ import annotations

import asyncio
import email.utils
import time
from typing import Any

import pytest

from airflow_provider_aoai_evals.api.errors import (
    EvalsBadRequestError,
    EvalsConfigError,
    EvalsConnectionError,
    EvalsRateLimitError,
    EvalsRetryAfterTooLongError,
    EvalsServerError,
)
from airflow_provider_aoai_evals.api.retry import RetryPolicy, parse_retry_after


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"Retry-After": "2"}, 2.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after-ms": "junk", "retry-after": "3"}, 3.0),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": "-4"}, None),
        ({"Retry-After": "0"}, 0.0),
        ({"Retry-After": "nan"}, None),
        ({"Retry-After": "NaN"}, None),
        ({"Retry-After": "inf"}, None),
        ({"Retry-After": "1e400"}, None),
        ({"retry-after-ms": "nan", "retry-after": "2"}, 2.0),
        ({"retry-after-ms": "-1"}, None),
        ({"retry-after-ms": "inf"}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers) == expected


def test_parse_retry_after_http_date() -> None:
    now = 1_700_000_000.0
    header = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after({"Retry-After": header}, now=now) == pytest.approx(30, abs=1)


def test_backoff_follows_the_official_client() -> None:
    policy = RetryPolicy()
    for retries, ceiling in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        delays = [policy.backoff(retries) for _ in range(200)]
        assert max(delays) <= ceiling and min(delays) >= ceiling * 0.75
        assert len(set(delays)) > 1  # jitter


def test_what_is_retryable() -> None:
    policy = RetryPolicy(max_retry_after=60)
    assert policy.is_retryable(EvalsServerError("x", status_code=503))
    assert policy.is_retryable(EvalsConnectionError("x", request_sent=True))
    assert policy.is_retryable(EvalsRateLimitError("x", status_code=429, retry_after=60))
    assert not policy.is_retryable(EvalsRateLimitError("x", status_code=429, retry_after=61))
    assert not policy.is_retryable(EvalsBadRequestError("x", status_code=400))
    assert not policy.is_retryable(ValueError("x"))
    assert not policy.is_retryable(EvalsServerError("x", status_code=503, should_retry=False))
    assert policy.is_retryable(EvalsBadRequestError("x", status_code=400, should_retry=True))


def test_wait_prefers_server_hint_capped() -> None:
    policy = RetryPolicy(max_retry_after=10)
    assert policy.wait_for(0, EvalsRateLimitError("x", retry_after=3)) == 3
    assert policy.wait_for(0, EvalsRateLimitError("x", retry_after=30)) == 10
    assert policy.wait_for(0, EvalsServerError("x")) <= 0.5


def test_a_server_hint_has_a_floor_and_zero_means_the_backoff() -> None:
    policy = RetryPolicy(max_retry_after=10, min_retry_after=0.1)
    assert policy.wait_for(0, EvalsRateLimitError("x", retry_after=0.001)) == 0.1
    # "Retry now", said to every try, gets the exponential backoff, as in the official client.
    assert all(0.375 <= policy.wait_for(0, EvalsRateLimitError("x", retry_after=0)) <= 0.5 for _ in range(20))
    assert 3.0 <= policy.wait_for(3, EvalsRateLimitError("x", retry_after=0)) <= 4.0
    assert policy.wait_for(0, EvalsRateLimitError("x", retry_after=float("nan"))) <= 0.5


@pytest.mark.parametrize(
    "kwargs", [{"min_retry_after": -1}, {"max_delay": float("nan")}, {"initial_delay": float("inf")}]
)
def test_policy_refuses_delays_that_are_not_finite(kwargs: dict[str, float]) -> None:
    with pytest.raises(EvalsConfigError, match="retry delays"):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_a_wait_longer_than_the_cap_gives_up_with_the_typed_error() -> None:
    policy = RetryPolicy(max_attempts=5, max_retry_after=2)
    calls, attempt = _attempts(
        EvalsRateLimitError("slow down", status_code=429, request_id="req_1", retry_after=300)
    )
    with pytest.raises(EvalsRetryAfterTooLongError) as info:
        policy.call(attempt)
    assert len(calls) == 1
    err = info.value
    assert (err.status_code, err.request_id, err.retry_after, err.transient) == (429, "req_1", 300, True)
    assert "300 s" in str(err) and "max_retry_after (2 s)" in str(err) and "slow down" in str(err)
    # A plain failure that ran out of attempts stays what it was.
    calls, attempt = _attempts(*(EvalsServerError("boom", status_code=503) for _ in range(5)))
    with pytest.raises(EvalsServerError) as plain:
        RetryPolicy(max_attempts=2, initial_delay=0, max_delay=0).call(attempt)
    assert not isinstance(plain.value, EvalsRetryAfterTooLongError)


def test_retrying_stops_at_attempts_and_deadline() -> None:
    calls = []

    def failing() -> None:
        calls.append(1)
        raise EvalsServerError("boom", status_code=500)

    def run(retrying: Any) -> None:
        for attempt in retrying:
            with attempt:
                failing()

    policy = RetryPolicy(max_attempts=4, initial_delay=0, max_delay=0)
    with pytest.raises(EvalsServerError):
        run(policy.retrying())
    assert len(calls) == 4

    calls.clear()
    clock = iter([100.0 + i for i in range(50)])
    slow = RetryPolicy(max_attempts=50, initial_delay=5, max_delay=5, jitter=0)
    with pytest.raises(EvalsServerError):
        run(slow.retrying(deadline=103.0, clock=lambda: next(clock)))
    assert len(calls) == 1  # the first pause (5 s) would end after the deadline


@pytest.mark.parametrize("kwargs", [{"max_attempts": 0}, {"initial_delay": -1}, {"jitter": 1.0}])
def test_policy_validates(kwargs: dict[str, float]) -> None:
    with pytest.raises(EvalsConfigError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def _attempts(*outcomes: BaseException | str) -> tuple[list[int], Any]:
    """An attempt function that raises or returns the given outcomes in turn, counting its calls."""
    calls: list[int] = []
    queue = list(outcomes)

    def attempt() -> str:
        calls.append(1)
        outcome = queue.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return calls, attempt


def test_call_runs_the_policy_with_the_first_try_outside_tenacity(caplog: pytest.LogCaptureFixture) -> None:
    policy = RetryPolicy(max_attempts=3, initial_delay=0, max_delay=0)
    calls, attempt = _attempts("ok")
    assert policy.call(attempt) == "ok" and len(calls) == 1

    calls, attempt = _attempts(EvalsServerError("boom", status_code=503), EvalsRateLimitError("slow"), "ok")
    with caplog.at_level("WARNING", logger="airflow_provider_aoai_evals.api.retry"):
        assert policy.call(attempt) == "ok"
    assert len(calls) == 3
    assert [r.getMessage().split(",")[0] for r in caplog.records] == [
        "Evals API call failed (attempt 1 of 3)",
        "Evals API call failed (attempt 2 of 3)",
    ]

    calls, attempt = _attempts(*(EvalsServerError("boom", status_code=500) for _ in range(5)))
    with pytest.raises(EvalsServerError):
        policy.call(attempt)
    assert len(calls) == 3  # the first try counts as attempt 1

    calls, attempt = _attempts(EvalsBadRequestError("bad", status_code=400), "never")
    with pytest.raises(EvalsBadRequestError):
        policy.call(attempt)
    assert len(calls) == 1

    calls, attempt = _attempts(EvalsServerError("boom", status_code=500), "never")
    with pytest.raises(EvalsServerError):
        RetryPolicy(max_attempts=1).call(attempt)
    assert len(calls) == 1


def test_acall_honours_retry_if_and_the_deadline() -> None:
    policy = RetryPolicy(max_attempts=5, initial_delay=0, max_delay=0)
    calls, attempt = _attempts(EvalsServerError("boom", status_code=500), "ok")

    assert asyncio.run(policy.acall(lambda: _wrap(attempt))) == "ok" and len(calls) == 2
    calls, attempt = _attempts(EvalsServerError("boom", status_code=500), "never")
    with pytest.raises(EvalsServerError):
        asyncio.run(policy.acall(lambda: _wrap(attempt), retry_if=lambda exc: False))
    assert len(calls) == 1
    slow = RetryPolicy(max_attempts=5, initial_delay=30, max_delay=30, jitter=0)
    calls, attempt = _attempts(EvalsServerError("boom", status_code=500), "never")
    with pytest.raises(EvalsServerError):
        asyncio.run(slow.acall(lambda: _wrap(attempt), deadline=time.time() + 5))
    assert len(calls) == 1  # a 30 s pause would end after the deadline


async def _wrap(fn: Any) -> Any:
    return fn()

"""The retry policy's rules, on plain values."""

from __future__ import annotations

import email.utils
from typing import Any

import pytest

from airflow_provider_aoai_evals.api.errors import (
    EvalsBadRequestError,
    EvalsConfigError,
    EvalsConnectionError,
    EvalsRateLimitError,
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
        ({"Retry-After": "-4"}, 0.0),
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

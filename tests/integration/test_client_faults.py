"""Injected faults: transient ones are survived with the expected attempts, permanent ones fail at once."""

from __future__ import annotations

import time
from typing import Any

import pytest

from airflow_provider_aoai_evals.api.errors import (
    EvalsAPIError,
    EvalsAuthenticationError,
    EvalsBadRequestError,
    EvalsConnectionError,
    EvalsNotFoundError,
    EvalsPermissionDeniedError,
    EvalsRetryAfterTooLongError,
    EvalsServerError,
    EvalsTimeoutError,
)
from airflow_provider_aoai_evals.api.retry import RetryPolicy
from airflow_provider_aoai_evals.testing import FakeEvalsServer, Fault, RunScript

from .conftest import ClientFactory, make_settings, rows

RUN_PATH = r"/runs/[^/]+$"


@pytest.fixture
def run_id(server: FakeEvalsServer, eval_id: str) -> str:
    return str(server.add_run(eval_id, RunScript(queued_seconds=600))["id"])


def gets(server: FakeEvalsServer) -> int:
    return server.count("GET", RUN_PATH)


def test_429_with_retry_after_is_honoured(
    client: Any, server: FakeEvalsServer, eval_id: str, run_id: str
) -> None:
    server.inject(
        Fault(kind="status", status=429, retry_after=0.3, method="GET", path_regex=RUN_PATH, count=2)
    )
    started = time.monotonic()
    assert client.get_run(eval_id, run_id).id == run_id
    assert gets(server) == 3
    # Two waits of the server's 0.3 s, not the policy's 0.01-0.05 s backoff.
    assert time.monotonic() - started >= 0.6


def test_retry_after_ms_takes_precedence(
    client: Any, server: FakeEvalsServer, eval_id: str, run_id: str
) -> None:
    server.inject(Fault(kind="status", status=429, retry_after=30, retry_after_ms=250, path_regex=RUN_PATH))
    started = time.monotonic()
    client.get_run(eval_id, run_id)
    elapsed = time.monotonic() - started
    assert gets(server) == 2 and 0.25 <= elapsed < 5


def test_retry_after_above_cap_gives_up_at_once(
    server: FakeEvalsServer, make_client: ClientFactory, eval_id: str, run_id: str
) -> None:
    client = make_client(make_settings(server, retry=RetryPolicy(max_attempts=5, max_retry_after=2)))
    server.inject(Fault(kind="status", status=429, retry_after=300, path_regex=RUN_PATH))
    with pytest.raises(EvalsRetryAfterTooLongError) as info:
        client.get_run(eval_id, run_id)
    assert gets(server) == 1 and info.value.retry_after == 300 and info.value.status_code == 429


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408, 409])
def test_transient_status_burst_is_survived(
    client: Any, server: FakeEvalsServer, eval_id: str, run_id: str, status: int
) -> None:
    server.inject(Fault(kind="status", status=status, path_regex=RUN_PATH, count=2))
    assert client.get_run(eval_id, run_id).id == run_id
    assert gets(server) == 3


def test_burst_longer_than_budget_fails_with_status_request_id_and_message(
    client: Any, server: FakeEvalsServer, eval_id: str, run_id: str
) -> None:
    server.inject(
        Fault(kind="status", status=503, message="engine overloaded", path_regex=RUN_PATH, count=10)
    )
    with pytest.raises(EvalsServerError) as info:
        client.get_run(eval_id, run_id)
    err = info.value
    assert gets(server) == client.settings.retry.max_attempts == 3
    assert err.status_code == 503 and err.request_id and "engine overloaded" in str(err)
    assert err.request_id in str(err) and "503" in str(err)
    assert err.request_id == server.requests[-1].request_id


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (400, EvalsBadRequestError),
        (401, EvalsAuthenticationError),
        (403, EvalsPermissionDeniedError),
        (404, EvalsNotFoundError),
        (422, EvalsBadRequestError),
    ],
)
def test_permanent_status_fails_at_once(
    client: Any,
    server: FakeEvalsServer,
    eval_id: str,
    run_id: str,
    status: int,
    error_class: type[EvalsAPIError],
) -> None:
    server.inject(Fault(kind="status", status=status, message=f"nope {status}", path_regex=RUN_PATH, count=5))
    with pytest.raises(error_class) as info:
        client.get_run(eval_id, run_id)
    assert gets(server) == 1
    err = info.value
    assert err.status_code == status and not err.transient
    assert f"nope {status}" in str(err) and err.request_id and err.request_id in str(err)


def test_wrong_key_is_401_at_once(server: FakeEvalsServer, make_client: ClientFactory, eval_id: str) -> None:
    client = make_client(make_settings(server, key="sk-wrong"))
    with pytest.raises(EvalsAuthenticationError) as info:
        client.get_eval(eval_id)
    assert info.value.status_code == 401 and server.count("GET") == 1


@pytest.mark.parametrize("kind", ["drop_before", "drop_after", "html", "malformed"])
def test_broken_responses_to_reads_are_retried(
    client: Any, server: FakeEvalsServer, eval_id: str, run_id: str, kind: str
) -> None:
    server.inject(Fault(kind=kind, path_regex=RUN_PATH, method="GET"))
    assert client.get_run(eval_id, run_id).id == run_id
    assert gets(server) == 2


def test_persistent_html_page_is_reported_as_non_json(
    client: Any, server: FakeEvalsServer, eval_id: str, run_id: str
) -> None:
    server.inject(Fault(kind="html", path_regex=RUN_PATH, count=5))
    with pytest.raises(EvalsServerError) as info:
        client.get_run(eval_id, run_id)
    assert info.value.status_code == 502 and "non-JSON" in str(info.value)


def test_slow_response_times_out_then_succeeds(
    server: FakeEvalsServer, make_client: ClientFactory, eval_id: str, run_id: str
) -> None:
    client = make_client(make_settings(server, read_timeout=0.3))
    server.inject(Fault(kind="slow", delay=1.5, path_regex=RUN_PATH))
    assert client.get_run(eval_id, run_id).id == run_id
    assert gets(server) == 2


def test_timeouts_exhausting_the_budget_raise_a_timeout(
    server: FakeEvalsServer, make_client: ClientFactory, eval_id: str, run_id: str
) -> None:
    client = make_client(
        make_settings(server, read_timeout=0.2, retry=RetryPolicy(max_attempts=2, initial_delay=0.01))
    )
    server.inject(Fault(kind="slow", delay=1.0, path_regex=RUN_PATH, count=2))
    with pytest.raises(EvalsTimeoutError) as info:
        client.get_run(eval_id, run_id)
    assert info.value.transient and info.value.request_sent


def test_unknown_status_fault_parses(client: Any, server: FakeEvalsServer, eval_id: str, run_id: str) -> None:
    server.inject(Fault(kind="unknown_status", run_status="throttled", path_regex=RUN_PATH))
    assert client.get_run(eval_id, run_id).status == "throttled"


def test_deadline_bounds_retries(
    server: FakeEvalsServer, make_client: ClientFactory, eval_id: str, run_id: str
) -> None:
    client = make_client(
        make_settings(server, retry=RetryPolicy(max_attempts=50, initial_delay=0.2, max_delay=0.2))
    )
    server.inject(Fault(kind="status", status=503, path_regex=RUN_PATH, count=None))
    started = time.time()
    with pytest.raises(EvalsServerError):
        client.get_run(eval_id, run_id, deadline=started + 1.0)
    assert time.time() - started < 1.2
    assert 2 <= gets(server) <= 8  # pauses of 0.15-0.2 s (jitter) in a 1 s budget


# -- create: never a duplicate run -------------------------------------------------------------------------


def runs_on_server(client: Any, eval_id: str) -> int:
    return len(list(client.list_runs(eval_id)))


def test_create_dropped_after_accept_returns_the_one_run(
    client: Any, server: FakeEvalsServer, eval_id: str
) -> None:
    server.inject(Fault(kind="drop_after", method="POST", path_regex=r"/runs$"))
    run = client.create_run(eval_id, data_source=rows(3), idempotency_key="dag.task.run1.0")
    assert run.metadata and run.metadata["airflow_idempotency_key"] == "dag.task.run1.0"
    assert server.count("POST", r"/runs$") == 1  # resolved by lookup, no second POST
    assert runs_on_server(client, eval_id) == 1


def test_create_timeout_after_accept_returns_the_one_run(
    server: FakeEvalsServer, make_client: ClientFactory, eval_id: str
) -> None:
    client = make_client(make_settings(server, read_timeout=0.3))
    server.inject(Fault(kind="slow", delay=1.0, method="POST", path_regex=r"/runs$"))
    run = client.create_run(eval_id, data_source=rows(3), idempotency_key="k-timeout")
    time.sleep(0.8)  # had the client posted again, the second run would exist by now
    assert server.count("POST", r"/runs$") == 1 and runs_on_server(client, eval_id) == 1
    assert run.id == next(iter(client.list_runs(eval_id))).id


def test_create_5xx_not_created_is_posted_again(client: Any, server: FakeEvalsServer, eval_id: str) -> None:
    server.inject(Fault(kind="status", status=500, method="POST", path_regex=r"/runs$"))
    run = client.create_run(eval_id, data_source=rows(3), idempotency_key="k-500")
    assert server.count("POST", r"/runs$") == 2 and runs_on_server(client, eval_id) == 1
    assert server.count("GET", r"/runs$") >= 1  # looked for the key before posting again
    assert run.status in ("queued", "in_progress")


def test_create_429_is_retried_without_lookup(client: Any, server: FakeEvalsServer, eval_id: str) -> None:
    server.inject(Fault(kind="status", status=429, retry_after=0.05, method="POST", path_regex=r"/runs$"))
    client.create_run(eval_id, data_source=rows(1), idempotency_key="k-429")
    assert server.count("POST", r"/runs$") == 2 and server.count("GET", r"/runs$") == 0


def test_create_without_key_is_not_blindly_retried_after_ambiguous_failure(
    client: Any, server: FakeEvalsServer, eval_id: str
) -> None:
    server.inject(Fault(kind="drop_after", method="POST", path_regex=r"/runs$"))
    with pytest.raises(EvalsConnectionError) as info:
        client.create_run(eval_id, data_source=rows(1))
    assert info.value.request_sent
    assert server.count("POST", r"/runs$") == 1 and runs_on_server(client, eval_id) == 1


def test_create_without_key_retries_unsent_failures(
    client: Any, server: FakeEvalsServer, eval_id: str
) -> None:
    server.inject(Fault(kind="status", status=429, retry_after=0.05, method="POST", path_regex=r"/runs$"))
    client.create_run(eval_id, data_source=rows(1))
    assert runs_on_server(client, eval_id) == 1


def test_connection_refused_is_transient_and_unsent(make_client: ClientFactory) -> None:
    with FakeEvalsServer() as gone:
        settings = make_settings(gone, retry=RetryPolicy(max_attempts=2, initial_delay=0.01))
    client = make_client(settings)  # the server is stopped: nothing listens on that port now
    with pytest.raises(EvalsConnectionError) as info:
        client.create_run("eval_x", data_source=rows(1))
    assert info.value.transient and not info.value.request_sent

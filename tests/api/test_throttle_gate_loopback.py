"""The throttle gate over loopback HTTP: AsyncEvalsClient against FakeEvalsServer throttled by a fault.

Each test counts the requests that reached the fake while it throttled (a window fault's ``hits``), so a
client without the gate, which retries every wait on its own schedule, fails them.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator

import pytest

from airflow_provider_aoai_evals.api import shared_state
from airflow_provider_aoai_evals.api.auth import ApiKeyAuth
from airflow_provider_aoai_evals.api.client import AsyncEvalsClient
from airflow_provider_aoai_evals.api.errors import EvalsRateLimitError
from airflow_provider_aoai_evals.api.retry import RetryPolicy
from airflow_provider_aoai_evals.api.settings import ClientSettings
from airflow_provider_aoai_evals.api.throttle_gate import GateRegistry, ThrottleGate
from airflow_provider_aoai_evals.testing import FakeEvalsServer, Fault, RunScript

KEY = "sk-gate-canary-3b7d91"
RUN_PATH = r"/runs/[^/]+$"
#: Enough attempts that a call outlives the throttle whether or not the gate holds it.
POLICY = RetryPolicy(max_attempts=10, initial_delay=0.2, max_delay=0.2)


def settings_for(server: FakeEvalsServer, key: str = KEY, *, header: str | None = None) -> ClientSettings:
    auth = ApiKeyAuth(key, header=header or ("bearer" if server.flavor == "openai" else "api-key"))  # type: ignore[arg-type]
    return ClientSettings.build(
        flavor=server.flavor, base_url=server.base_url, auth=auth, retry=POLICY, read_timeout=5.0
    )


def gate_of(settings: ClientSettings) -> ThrottleGate:
    return shared_state.for_loop().gates.for_settings(settings)


@pytest.fixture
def server() -> Iterator[FakeEvalsServer]:
    with FakeEvalsServer(api_key=KEY) as srv:
        yield srv


def _runs(server: FakeEvalsServer, n: int) -> tuple[str, list[str]]:
    eval_id = str(server.add_eval(name="e")["id"])
    script = RunScript(queued_seconds=0, in_progress_seconds=0)
    return eval_id, [str(server.add_run(eval_id, script)["id"]) for _ in range(n)]


def _poll_all_through(server: FakeEvalsServer, fault: Fault, n: int, *, gate: bool) -> tuple[int, int]:
    """``n`` concurrent polls while ``fault`` throttles: (requests during its window, polls that ended)."""
    eval_id, run_ids = _runs(server, n)
    settings = settings_for(server)

    async def main() -> int:
        if not gate:
            shared_state.for_loop().gates = GateRegistry(enabled=False)
        async with AsyncEvalsClient.shared(settings) as client:
            polls = [client.run_poll(eval_id, run_id) for run_id in run_ids]
            server.inject(fault)
            runs = await asyncio.gather(*(poll(deadline=time.time() + 30) for poll in polls))
        return len([run for run in runs if run.status == "completed"])

    ended = asyncio.run(main())
    return fault.hits, ended


def test_concurrent_polls_send_about_one_request_each_plus_probes(server: FakeEvalsServer) -> None:
    n, window, retry_after = 100, 2.0, 0.5
    throttle = Fault(kind="status", status=429, retry_after=retry_after, method="GET", path_regex=RUN_PATH, seconds=window)  # fmt: skip
    hits, ended = _poll_all_through(server, throttle, n, gate=True)
    assert ended == n
    probes = window / retry_after
    assert hits <= n + probes + 4, hits  # the first polls were in flight together; then only probes

    server.reset()
    storm = Fault(kind="status", status=429, retry_after=retry_after, method="GET", path_regex=RUN_PATH, seconds=window)  # fmt: skip
    hits_without, ended = _poll_all_through(server, storm, n, gate=False)
    assert ended == n
    assert hits_without >= 3 * n, hits_without  # every poll on its own schedule: the storm


def test_a_503_closes_the_gate_too(server: FakeEvalsServer) -> None:
    n, window = 50, 1.0
    throttle = Fault(kind="status", status=503, method="GET", path_regex=RUN_PATH, seconds=window)
    hits, ended = _poll_all_through(server, throttle, n, gate=True)
    assert ended == n
    # Probes every 0.15-0.2 s (the policy's first backoff) over the 1 s window.
    assert hits <= n + window / 0.15 + 3, hits


def test_one_line_per_closing_with_the_endpoint_and_no_secret(
    server: FakeEvalsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="airflow_provider_aoai_evals.api.throttle_gate")
    # The window ends before the cool-down does, so the first probe opens the gate: one closing.
    throttle = Fault(kind="status", status=429, retry_after_ms=500, method="GET", path_regex=RUN_PATH, seconds=0.3)  # fmt: skip
    hits, ended = _poll_all_through(server, throttle, 60, gate=True)
    assert ended == 60 and hits >= 30
    lines = [r for r in caplog.records if r.name.endswith("throttle_gate")]
    warnings = [r.getMessage() for r in lines if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    [line] = warnings
    assert f"{server.base_url} is throttled" in line and "retry-after-ms 0.5 s" in line and "0.50 s" in line
    assert any("answers again" in r.getMessage() for r in lines)
    assert KEY not in caplog.text


def test_a_wait_with_an_earlier_deadline_leaves_at_its_deadline(server: FakeEvalsServer) -> None:
    eval_id, [run_id] = _runs(server, 1)
    settings = settings_for(server)
    server.inject(Fault(kind="status", status=429, retry_after=10, method="GET", path_regex=RUN_PATH))

    async def main() -> None:
        async with AsyncEvalsClient.shared(settings) as client:
            poll = client.run_poll(eval_id, run_id)
            with pytest.raises(EvalsRateLimitError):  # its 10 s pause would outlive the deadline
                await poll(deadline=time.time() + 0.2)
            assert not gate_of(settings).state.is_open
            started = time.time()
            with pytest.raises(EvalsRateLimitError) as info:
                await poll(deadline=started + 0.5)
            assert 0.45 <= time.time() - started < 1.5
            assert "not sent" in str(info.value)

    asyncio.run(main())
    assert server.count("GET", RUN_PATH) == 1  # the second poll never left the gate


async def _throttled_once(client: AsyncEvalsClient, eval_id: str, run_id: str) -> None:
    """One poll answered 429 ``Retry-After: 10`` (the fault the caller injected): the gate is closed."""
    with pytest.raises(EvalsRateLimitError):
        await client.run_poll(eval_id, run_id)(deadline=time.time() + 0.2)


def test_the_gate_is_per_endpoint_and_credential() -> None:
    second_key = "sk-gate-second-credential-77"
    with FakeEvalsServer(api_key=KEY) as a, FakeEvalsServer(api_key=KEY, flavor="azure") as b:
        eval_a, [run_a] = _runs(a, 1)
        eval_b, [run_b] = _runs(b, 1)
        a.inject(Fault(kind="status", status=429, retry_after=10, method="GET", path_regex=RUN_PATH))
        b.accepted_tokens.add(second_key)
        at_a, at_b = settings_for(a), settings_for(b)
        at_b_as_other = settings_for(b, second_key, header="bearer")

        async def main() -> None:
            async with AsyncEvalsClient.shared(at_a) as client_a, AsyncEvalsClient.shared(at_b) as client_b:
                await _throttled_once(client_a, eval_a, run_a)
                started = time.monotonic()
                assert (await client_b.run_poll(eval_b, run_b)(deadline=time.time() + 5)).id == run_b
                assert time.monotonic() - started < 0.5  # b's gate was open
                b.inject(Fault(kind="status", status=429, retry_after=10, method="GET", path_regex=RUN_PATH))
                await _throttled_once(client_b, eval_b, run_b)
                async with AsyncEvalsClient.shared(at_b_as_other) as other:
                    started = time.monotonic()
                    assert (await other.run_poll(eval_b, run_b)(deadline=time.time() + 5)).id == run_b
                    assert time.monotonic() - started < 0.5  # another credential, its own limits
                assert not gate_of(at_a).state.is_open and not gate_of(at_b).state.is_open
                assert gate_of(at_b_as_other).state.is_open
                assert len(shared_state.for_loop().gates) == 3

        asyncio.run(main())
        assert a.count("GET", RUN_PATH) == 1 and b.count("GET", RUN_PATH) == 3


def test_the_gate_is_per_event_loop(server: FakeEvalsServer) -> None:
    eval_id, [run_id] = _runs(server, 1)
    settings = settings_for(server)
    server.inject(Fault(kind="status", status=429, retry_after=10, method="GET", path_regex=RUN_PATH))
    closed, done = threading.Event(), threading.Event()
    held: list[float] = []

    async def first_loop() -> None:
        async with AsyncEvalsClient.shared(settings) as client:
            await _throttled_once(client, eval_id, run_id)
            closed.set()
            await asyncio.get_running_loop().run_in_executor(None, done.wait, 10)
            started = time.time()
            with pytest.raises(EvalsRateLimitError):  # still closed in this loop
                await client.run_poll(eval_id, run_id)(deadline=started + 0.3)
            held.append(time.time() - started)

    thread = threading.Thread(target=asyncio.run, args=(first_loop(),))
    thread.start()
    try:
        assert closed.wait(10)

        async def second_loop() -> float:
            async with AsyncEvalsClient.shared(settings) as client:
                started = time.monotonic()
                await client.run_poll(eval_id, run_id)(deadline=time.time() + 5)
                return time.monotonic() - started

        assert asyncio.run(second_loop()) < 0.5
    finally:
        done.set()
        thread.join(10)
    assert held and held[0] >= 0.25
    assert server.count("GET", RUN_PATH) == 2


def test_reset_forgets_the_gates(server: FakeEvalsServer) -> None:
    eval_id, [run_id] = _runs(server, 1)
    settings = settings_for(server)
    server.inject(Fault(kind="status", status=429, retry_after=10, method="GET", path_regex=RUN_PATH))

    async def main() -> None:
        async with AsyncEvalsClient.shared(settings) as client:
            await _throttled_once(client, eval_id, run_id)
        before = shared_state.for_loop().gates
        assert not before.for_settings(settings).state.is_open
        shared_state.reset()
        assert shared_state.for_loop().gates is not before and len(shared_state.for_loop().gates) == 0
        async with AsyncEvalsClient.shared(settings) as client:
            started = time.monotonic()
            await client.run_poll(eval_id, run_id)(deadline=time.time() + 5)
            assert time.monotonic() - started < 0.5
            assert gate_of(settings).state.is_open

    asyncio.run(main())
    assert server.count("GET", RUN_PATH) == 2


def test_a_probe_cancelled_in_flight_hands_the_probe_to_the_next_waiter(server: FakeEvalsServer) -> None:
    eval_id, run_ids = _runs(server, 3)
    settings = settings_for(server)
    server.inject(Fault(kind="status", status=429, retry_after=0.3, method="GET", path_regex=RUN_PATH))
    server.inject(Fault(kind="slow", delay=5.0, method="GET", path_regex=RUN_PATH))  # the probe's request

    async def main() -> float:
        async with AsyncEvalsClient.shared(settings) as client:
            with pytest.raises(EvalsRateLimitError):
                await client.run_poll(eval_id, run_ids[0])(deadline=time.time() + 0.1)
            polls = [client.run_poll(eval_id, run_id) for run_id in run_ids]
            tasks = [asyncio.ensure_future(poll(deadline=time.time() + 10)) for poll in polls]
            await asyncio.sleep(0.8)  # the first waiter has been probing for about 0.5 s
            gate = gate_of(settings)
            assert gate.state.probing and gate.waiting == 2
            tasks[0].cancel()
            cancelled_at = time.monotonic()
            runs = await asyncio.gather(*tasks[1:])
            assert [run.id for run in runs] == run_ids[1:]
            with pytest.raises(asyncio.CancelledError):
                await tasks[0]
            assert gate.state.is_open
            return time.monotonic() - cancelled_at

    assert asyncio.run(main()) < 1.0  # not the 10 s deadline: the slot was not leaked

"""The throttle gate's rules (GateState, on plain numbers) and its async waiting (ThrottleGate, no HTTP)."""

from __future__ import annotations

import asyncio
import time

import pytest

from airflow_provider_aoai_evals.api.errors import EvalsRateLimitError, EvalsServerError
from airflow_provider_aoai_evals.api.retry import RetryPolicy
from airflow_provider_aoai_evals.api.throttle_gate import (
    Admission,
    GateRegistry,
    GateState,
    ThrottleGate,
    cool_down,
    endpoint_label,
)

POLICY = RetryPolicy()
RA = {"Retry-After": "5"}


# -- GateState -------------------------------------------------------------------------------------------


def test_open_gate_sends_and_a_throttle_closes_it_once() -> None:
    state = GateState()
    assert state.admit(0.0) is Admission.SEND
    assert state.throttled(10.0, 5.0, 429, probe=False) is True  # a new closing: logged
    assert state.throttled(10.1, 5.0, 429, probe=False) is False  # the same closing, answered again
    assert state.closings == 1 and not state.is_open
    assert state.admit(12.0) is Admission.WAIT
    assert state.admit(14.99) is Admission.WAIT


def test_a_longer_answer_extends_and_a_shorter_one_never_shortens() -> None:
    state = GateState()
    state.throttled(0.0, 5.0, 429, probe=False)
    state.throttled(1.0, 10.0, 503, probe=False)
    assert state.until == 11.0 and state.status == 503
    state.throttled(2.0, 1.0, 429, probe=False)
    assert state.until == 11.0 and state.status == 503  # 3.0 would have shortened it
    assert state.admit(10.9) is Admission.WAIT


def test_after_the_cool_down_one_probe_goes_and_its_success_opens_for_all() -> None:
    state = GateState()
    state.throttled(0.0, 5.0, 429, probe=False)
    assert state.admit(5.0) is Admission.PROBE
    assert state.admit(5.1) is Admission.WAIT  # one probe at a time
    assert state.answered(probe=False) is False  # an answer to an older request opens nothing
    assert state.admit(5.2) is Admission.WAIT
    assert state.answered(probe=True) is True
    assert state.is_open and state.admit(5.3) is Admission.SEND
    assert state.throttled(6.0, 1.0, 429, probe=False) is True  # the next closing starts its own cool-down
    assert state.until == 7.0 and state.closings == 2


def test_a_probe_that_is_throttled_closes_the_gate_again() -> None:
    state = GateState()
    state.throttled(0.0, 5.0, 429, probe=False)
    assert state.admit(5.0) is Admission.PROBE
    assert state.throttled(5.5, 5.0, 429, probe=True) is True  # a new closing, logged again
    assert not state.probing and state.until == 10.5 and state.closings == 2
    assert state.admit(8.0) is Admission.WAIT
    assert state.admit(10.5) is Admission.PROBE


def test_a_lost_probe_frees_the_slot() -> None:
    state = GateState()
    state.throttled(0.0, 1.0, 503, probe=False)
    assert state.admit(1.0) is Admission.PROBE
    assert state.wake_at() is None  # nobody is woken while a probe is out
    state.probe_lost()
    assert state.wake_at() == 1.0
    assert state.admit(1.1) is Admission.PROBE and not state.is_open


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (429, {"Retry-After": "5"}, 5.0),
        (429, {"retry-after-ms": "250", "Retry-After": "30"}, 0.25),
        (429, {"Retry-After": "600"}, 120.0),  # never longer than the policy would wait
        (429, {"retry-after-ms": "1"}, 0.1),  # nor shorter than min_retry_after
        (503, {"Retry-After": "2"}, 2.0),
        (429, {}, None),  # a 429 that says nothing about when is each call's own business
        (500, {"Retry-After": "5"}, None),
        (200, {}, None),
    ],
)
def test_cool_down_from_the_answer(status: int, headers: dict[str, str], expected: float | None) -> None:
    found = cool_down(status, headers, POLICY)
    if expected is None:
        assert found is None
    else:
        assert found is not None and found[0] == pytest.approx(expected)
        assert f"HTTP {status}" in found[1]


@pytest.mark.parametrize(("status", "headers"), [(503, {}), (429, {"Retry-After": "0"})])
def test_no_usable_hint_gets_the_policys_first_backoff(status: int, headers: dict[str, str]) -> None:
    found = cool_down(status, headers, POLICY)
    assert found is not None and 0.375 <= found[0] <= 0.5 and "first backoff" in found[1]


def test_the_logged_endpoint_has_no_credentials_or_query() -> None:
    assert endpoint_label("https://user:pw@x.openai.azure.com:8443/openai/v1?k=1") == (
        "https://x.openai.azure.com:8443/openai/v1"
    )


# -- ThrottleGate ----------------------------------------------------------------------------------------


async def _closed_gate(seconds: float, status: int = 429) -> ThrottleGate:
    gate = ThrottleGate("http://127.0.0.1/v1")
    gate.observe(status, {"Retry-After": f"{seconds}"}, POLICY, probe=False)
    assert not gate.state.is_open
    return gate


async def _enter(gate: ThrottleGate, deadline: float | None = None) -> bool:
    return await gate.enter(deadline, POLICY, "GET", "/evals/e/runs/r")


def test_waiters_wait_for_the_cool_down_then_one_probes_and_its_success_releases_all() -> None:
    async def main() -> None:
        gate = await _closed_gate(0.3)
        started = time.monotonic()
        tasks = [asyncio.ensure_future(_enter(gate)) for _ in range(50)]
        await asyncio.sleep(0.2)
        assert gate.waiting == 50 and not any(t.done() for t in tasks)
        await asyncio.sleep(0.2)
        probes = [t for t in tasks if t.done()]
        assert [t.result() for t in probes] == [True]  # exactly one, the oldest
        assert probes[0] is tasks[0]
        assert time.monotonic() - started >= 0.29
        gate.observe(200, {}, POLICY, probe=True)
        rest = await asyncio.gather(*tasks[1:])
        assert rest == [False] * 49 and gate.state.is_open and gate.waiting == 0

    asyncio.run(main())


def test_a_failed_probe_closes_again_and_the_next_probe_is_the_next_waiter() -> None:
    async def main() -> None:
        gate = await _closed_gate(0.1)
        tasks = [asyncio.ensure_future(_enter(gate)) for _ in range(3)]
        assert await tasks[0] is True
        gate.observe(429, {"Retry-After": "0.2"}, POLICY, probe=True)
        assert gate.state.closings == 2
        again = asyncio.ensure_future(_enter(gate))  # the first one's retry queues behind the others
        await asyncio.sleep(0.1)
        assert not tasks[1].done()
        assert await tasks[1] is True  # no starving: each waiter gets its turn
        gate.observe(429, {"Retry-After": "0.1"}, POLICY, probe=True)
        assert await tasks[2] is True
        gate.observe(200, {}, POLICY, probe=True)
        assert await again is False

    asyncio.run(main())


def test_a_wait_with_an_earlier_deadline_leaves_at_its_deadline_not_sent() -> None:
    async def main() -> None:
        gate = await _closed_gate(30)
        started = time.time()
        with pytest.raises(EvalsRateLimitError) as info:
            await _enter(gate, deadline=started + 0.3)
        assert 0.29 <= time.time() - started < 1.0
        assert info.value.status_code == 429 and "not sent" in str(info.value)
        assert gate.waiting == 0 and not gate.state.probing

        gate503 = await _closed_gate(30, status=503)
        with pytest.raises(EvalsServerError):
            await _enter(gate503, deadline=time.time() - 1)  # already past: leaves at once

    asyncio.run(main())


def test_without_a_deadline_the_wait_is_bounded_by_max_retry_after() -> None:
    async def main() -> None:
        gate = ThrottleGate("x")
        policy = RetryPolicy(max_retry_after=0.2)
        gate.observe(429, {"Retry-After": "30"}, RetryPolicy(), probe=False)
        started = time.monotonic()
        with pytest.raises(EvalsRateLimitError):
            await gate.enter(None, policy, "GET", "/p")
        assert time.monotonic() - started < 1.0

    asyncio.run(main())


def test_cancelling_the_task_handed_the_probe_passes_the_probe_on() -> None:
    async def main() -> None:
        gate = await _closed_gate(0.1)
        first, second = asyncio.ensure_future(_enter(gate)), asyncio.ensure_future(_enter(gate))
        # One loop step at a time, so the probe is seen in the step it is handed out, before its task runs.
        while not gate.state.probing:  # noqa: ASYNC110 - an Event would be set a step too late
            await asyncio.sleep(0)
        assert not first.done()
        first.cancel()  # handed the probe, cancelled before it ran
        with pytest.raises(asyncio.CancelledError):
            await first
        assert await asyncio.wait_for(second, 1.0) is True
        assert gate.state.probing

    asyncio.run(main())


def test_cancelling_a_waiter_and_losing_a_probe_leak_nothing() -> None:
    async def main() -> None:
        gate = await _closed_gate(0.1)
        tasks = [asyncio.ensure_future(_enter(gate)) for _ in range(100)]
        await asyncio.sleep(0.01)
        for task in tasks[:99]:
            task.cancel()
        await asyncio.gather(*tasks[:99], return_exceptions=True)
        assert gate.waiting == 1
        assert await tasks[99] is True  # the cancelled ones before it did not hold the probe
        gate.lost()  # e.g. a connection reset: no answer
        late = asyncio.ensure_future(_enter(gate))
        assert await asyncio.wait_for(late, 1.0) is True

    asyncio.run(main())


def test_a_disabled_registry_hands_out_gates_that_never_close() -> None:
    from tests.integration.conftest import make_settings

    class _Server:
        flavor, base_url = "openai", "http://127.0.0.1:9/v1"

    async def main() -> None:
        registry = GateRegistry(enabled=False)
        settings = make_settings(_Server())  # type: ignore[arg-type]
        gate = registry.for_settings(settings)
        assert registry.for_settings(settings) is gate and len(registry) == 1
        gate.observe(429, {"Retry-After": "30"}, POLICY, probe=False)
        assert gate.state.is_open
        enabled = GateRegistry().for_settings(settings)
        enabled.observe(429, {"Retry-After": "30"}, POLICY, probe=False)
        assert not enabled.state.is_open

    asyncio.run(main())

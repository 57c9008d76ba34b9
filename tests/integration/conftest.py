"""Fixtures that run each client test against FakeEvalsServer for both flavors and both transports.

The async client is driven through ``SyncView``, which runs its coroutines on one event loop in a
background thread, so a single test body checks EvalsClient and AsyncEvalsClient alike.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal

import pytest

from airflow_provider_aoai_evals.api.auth import ApiKeyAuth, AuthProvider
from airflow_provider_aoai_evals.api.client import AsyncEvalsClient, EvalsClient
from airflow_provider_aoai_evals.api.retry import RetryPolicy
from airflow_provider_aoai_evals.api.settings import ClientSettings
from airflow_provider_aoai_evals.testing import FakeEvalsServer

CANARY_KEY = "sk-canary-7f3a9c1e5b2d4f60"
CRITERIA = [
    {
        "type": "string_check",
        "name": "exact",
        "input": "{{sample.output_text}}",
        "reference": "{{item.label}}",
        "operation": "eq",
    },
    {
        "type": "string_check",
        "name": "tone",
        "input": "{{sample.output_text}}",
        "reference": "calm",
        "operation": "ilike",
    },
]
DATA_SOURCE_CONFIG = {"type": "custom", "item_schema": {"type": "object"}, "include_sample_schema": True}
FAST_RETRY = RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.05)


def rows(n: int) -> dict[str, Any]:
    return {
        "type": "jsonl",
        "source": {"type": "file_content", "content": [{"item": {"i": i}} for i in range(n)]},
    }


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class SyncView:
    """The async client behind the sync client's surface; async iterators come back as lists."""

    def __init__(self, client: AsyncEvalsClient, runner: LoopThread) -> None:
        self._client = client
        self._runner = runner
        self.settings = client.settings

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            async def go() -> Any:
                result = attr(*args, **kwargs)
                if isinstance(result, AsyncIterator):
                    return [x async for x in result]
                return await result

            return self._runner.run(go())

        return call


def make_settings(
    server: FakeEvalsServer, *, key: str = CANARY_KEY, auth: AuthProvider | None = None, **kw: Any
) -> ClientSettings:
    header: Literal["bearer", "api-key"] = "bearer" if server.flavor == "openai" else "api-key"
    kw.setdefault("retry", FAST_RETRY)
    kw.setdefault("read_timeout", 5.0)
    return ClientSettings.build(
        flavor=server.flavor, base_url=server.base_url, auth=auth or ApiKeyAuth(key, header=header), **kw
    )


@pytest.fixture(params=["openai", "azure"])
def server(request: pytest.FixtureRequest) -> Iterator[FakeEvalsServer]:
    with FakeEvalsServer(flavor=request.param, api_key=CANARY_KEY) as srv:
        yield srv


@pytest.fixture(scope="module")
def loop_thread() -> Iterator[LoopThread]:
    runner = LoopThread()
    yield runner
    runner.close()


class ClientFactory:
    def __init__(self, transport: str, runner: LoopThread) -> None:
        self.transport = transport
        self.runner = runner
        self._open: list[Any] = []

    def __call__(self, settings: ClientSettings) -> Any:
        if self.transport == "sync":
            client = EvalsClient(settings)
            self._open.append(client)
            return client
        aclient = AsyncEvalsClient(settings)
        self._open.append(aclient)
        return SyncView(aclient, self.runner)

    def close(self) -> None:
        for client in self._open:
            if isinstance(client, EvalsClient):
                client.close()
            else:
                self.runner.run(client.close())


@pytest.fixture(params=["sync", "async"])
def make_client(request: pytest.FixtureRequest, loop_thread: LoopThread) -> Iterator[ClientFactory]:
    factory = ClientFactory(request.param, loop_thread)
    yield factory
    factory.close()


@pytest.fixture
def client(server: FakeEvalsServer, make_client: ClientFactory) -> Any:
    return make_client(make_settings(server))


@pytest.fixture
def eval_id(server: FakeEvalsServer) -> str:
    return str(server.add_eval(name="quality", testing_criteria=CRITERIA)["id"])

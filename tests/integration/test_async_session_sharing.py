"""Many async clients in one loop share one aiohttp session per endpoint, and it is closed after the last."""

from __future__ import annotations

import asyncio

from airflow_provider_aoai_evals.api.client import AsyncEvalsClient, shared_session_count
from airflow_provider_aoai_evals.testing import FakeEvalsServer

from .conftest import CANARY_KEY, make_settings


def test_thousand_clients_one_session() -> None:
    with FakeEvalsServer(api_key=CANARY_KEY) as server, FakeEvalsServer(api_key=CANARY_KEY) as other:
        eval_id = server.add_eval(name="e")["id"]
        other_eval = other.add_eval(name="e")["id"]

        async def main() -> None:
            settings = make_settings(server)
            clients = [AsyncEvalsClient(settings) for _ in range(1000)]
            for client in clients:
                await client.__aenter__()
            await asyncio.gather(*(c.get_eval(eval_id) for c in clients))
            assert shared_session_count() == 1
            sessions = {id(c._session) for c in clients}
            assert len(sessions) == 1

            async with AsyncEvalsClient(make_settings(other)) as second:  # another endpoint, another pool
                await second.get_eval(other_eval)
                assert shared_session_count() == 2
            assert shared_session_count() == 1

            for client in clients[:-1]:
                await client.close()
            assert shared_session_count() == 1  # one user left
            await clients[-1].close()
            assert shared_session_count() == 0

            # A client used without `async with` opens the shared session on first use.
            late = AsyncEvalsClient(settings)
            await late.get_eval(eval_id)
            assert shared_session_count() == 1
            await late.close()
            assert shared_session_count() == 0

        asyncio.run(main())
        assert server.count("GET") == 1001

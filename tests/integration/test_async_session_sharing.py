"""Many async clients in one loop share one aiohttp session per endpoint, and it is closed after the last."""

from __future__ import annotations

import asyncio

import pytest

from airflow_provider_aoai_evals.api.client import AsyncEvalsClient, shared_session_count
from airflow_provider_aoai_evals.api.errors import EvalsConfigError
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


def test_shared_client_per_loop_and_equal_settings() -> None:
    """Settings read again from the same connection find the client already shared for them; the last
    ``async with`` to leave closes it, and the next user gets a fresh one."""
    with FakeEvalsServer(api_key=CANARY_KEY) as server:
        eval_id = server.add_eval(name="e")["id"]
        run_id = server.add_run(eval_id)["id"]

        async def main() -> None:
            first, again = make_settings(server), make_settings(server)
            assert first is not again and first == again and hash(first) == hash(again)
            client = AsyncEvalsClient.shared(first)
            assert AsyncEvalsClient.shared(again) is client
            other_key = make_settings(server, key="sk-another-key")
            assert AsyncEvalsClient.shared(other_key) is not client

            async with client as a, AsyncEvalsClient.shared(again) as b:
                assert a is b is client
                polls = [client.run_poll(eval_id, run_id) for _ in range(3)]
                runs = await asyncio.gather(*(poll(deadline=None) for poll in polls))
                assert {run.id for run in runs} == {run_id}
            # Both left: unregistered and its session closed.
            assert shared_session_count() == 0
            fresh = AsyncEvalsClient.shared(first)
            assert fresh is not client
            async with fresh:
                assert (await fresh.run_poll(eval_id, run_id)(deadline=None)).id == run_id

        asyncio.run(main())
        assert server.count("GET") == 4


def test_run_poll_rejects_a_malformed_id_before_any_request() -> None:
    with FakeEvalsServer(api_key=CANARY_KEY) as server:

        async def main() -> None:
            async with AsyncEvalsClient.shared(make_settings(server)) as client:
                with pytest.raises(EvalsConfigError, match="run_id"):
                    client.run_poll("eval_1", "../evalrun_1")

        asyncio.run(main())
        assert server.count("GET") == 0


def test_reset_forgets_every_shared_thing_as_a_new_process_would() -> None:
    from airflow_provider_aoai_evals.api import shared_state

    with FakeEvalsServer(api_key=CANARY_KEY) as server:
        settings = make_settings(server)
        eval_id = server.add_eval(name="e")["id"]

        async def main() -> None:
            before = AsyncEvalsClient.shared(settings)
            async with before:
                assert shared_session_count() == 1
                shared_state.ENTRA_AUTH[("tenant", "client")] = object()
                shared_state.CONNECTION_READS["aoai_evals_default"] = object()
                shared_state.reset()
                assert shared_session_count() == 0
                assert not shared_state.ENTRA_AUTH and not shared_state.CONNECTION_READS
                after = AsyncEvalsClient.shared(settings)
                assert after is not before
                assert AsyncEvalsClient.shared(settings) is after
                async with after:
                    assert shared_session_count() == 1
                    session = before._session
                    assert session is not None
                    await before.__aexit__(None, None, None)  # the forgotten session is closed by its user
                    assert session.closed
                    assert shared_session_count() == 1  # and the new pool keeps its own user
                    await after.get_eval(eval_id)
            assert shared_session_count() == 0

        asyncio.run(main())

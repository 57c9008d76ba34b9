"""Microsoft Entra ID tokens: cached, refreshed before expiry, sync and async, with an expiring double.

Microsoft's login service cannot be reached here, so a credential double stands in for azure-identity;
everything after the token (headers, the server accepting or refusing it) is real.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass
from typing import Any

import pytest

from airflow_provider_aoai_evals.api.auth import DEFAULT_ENTRA_SCOPE, EntraTokenAuth
from airflow_provider_aoai_evals.api.client import AsyncEvalsClient, EvalsClient
from airflow_provider_aoai_evals.api.errors import EvalsAuthenticationError, EvalsConfigError
from airflow_provider_aoai_evals.api.settings import ClientSettings
from airflow_provider_aoai_evals.testing import FakeEvalsServer

from .conftest import CANARY_KEY


@dataclass
class Token:
    token: str
    expires_on: int


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class ExpiringCredential:
    """Issues token-1, token-2, ... each valid for ``lifetime`` seconds of the shared fake clock."""

    def __init__(self, server: FakeEvalsServer, clock: Clock, lifetime: int = 3600) -> None:
        self.server, self.clock, self.lifetime = server, clock, lifetime
        self.counter = itertools.count(1)
        self.scopes: list[tuple[str, ...]] = []

    def issue(self, *scopes: str) -> Token:
        self.scopes.append(scopes)
        token = f"entra-token-{next(self.counter)}"
        self.server.accepted_tokens.clear()  # an expired token is refused from now on
        self.server.accepted_tokens.add(token)
        return Token(token, int(self.clock() + self.lifetime))

    def get_token(self, *scopes: str, **_: Any) -> Token:
        return self.issue(*scopes)


class AsyncExpiringCredential(ExpiringCredential):
    closed = False

    async def get_token(self, *scopes: str, **_: Any) -> Token:  # type: ignore[override]
        await asyncio.sleep(0.01)  # a real fetch yields to the loop; concurrent callers must still share it
        return self.issue(*scopes)

    async def close(self) -> None:
        self.closed = True


@pytest.fixture
def azure() -> Any:
    with FakeEvalsServer(flavor="azure", api_key=CANARY_KEY) as srv:
        yield srv


def settings_for(server: FakeEvalsServer, auth: EntraTokenAuth) -> ClientSettings:
    return ClientSettings.build(flavor="azure", base_url=server.base_url, auth=auth)


def test_sync_token_is_cached_and_refreshed_before_expiry(azure: FakeEvalsServer) -> None:
    clock = Clock()
    cred = ExpiringCredential(azure, clock)
    auth = EntraTokenAuth(sync_credential=lambda: cred, clock=clock, refresh_margin=300)
    eval_id = azure.add_eval(name="e")["id"]
    with EvalsClient(settings_for(azure, auth)) as client:
        for _ in range(5):
            client.get_eval(eval_id)
        assert auth.fetch_count == 1 and cred.scopes == [(DEFAULT_ENTRA_SCOPE,)]

        clock.now += 3600 - 301  # not yet inside the refresh margin
        client.get_eval(eval_id)
        assert auth.fetch_count == 1

        clock.now += 2  # inside the margin: refresh before the server would refuse it
        client.get_eval(eval_id)
        assert auth.fetch_count == 2
        assert azure.count("GET") == 7  # every call succeeded first time with a valid token


def test_stale_token_is_refused_by_the_server(azure: FakeEvalsServer) -> None:
    """The check above is meaningful: a client that kept the old token would get 401."""
    clock = Clock()
    cred = ExpiringCredential(azure, clock)
    auth = EntraTokenAuth(sync_credential=lambda: cred, clock=clock)
    eval_id = azure.add_eval(name="e")["id"]
    with EvalsClient(settings_for(azure, auth)) as client:
        client.get_eval(eval_id)
        cred.issue(DEFAULT_ENTRA_SCOPE)  # the service rotates; our cache still holds token-1
        with pytest.raises(EvalsAuthenticationError):
            client.get_eval(eval_id)


def test_async_token_cached_shared_and_refreshed(azure: FakeEvalsServer) -> None:
    clock = Clock()
    cred = AsyncExpiringCredential(azure, clock, lifetime=600)
    auth = EntraTokenAuth(async_credential=lambda: cred, clock=clock, refresh_margin=60)
    eval_id = azure.add_eval(name="e")["id"]

    async def main() -> None:
        async with AsyncEvalsClient(settings_for(azure, auth)) as client:
            await asyncio.gather(*(client.get_eval(eval_id) for _ in range(50)))
            assert auth.fetch_count == 1  # 50 concurrent callers, one token fetch
            clock.now += 600 - 59
            await asyncio.gather(*(client.get_eval(eval_id) for _ in range(20)))
            assert auth.fetch_count == 2
        await auth.aclose()
        assert cred.closed

    asyncio.run(main())
    assert azure.count("GET") == 70


def test_async_falls_back_to_sync_credential_off_the_loop(azure: FakeEvalsServer) -> None:
    clock = Clock()
    cred = ExpiringCredential(azure, clock)
    auth = EntraTokenAuth(sync_credential=lambda: cred, clock=clock)
    eval_id = azure.add_eval(name="e")["id"]

    async def main() -> None:
        async with AsyncEvalsClient(settings_for(azure, auth)) as client:
            await client.get_eval(eval_id)

    asyncio.run(main())
    assert auth.fetch_count == 1


def test_entra_settings_are_checked() -> None:
    with pytest.raises(EvalsConfigError) as info:
        EntraTokenAuth(scope="cognitiveservices")
    assert info.value.parameter == "entra_scope"
    with pytest.raises(EvalsConfigError) as info:
        EntraTokenAuth()
    assert info.value.parameter == "auth_method"
    assert "secret" not in repr(EntraTokenAuth(sync_credential=lambda: None))  # type: ignore[arg-type,return-value]

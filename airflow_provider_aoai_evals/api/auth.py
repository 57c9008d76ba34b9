"""Credentials that produce request headers: an API key, or a Microsoft Entra ID token that is cached.

Both transports ask an auth object for headers per request and never store them elsewhere, so a secret
lives in exactly one object whose ``repr`` hides it. Entra ID tokens are cached and refreshed a margin
before they expire: thousands of triggers sharing one credential must not each fetch a token per poll.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import SecretStr

from airflow_provider_aoai_evals.api.defaults import DEFAULT_ENTRA_SCOPE
from airflow_provider_aoai_evals.api.errors import EvalsAuthenticationError, EvalsConfigError


@runtime_checkable
class AuthProvider(Protocol):
    """What a transport needs from a credential: the headers to send, sync or async."""

    def headers(self) -> dict[str, str]: ...

    async def aheaders(self) -> dict[str, str]: ...


class ApiKeyAuth:
    """A static key, sent as ``Authorization: Bearer`` (OpenAI, and accepted by Azure) or ``api-key`` (Azure)."""

    def __init__(self, api_key: str | SecretStr, *, header: Literal["bearer", "api-key"] = "bearer") -> None:
        secret = api_key if isinstance(api_key, SecretStr) else SecretStr(api_key or "")
        if not secret.get_secret_value().strip():
            raise EvalsConfigError(
                "api_key", "is missing: put the API key in the connection's password field"
            )
        if any(ch.isspace() for ch in secret.get_secret_value()):
            raise EvalsConfigError("api_key", "must not contain whitespace (check for a pasted newline)")
        self._key = secret
        self.header = header

    def headers(self) -> dict[str, str]:
        key = self._key.get_secret_value()
        if self.header == "api-key":
            return {"api-key": key}
        return {"Authorization": f"Bearer {key}"}

    async def aheaders(self) -> dict[str, str]:
        return self.headers()

    def __repr__(self) -> str:
        return f"ApiKeyAuth(header={self.header!r}, api_key='**********')"

    # Equal by value, so that settings read again from the same connection equal the first ones and
    # find the client already shared for them (AsyncEvalsClient.shared).
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ApiKeyAuth):
            return NotImplemented
        return self.header == other.header and self._key == other._key

    def __hash__(self) -> int:
        return hash((self.header, self._key))


class AccessTokenLike(Protocol):
    token: str
    expires_on: int


class SyncTokenCredential(Protocol):
    """The part of ``azure.core.credentials.TokenCredential`` we use."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessTokenLike: ...


class AsyncTokenCredential(Protocol):
    """The part of ``azure.core.credentials_async.AsyncTokenCredential`` we use."""

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessTokenLike: ...


class EntraTokenAuth:
    """Bearer tokens from Microsoft Entra ID, cached until ``refresh_margin`` seconds before they expire.

    The credentials are built lazily by factories, because the sync and async azure-identity credentials
    are different objects and a worker needs only one of them.
    """

    def __init__(
        self,
        *,
        sync_credential: Callable[[], SyncTokenCredential] | None = None,
        async_credential: Callable[[], AsyncTokenCredential] | None = None,
        scope: str = DEFAULT_ENTRA_SCOPE,
        refresh_margin: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not scope or not scope.startswith("https://"):
            raise EvalsConfigError(
                "entra_scope", f"{scope!r} must be an https scope such as {DEFAULT_ENTRA_SCOPE}"
            )
        if sync_credential is None and async_credential is None:
            raise EvalsConfigError("auth_method", "entra_id needs a credential (install the 'azure' extra)")
        self.scope = scope
        self.refresh_margin = refresh_margin
        self._sync_factory = sync_credential
        self._async_factory = async_credential
        self._sync_cred: SyncTokenCredential | None = None
        self._async_creds: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncTokenCredential] = (
            weakref.WeakKeyDictionary()
        )
        self._async_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_on: float = 0.0
        self._clock = clock
        #: How many tokens were fetched: lets tests (and curious users) see the cache work.
        self.fetch_count = 0

    def _fresh(self) -> bool:
        return self._token is not None and self._clock() < self._expires_on - self.refresh_margin

    def _store(self, token: AccessTokenLike) -> str:
        if not token.token:
            raise EvalsAuthenticationError("Microsoft Entra ID returned an empty token")
        self._token = token.token
        self._expires_on = float(token.expires_on)
        self.fetch_count += 1
        return token.token

    def token(self) -> str:
        with self._lock:
            if self._fresh():
                return self._token  # type: ignore[return-value]
            if self._sync_factory is None:
                raise EvalsConfigError("auth_method", "no synchronous Entra ID credential is configured")
            if self._sync_cred is None:
                self._sync_cred = self._sync_factory()
            return self._store(self._sync_cred.get_token(self.scope))

    async def atoken(self) -> str:
        if self._fresh():
            return self._token  # type: ignore[return-value]
        loop = asyncio.get_running_loop()
        lock = self._async_locks.setdefault(loop, asyncio.Lock())
        async with lock:  # one fetch per loop, however many triggers find the token stale at once
            if self._fresh():
                return self._token  # type: ignore[return-value]
            if self._async_factory is None:
                # No async credential: fetch with the sync one off the loop.
                return await asyncio.to_thread(self.token)
            cred = self._async_creds.get(loop)
            if cred is None:
                cred = self._async_factory()
                self._async_creds[loop] = cred
            return self._store(await cred.get_token(self.scope))

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}

    async def aheaders(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {await self.atoken()}"}

    async def aclose(self) -> None:
        """Close the async credentials' own HTTP sessions (azure-identity's aio credentials hold one)."""
        creds = list(self._async_creds.values())
        self._async_creds.clear()
        for cred in creds:
            close: Callable[[], Awaitable[None]] | None = getattr(cred, "close", None)
            if close is not None:
                await close()

    def __repr__(self) -> str:
        return f"EntraTokenAuth(scope={self.scope!r})"

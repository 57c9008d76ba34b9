"""Helpers shared by test modules that run Airflow code against FakeEvalsServer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_aoai_evals.testing import FakeEvalsServer

if TYPE_CHECKING:
    from airflow.triggers.base import BaseTrigger


def connection_json(server: FakeEvalsServer, **extra: Any) -> str:
    """An ``AIRFLOW_CONN_*`` JSON connection to ``server`` (its flavor, its key)."""
    conn: dict[str, Any] = {"conn_type": "aoai_evals", "host": server.base_url, "password": server.api_key}
    if server.flavor != "openai" or extra:
        conn["extra"] = {"flavor": server.flavor, **extra}
    return json.dumps(conn)


@contextmanager
def served_as_default_connection(
    monkeypatch: pytest.MonkeyPatch, api_key: str, **server_kwargs: Any
) -> Iterator[FakeEvalsServer]:
    """A running FakeEvalsServer that ``aoai_evals_default`` points at for the test's duration."""
    with FakeEvalsServer(api_key=api_key, **server_kwargs) as server:
        monkeypatch.setenv("AIRFLOW_CONN_AOAI_EVALS_DEFAULT", connection_json(server))
        yield server


def one_event_each(*triggers: BaseTrigger) -> list[dict[str, Any]]:
    """Run triggers together in one event loop, as a triggerer does; each must yield exactly one event."""

    async def one(trigger: BaseTrigger) -> dict[str, Any]:
        payloads: list[dict[str, Any]] = [event.payload async for event in trigger.run()]
        [payload] = payloads
        return payload

    async def together() -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(one(t) for t in triggers)))

    return asyncio.run(together())


def login(app: Any, username: str) -> str:
    """A bearer token for ``username`` from the simple auth manager of ``app`` (Airflow's core API app),
    logged in with the password Airflow generated for it, as the UI's login form does."""
    import os
    from pathlib import Path

    from fastapi.testclient import TestClient

    passwords = Path(os.environ["AIRFLOW_HOME"], "simple_auth_manager_passwords.json.generated")
    with TestClient(app) as client:
        answer = client.post(
            "/auth/token",
            json={"username": username, "password": json.loads(passwords.read_text())[username]},
        )
    assert answer.status_code == 201, answer.text
    token = answer.json()["access_token"]
    assert isinstance(token, str)
    return token

"""Fixtures for testing the fake itself with plain HTTP clients (never the provider's own api client)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from airflow_provider_aoai_evals.testing import FakeEvalsServer
from tests.testing.fake_helpers import API_KEY, Api

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture(params=["openai", "azure"])
def server(request: pytest.FixtureRequest) -> Iterator[FakeEvalsServer]:
    with FakeEvalsServer(flavor=request.param, api_key=API_KEY) as fake:
        yield fake


@pytest.fixture
def openai_server() -> Iterator[FakeEvalsServer]:
    with FakeEvalsServer(flavor="openai", api_key=API_KEY) as fake:
        yield fake


@pytest.fixture
def azure_server() -> Iterator[FakeEvalsServer]:
    with FakeEvalsServer(flavor="azure", api_key=API_KEY) as fake:
        yield fake


@pytest.fixture
def api(server: FakeEvalsServer) -> Api:
    return Api(server)

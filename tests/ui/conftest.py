"""The real core API app (with the plugins Airflow loads, so ours is mounted at /aoai-evals) and the real
simple auth manager, with an admin and a viewer (viewers may read DAGs but not connections)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import login

HERE = Path(__file__).resolve().parent
# Users of the simple auth manager, read when the app is created (below, after this import).
os.environ["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] = "admin:admin,viewer:viewer"
# dag.test() on Airflow 3.3 runs only DAGs of a bundle: add ours to whatever bundles other conftests declare.
_bundles = json.loads(os.environ.get("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST") or "[]")
if not any(b.get("name") == "provider_ui_test_dags" for b in _bundles):
    _bundles.append(
        {
            "name": "provider_ui_test_dags",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(HERE / "dag_files"), "refresh_interval": 0},
        }
    )
os.environ["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = json.dumps(_bundles)

KEY = "sk-ui-secret-key-0123456789"
CONN_ID = "aoai_evals_default"


@pytest.fixture(scope="session")
def tokens(core_app: Any) -> dict[str, str]:
    return {name: login(core_app, name) for name in ("admin", "viewer")}


def _client(app: Any, token: str | None) -> Any:
    from fastapi.testclient import TestClient

    client = TestClient(app, follow_redirects=False)
    if token:
        client.headers["Authorization"] = f"Bearer {token}"
    return client


@pytest.fixture
def admin(core_app: Any, tokens: dict[str, str]) -> Any:
    return _client(core_app, tokens["admin"])


@pytest.fixture
def viewer(core_app: Any, tokens: dict[str, str]) -> Any:
    return _client(core_app, tokens["viewer"])


@pytest.fixture
def anonymous(core_app: Any) -> Any:
    return _client(core_app, None)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from airflow_provider_aoai_evals.testing import FakeEvalsServer
    from airflow_provider_aoai_evals.ui import evals_data

    evals_data.CACHE.clear()
    with FakeEvalsServer(flavor="openai", api_key=KEY) as srv:
        conn = {"conn_type": "aoai_evals", "host": srv.base_url, "password": KEY}
        monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(conn))
        monkeypatch.setenv("AIRFLOW__AOAI_EVALS__UI_CACHE_TTL_SECONDS", "60")
        yield srv
    evals_data.CACHE.clear()

"""A loopback fake of the OpenAI / Azure OpenAI Evals API for tests, including users' own DAG tests.

It imports nothing from Airflow (only aiohttp), so it can run anywhere the client can. See docs/testing.md.
"""

from __future__ import annotations

from airflow_provider_aoai_evals.testing.context import RequestRecord
from airflow_provider_aoai_evals.testing.faults import FAULT_KINDS, Fault
from airflow_provider_aoai_evals.testing.run_script import RunScript
from airflow_provider_aoai_evals.testing.server import FakeEvalsServer

__all__ = ["FAULT_KINDS", "FakeEvalsServer", "Fault", "RequestRecord", "RunScript"]

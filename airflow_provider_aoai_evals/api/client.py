"""The two clients: ``EvalsClient`` (requests, blocking) and ``AsyncEvalsClient`` (aiohttp, for triggers).

They are thin transports over what is written once: the requests and their parsing (``operations``,
``routes``), the answer and the attempt's bounds (``wire``), the retry policy (``retry``) and the flows of
several requests (``flows``). See docs/architecture.md for where each concept lives.
"""

from __future__ import annotations

from airflow_provider_aoai_evals.api.async_client import AsyncEvalsClient, RunPoll, shared_session_count
from airflow_provider_aoai_evals.api.sync_client import EvalsClient
from airflow_provider_aoai_evals.api.wire import DEFAULT_PAGE_SIZE

__all__ = ["DEFAULT_PAGE_SIZE", "AsyncEvalsClient", "EvalsClient", "RunPoll", "shared_session_count"]

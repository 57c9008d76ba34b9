"""The fast path for chains of output-item pages: GETs over ``lean_http`` rather than ``requests``.

Exports and comparisons read every page of a run, one after the other (each cursor is in the page
before), so the client's CPU per page adds to the time of the whole chain; ``lean_http`` spends a fraction
of what ``requests`` does per large page (docs/benchmarks.md). It covers only what it can do as well as
``requests``: a plain GET, no proxy, verified TLS. Anything else goes through the client's ``requests``
transport, which ``EvalsClient`` hands in as ``fallback``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

import requests

from airflow_provider_aoai_evals.api.operations import Call
from airflow_provider_aoai_evals.api.settings import ClientSettings
from airflow_provider_aoai_evals.api.wire import attempt_timeout, read_answer
from airflow_provider_aoai_evals.export.lean_http import LeanConnection

R = TypeVar("R")


class LeanPages:
    """One client's page GETs: one keep-alive connection per thread, all closed with the client."""

    def __init__(
        self,
        settings: ClientSettings,
        session: requests.Session,
        verify: bool | str,
        fallback: Callable[[Call[Any], float | None], Any],
    ) -> None:
        self._settings = settings
        self._session = session
        self._verify = verify
        self._fallback = fallback
        self._root_path = urlsplit(settings.api_root).path
        self._local = threading.local()
        #: Every thread's connection, to close them all with the client.
        self.connections: list[LeanConnection] = []
        self._lock = threading.Lock()

    def send(self, call: Call[R], deadline: float | None) -> R:
        """One attempt of ``call``, over ``lean_http`` when it can carry it, else through the fallback."""
        req = call.request
        proxied = any(self._session.proxies.values())
        if req.method != "GET" or call.body is not None or proxied or self._verify is False:
            fallen: R = self._fallback(call, deadline)
            return fallen
        target = self._root_path + req.path + (f"?{urlencode(req.query)}" if req.query else "")
        headers = {
            k: v if isinstance(v, str) else v.decode("latin-1") for k, v in self._session.headers.items()
        }
        headers.update(req.headers)
        auth_headers = self._settings.auth.headers()
        headers.update(auth_headers)
        status, resp_headers, body = self._connection().get(
            target, headers, timeout=attempt_timeout(self._settings, deadline), path=req.path
        )
        return read_answer(call, status, resp_headers, body, auth_headers)

    def _connection(self) -> LeanConnection:
        conn: LeanConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = LeanConnection(self._settings.api_root, verify=self._verify)
            with self._lock:
                self.connections.append(conn)
        return conn

    def close(self) -> None:
        with self._lock:
            for conn in self.connections:
                conn.close()
            self.connections.clear()
        self._local = threading.local()

"""FakeEvalsServer: the public, stable facade over the fake's state, faults and aiohttp app.

The server runs its own event loop in a daemon thread so synchronous tests (and Airflow's sync operators)
can use it without an asyncio fixture, and async clients in the test's own loop talk to it over real
sockets exactly as they would to the service.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import threading
from typing import TYPE_CHECKING, Any

from aiohttp import web

from airflow_provider_aoai_evals.testing.app import build_app
from airflow_provider_aoai_evals.testing.context import RequestRecord, ServerContext, reset_context
from airflow_provider_aoai_evals.testing.run_script import RunScript
from airflow_provider_aoai_evals.testing.seeds import eval_body, run_body
from airflow_provider_aoai_evals.testing.state import FakeState

if TYPE_CHECKING:
    from types import TracebackType

    from airflow_provider_aoai_evals.testing.faults import Fault

__all__ = ["FakeEvalsServer"]


class FakeEvalsServer:
    """A loopback HTTP fake of the OpenAI / Azure OpenAI Evals API.

    Use as a context manager (``with FakeEvalsServer() as server:``) or call ``start()``/``stop()``.
    ``port=0`` picks a free port; read the real one from ``server.port`` or ``server.url``.
    """

    def __init__(
        self,
        flavor: str = "openai",
        api_key: str = "sk-test",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        default_script: RunScript | None = None,
        request_log_limit: int = 10_000,
        backlog: int = 4096,
        ssl_context: ssl.SSLContext | None = None,
        keepalive_timeout: float = 75.0,
    ) -> None:
        """``ssl_context`` serves https (to test certificate checks); ``keepalive_timeout`` is how long an
        idle connection stays open (short, to test clients reusing connections the server has closed)."""
        self.flavor = flavor
        self.api_key = api_key
        self.host = host
        self._requested_port = port
        self._backlog = backlog
        self._ssl_context = ssl_context
        self._keepalive_timeout = keepalive_timeout
        self._state = FakeState(flavor=flavor)
        if default_script is not None:
            self._state.default_script = default_script
        self._ctx = ServerContext(
            flavor=flavor, api_key=api_key, state=self._state, request_log_limit=request_log_limit
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._started = threading.Event()
        self._startup_errors: list[BaseException] = []

    # ---- lifecycle ------------------------------------------------------------------------------
    def start(self) -> FakeEvalsServer:
        """Bind the socket, start the loop thread, and return once the server accepts connections."""
        if self._thread is not None:
            raise RuntimeError("FakeEvalsServer is already running")
        sock = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._requested_port))
        self._port = sock.getsockname()[1]
        self._started.clear()
        self._startup_errors.clear()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._serve, args=(sock,), name=f"FakeEvalsServer:{self._port}", daemon=True
        )
        self._thread.start()
        self._started.wait(30)
        if self._startup_errors:
            self._thread.join(5)
            self._thread = None
            raise RuntimeError("FakeEvalsServer failed to start") from self._startup_errors[0]
        return self

    def _serve(self, sock: socket.socket) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            # access_log=None: logging every request would dominate the cost of a 1,000 req/s benchmark.
            runner = web.AppRunner(
                build_app(self._ctx),
                access_log=None,
                handle_signals=False,
                keepalive_timeout=self._keepalive_timeout,
                shutdown_timeout=0.5,
            )
            loop.run_until_complete(runner.setup())
            site = web.SockSite(runner, sock, backlog=self._backlog, ssl_context=self._ssl_context)
            loop.run_until_complete(site.start())
            self._runner = runner
        except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
            self._startup_errors.append(exc)
            self._started.set()
            sock.close()
            loop.close()
            return
        self._started.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            # Handlers still sleeping in a `slow` fault would otherwise be destroyed pending (and logged).
            pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop(self) -> None:
        """Stop serving, close every connection, and join the thread (idempotent)."""
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
        self._thread = None
        self._loop = None
        self._runner = None

    def __enter__(self) -> FakeEvalsServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ---- addresses ------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeEvalsServer is not started")
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self._ssl_context else 'http'}://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """What a production connection's base would be: OpenAI's ``/v1`` root, or Azure's resource endpoint."""
        return self.url + "/v1" if self.flavor == "openai" else self.url

    @property
    def api_root(self) -> str:
        return self.url + self._ctx.api_root

    @property
    def accepted_tokens(self) -> set[str]:
        """Extra bearer tokens accepted by the azure flavor (add fake Entra ID tokens here)."""
        return self._ctx.accepted_tokens

    # ---- data -----------------------------------------------------------------------------------
    @property
    def files(self) -> list[dict[str, Any]]:
        """Files uploaded through the Files API (metadata only), oldest first."""
        with self._state.lock:
            return [dict(f) for f in self._state.files.values()]

    def add_eval(
        self,
        name: str | None = None,
        testing_criteria: list[dict[str, Any]] | None = None,
        data_source_config: dict[str, Any] | None = None,
        metadata: dict[str, str] | None = None,
        *,
        eval_id: str | None = None,
    ) -> dict[str, Any]:
        """Create an eval directly (defaults: a custom data source and one string_check grader).

        ``eval_id`` gives it the id a DAG under test already names; by default a fresh ``eval_<hex>``.
        """
        return self._state.create_eval(
            eval_body(name, testing_criteria, data_source_config, metadata), eval_id
        )

    def add_run(
        self,
        eval_id: str,
        script: RunScript | None = None,
        *,
        name: str | None = None,
        metadata: dict[str, str] | None = None,
        data_source: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Create a run directly, following ``script`` (default: the server's default script)."""
        return self._state.create_run(
            eval_id, run_body(name, metadata, data_source), script or self._state.default_script
        )

    @property
    def default_script(self) -> RunScript:
        """Script for runs created through the API when no ``script_next_runs`` script is queued."""
        return self._state.default_script

    @default_script.setter
    def default_script(self, script: RunScript) -> None:
        with self._state.lock:
            self._state.default_script = script

    def script_next_runs(self, script: RunScript, count: int = 1) -> None:
        """Make the next ``count`` runs created through the API follow ``script`` (FIFO after earlier ones)."""
        with self._state.lock:
            self._state.next_scripts.extend([script] * count)

    def set_run_status(self, run_id: str, status: str) -> dict[str, Any]:
        """Force a run's status now (any string); it stays there until forced again."""
        return self._state.set_run_status(run_id, status)

    def finish_run(self, run_id: str, status: str = "completed") -> dict[str, Any]:
        """Jump a run to a terminal status so a test need not sleep through the script."""
        return self._state.set_run_status(run_id, status)

    def get_run(self, run_id: str) -> dict[str, Any]:
        """The run as the API would return it now."""
        with self._state.lock:
            return self._state.find_run(run_id).to_api(self._state.clock())

    def disable_cancel_route(self, route: str) -> None:
        """Switch off ``"plain"`` (POST .../runs/{id} -> 405) or ``"suffix"`` (POST .../cancel -> 404)."""
        if route not in self._ctx.cancel_routes:
            raise ValueError("route must be 'plain' or 'suffix'")
        self._ctx.cancel_routes[route] = False

    def enable_cancel_route(self, route: str) -> None:
        if route not in self._ctx.cancel_routes:
            raise ValueError("route must be 'plain' or 'suffix'")
        self._ctx.cancel_routes[route] = True

    # ---- faults ---------------------------------------------------------------------------------
    def inject(self, fault: Fault) -> Fault:
        """Queue a fault; it applies to the next ``fault.count`` matching API requests."""
        return self._ctx.faults.add(fault)

    def clear_faults(self) -> None:
        self._ctx.faults.clear()

    @property
    def pending_faults(self) -> list[Fault]:
        return self._ctx.faults.pending()

    # ---- request log ----------------------------------------------------------------------------
    @property
    def requests(self) -> list[RequestRecord]:
        """API requests received so far (oldest first; control routes are not logged)."""
        return self._ctx.records()

    def count(self, method: str | None = None, path_regex: str | None = None) -> int:
        """How many logged API requests match ``method`` and ``path_regex`` (searched in the API path)."""
        pattern = re.compile(path_regex) if path_regex is not None else None
        return sum(
            1
            for r in self._ctx.records()
            if (method is None or r.method == method.upper())
            and (pattern is None or pattern.search(r.api_path))
        )

    def reset(self) -> None:
        """Forget evals, runs, scripts, faults and the request log; re-enable both cancel routes."""
        reset_context(self._ctx)

    def __repr__(self) -> str:
        where = self.url if self._port is not None else "not started"
        return f"FakeEvalsServer(flavor={self.flavor!r}, {where})"

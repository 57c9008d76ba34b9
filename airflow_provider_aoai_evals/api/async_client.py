"""AsyncEvalsClient: the non-blocking transport (aiohttp), for triggers.

It moves bytes, maps aiohttp's failures onto the error hierarchy, and drives the flows of ``flows``. The
triggerer runs thousands of waits in one loop, so clients and their connection pools are shared per event
loop and endpoint (``shared_state``) and reference counted: one pool instead of a session (and sockets) per
wait, and few long-lived objects per wait, since every full garbage collection, which stops the loop,
walks them all. For the same reason each endpoint has one throttle gate per loop (``throttle_gate``): every
attempt asks it first, so a throttled endpoint gets one probe instead of a retry stream per wait.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
import requests
import yarl

from airflow_provider_aoai_evals.api import flows, shared_state
from airflow_provider_aoai_evals.api.aiohttp_errors import transport_error
from airflow_provider_aoai_evals.api.errors import EvalsAPIError
from airflow_provider_aoai_evals.api.models import DeletedObject, Eval, EvalRun, OutputItem, Page
from airflow_provider_aoai_evals.api.operations import Call, Operations, matches_key
from airflow_provider_aoai_evals.api.routes import PreparedRequest
from airflow_provider_aoai_evals.api.settings import ClientSettings
from airflow_provider_aoai_evals.api.throttle_gate import THROTTLE_STATUSES, ThrottleGate
from airflow_provider_aoai_evals.api.wire import ClientBase, attempt_timeout, read_answer

if TYPE_CHECKING:
    from typing_extensions import Unpack

log = logging.getLogger(__name__)

R = TypeVar("R")

#: URLs an async client keeps parsed (a trigger's client needs one; more than this starts again).
_URL_CACHE_SIZE = 32
#: What a client holds before its first request: a gate that never closes, replaced on ``_acquire``.
_NO_GATE = ThrottleGate("", enabled=False)


def _attempt_timeout(settings: ClientSettings, deadline: float | None) -> aiohttp.ClientTimeout:
    """One attempt's bounds: ``read_timeout`` for the whole attempt (cut to the deadline), and
    ``connect_timeout`` for the socket connect within it.

    A total costs aiohttp one timer per request; its ``connect`` and ``sock_read`` bounds cost about three
    (the read one is re-armed per chunk). At thousands of polls a second their cancelled timers pile up in
    the loop's heap until it is pruned, long enough to be promoted to the oldest GC generation, which makes
    the full collections that stop the loop more frequent. Responses in the triggerer are small, so a total
    loses nothing that an inactivity bound would catch.
    """
    connect, total = attempt_timeout(settings, deadline)
    return aiohttp.ClientTimeout(total=total, sock_connect=min(connect, total))


@dataclass
class SharedSession:
    session: aiohttp.ClientSession
    #: The proxy for every request of this pool: the configured one, or the environment's, read once.
    proxy: str | None
    users: int = 0


def _proxy_for(settings: ClientSettings) -> str | None:
    """The configured proxy, else the environment's for the API root (honouring NO_PROXY), or None."""
    if settings.proxy:
        return settings.proxy
    proxies = requests.utils.get_environ_proxies(settings.api_root)
    return proxies.get(urlsplit(settings.api_root).scheme) or proxies.get("all")


def shared_session_count() -> int:
    """How many shared aiohttp sessions exist in the running loop (for tests and benchmarks)."""
    try:
        state = shared_state.peek_loop(asyncio.get_running_loop())
    except RuntimeError:
        return 0
    return len(state.sessions) if state else 0


class AsyncEvalsClient(ClientBase):
    """Non-blocking client on aiohttp for triggers. Use ``async with``: the session is shared and reference
    counted per event loop and endpoint, and closed when its last user leaves."""

    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        self.ops = Operations(settings)
        self._cancel_routes = flows.CancelRoutes(settings.flavor)
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._proxy: str | None = None
        #: This loop's gate for the endpoint, taken with the session (``shared_state.reset()`` leaves both
        #: with a client still in use, and a new client gets new ones).
        self._gate: ThrottleGate = _NO_GATE
        self._urls: dict[tuple[str, tuple[tuple[str, str], ...]], yarl.URL] = {}
        self._https = urlsplit(settings.api_root).scheme == "https"
        #: ``async with`` blocks currently inside this client; the last one out releases the session.
        self._users = 0
        #: The registry this client is shared through, if it came from ``shared()``.
        self._registry: dict[Any, Any] | None = None

    @classmethod
    def shared(cls, settings: ClientSettings) -> AsyncEvalsClient:
        """This event loop's client for ``settings`` (equal settings, not the same object), made on first use.

        Use it as ``async with``; the last block to leave closes it.
        """
        clients = shared_state.for_loop().clients
        client: AsyncEvalsClient | None = clients.get(settings)
        if client is None:
            client = clients[settings] = cls(settings)
            client._registry = clients
        return client

    def run_poll(self, eval_id: str, run_id: str) -> RunPoll:
        """``get_run`` for one run, prepared once for a wait that asks for it every poll.

        Raises EvalsConfigError for a malformed id, before any request.
        """
        call = self.ops.get_run(eval_id, run_id)
        return RunPoll(self, call, self._parse_target(call.request))

    def __repr__(self) -> str:
        return f"AsyncEvalsClient({self.settings!r})"

    def _make_session(self) -> aiohttp.ClientSession:
        ssl_ctx: ssl.SSLContext | bool = True
        if self.settings.ca_bundle:
            ssl_ctx = ssl.create_default_context(cafile=self.settings.ca_bundle)
        connector = aiohttp.TCPConnector(
            limit=self.settings.max_connections, ssl=ssl_ctx, ttl_dns_cache=300, enable_cleanup_closed=True
        )
        # trust_env off: with it, aiohttp reads ~/.netrc and scans the environment for proxies in a worker
        # thread on every request (two thread hops per poll). The proxy is read from the environment once
        # per pool instead (_proxy_for).
        session = aiohttp.ClientSession(
            connector=connector,
            headers=self.settings.default_headers(),
            trust_env=False,
            timeout=aiohttp.ClientTimeout(total=None),
            raise_for_status=False,
        )
        # aiohttp sends a GET again on its own when a kept-alive connection closes without an answer, so
        # each attempt of the policy could be two requests (6 where the policy says 3). The policy is the
        # one place that decides how often a request is tried; aiohttp has no public switch for this.
        if hasattr(session, "_retry_connection"):
            session._retry_connection = False
        return session

    async def __aenter__(self) -> AsyncEvalsClient:
        self._users += 1
        await self._acquire()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def _acquire(self) -> aiohttp.ClientSession:
        if self._session is not None and not self._session.closed:
            return self._session
        loop = asyncio.get_running_loop()
        pools = shared_state.for_loop(loop).sessions
        key = self.settings.pool_key()
        shared: SharedSession | None = pools.get(key)
        if shared is None or shared.session.closed:
            shared = pools[key] = SharedSession(self._make_session(), _proxy_for(self.settings))
        shared.users += 1
        self._session, self._loop, self._proxy = shared.session, loop, shared.proxy
        self._gate = shared_state.for_loop(loop).gates.for_settings(self.settings)
        return shared.session

    async def close(self) -> None:
        """Leave this client; the last user to leave it leaves the shared session, and the last client to
        leave that closes it."""
        if self._users > 1:
            self._users -= 1
            return
        self._users = 0
        # Unregistered before any await, so that a wait starting meanwhile builds a new client instead of
        # entering this closing one.
        if self._registry is not None and self._registry.get(self.settings) is self:
            del self._registry[self.settings]
        if self._session is None or self._loop is None:
            return
        state = shared_state.peek_loop(self._loop)
        pools = state.sessions if state else {}
        key = self.settings.pool_key()
        shared: SharedSession | None = pools.get(key)
        session, self._session = self._session, None
        if shared is None or shared.session is not session:
            # ``shared_state.reset()`` forgot this session while it was in use: nobody else holds it, and
            # the pool now under its key (if any) is another session whose users are not ours to count.
            await session.close()
            return
        shared.users -= 1
        if shared.users <= 0:
            del pools[key]
            await shared.session.close()

    # -- transport -----------------------------------------------------------------------------------------

    def _target(self, req: PreparedRequest) -> yarl.URL:
        """The request's URL with its query, parsed once per path and query: a trigger asks for the same
        URL on every poll, and parsing costs more than the rest of building the request."""
        key = (req.path, tuple(req.query.items()))
        url = self._urls.get(key)
        if url is None:
            if len(self._urls) >= _URL_CACHE_SIZE:
                self._urls.clear()
            url = self._urls[key] = self._parse_target(req)
        return url

    def _parse_target(self, req: PreparedRequest) -> yarl.URL:
        return yarl.URL(self._url(req)).with_query(req.query or None)

    async def _send(self, call: Call[R], deadline: float | None, target: yarl.URL | None = None) -> R:
        """One attempt. It waits at the endpoint's gate first (only while the gate is closed), and tells the
        gate a throttled answer, and the answer to a probe, before the answer is read."""
        session = await self._acquire()
        req = call.request
        gate = self._gate
        probe = False
        if not gate.state.is_open:
            probe = await gate.enter(deadline, self.settings.retry, req.method, req.path)
        try:
            auth_headers = await self.settings.auth.aheaders()
            headers = {**req.headers, **auth_headers}
            timeout = _attempt_timeout(self.settings, deadline)
            # Redirects are not followed: aiohttp would send an ``api-key`` header (it drops only
            # ``Authorization``) to whatever host a redirect names, and re-post a create's body there.
            async with session.request(
                req.method,
                target or self._target(req),
                json=call.body,
                headers=headers,
                timeout=timeout,
                proxy=self._proxy,
                allow_redirects=False,
            ) as resp:
                body = await resp.read()
                status, resp_headers = resp.status, resp.headers
        except BaseException as exc:
            if probe:  # no answer (or cancelled): the probe slot goes to the next waiter
                gate.lost()
            if isinstance(exc, (aiohttp.ClientError, asyncio.TimeoutError)):
                raise transport_error(exc, req, https=self._https) from None
            raise
        if probe or status in THROTTLE_STATUSES:
            gate.observe(status, resp_headers, self.settings.retry, probe=probe)
        return read_answer(call, status, resp_headers, body, auth_headers)

    async def _execute(
        self, call: Call[R], *, deadline: float | None = None, target: yarl.URL | None = None
    ) -> R:
        return await self.settings.retry.acall(
            lambda: self._send(call, deadline, target), deadline=deadline, retry_if=self._retry_if(call)
        )

    async def _drive(self, flow: flows.Flow[R]) -> R:
        """Run a flow to its end: each request sent here, each pause awaited here."""
        runner = flows.Runner(flow)
        while runner.step is not None:
            try:
                outcome = await self._take(runner.step)
            except EvalsAPIError as exc:
                runner.fail(exc)
                continue
            runner.reply(outcome)
        return runner.result  # type: ignore[return-value]

    async def _take(self, step: flows.Step) -> Any:
        if isinstance(step, flows.Pause):
            await asyncio.sleep(step.seconds)
            return None
        if step.retried:
            return await self._execute(step.call, deadline=step.deadline)
        return await self._send(step.call, step.deadline)

    async def _walk(self, walk: flows.PageWalk[Any]) -> AsyncIterator[Any]:
        call = walk.first
        while call is not None:
            page = await self._execute(call)
            call, fresh = walk.follow(page)
            if fresh:
                yield page

    # -- evals ---------------------------------------------------------------------------------------------

    async def create_eval(self, **spec: Unpack[flows.EvalSpec]) -> Eval:
        """See ``EvalsClient.create_eval``."""
        return await self._execute(self.ops.create_eval(**spec))

    def list_evals(self, **query: Unpack[flows.EvalListQuery]) -> AsyncIterator[Eval]:
        return _aitems(self._walk(flows.eval_pages(self.ops, **query)))

    async def get_eval(self, eval_id: str) -> Eval:
        return await self._execute(self.ops.get_eval(eval_id))

    async def update_eval(
        self, eval_id: str, *, name: str | None = None, metadata: Mapping[str, str] | None = None
    ) -> Eval:
        return await self._execute(self.ops.update_eval(eval_id, name=name, metadata=metadata))

    async def delete_eval(self, eval_id: str) -> DeletedObject:
        return await self._execute(self.ops.delete_eval(eval_id))

    # -- runs ----------------------------------------------------------------------------------------------

    async def create_run(self, eval_id: str, **spec: Unpack[flows.RunSpec]) -> EvalRun:
        """See ``EvalsClient.create_run``: the same de-duplication by idempotency key."""
        call = self.ops.create_run(eval_id, **spec)
        key = spec.get("idempotency_key")
        retry_if = self._retry_if(call, keyed=bool(key))
        return await self._drive(
            flows.create_run(self.ops, self.settings.retry, retry_if, eval_id, call, key)
        )

    async def find_run_by_idempotency_key(self, eval_id: str, key: str, *, since: float) -> EvalRun | None:
        return await self.find_run(eval_id, lambda run: matches_key(run, key), since=since)

    async def find_run(
        self, eval_id: str, predicate: Callable[[EvalRun], bool], *, since: float
    ) -> EvalRun | None:
        return await self._drive(flows.find_run(self.ops, eval_id, predicate, since=since))

    def list_runs(self, eval_id: str, **query: Unpack[flows.FilteredListQuery]) -> AsyncIterator[EvalRun]:
        return _aitems(self._walk(flows.run_pages(self.ops, eval_id, **query)))

    async def get_run(self, eval_id: str, run_id: str, *, deadline: float | None = None) -> EvalRun:
        return await self._execute(self.ops.get_run(eval_id, run_id), deadline=deadline)

    async def cancel_run(self, eval_id: str, run_id: str, *, deadline: float | None = None) -> EvalRun:
        return await self._drive(flows.cancel_run(self.ops, self._cancel_routes, eval_id, run_id, deadline))

    async def delete_run(self, eval_id: str, run_id: str) -> DeletedObject:
        return await self._execute(self.ops.delete_run(eval_id, run_id))

    # -- output items --------------------------------------------------------------------------------------

    def list_output_item_pages(
        self, eval_id: str, run_id: str, **query: Unpack[flows.FilteredListQuery]
    ) -> AsyncIterator[Page[OutputItem]]:
        return self._walk(flows.item_pages(self.ops, eval_id, run_id, **query))

    def list_output_items(
        self, eval_id: str, run_id: str, **query: Unpack[flows.FilteredListQuery]
    ) -> AsyncIterator[OutputItem]:
        return _aitems(self.list_output_item_pages(eval_id, run_id, **query))

    async def get_output_item(self, eval_id: str, run_id: str, output_item_id: str) -> OutputItem:
        return await self._execute(self.ops.get_output_item(eval_id, run_id, output_item_id))


async def _aitems(pages: AsyncIterator[Page[Any]]) -> AsyncIterator[Any]:
    async for page in pages:
        for item in page.data:
            yield item


class RunPoll:
    """One run's ``get_run`` with its request and parsed URL kept: what a wait holds between polls.

    A shared client cannot cache per-run requests for thousands of waits, so each wait keeps its own, and
    keeps nothing else (three small objects), since long-lived objects are what full collections walk.
    """

    __slots__ = ("_call", "_client", "_target")

    def __init__(self, client: AsyncEvalsClient, call: Call[EvalRun], target: yarl.URL) -> None:
        self._client = client
        self._call = call
        self._target = target

    async def __call__(self, *, deadline: float | None = None) -> EvalRun:
        """The run now, retried like any call; client retries never outlive ``deadline``."""
        return await self._client._execute(self._call, deadline=deadline, target=self._target)

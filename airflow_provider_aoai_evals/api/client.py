"""EvalsClient (requests) and AsyncEvalsClient (aiohttp): thin transports over the shared operations.

What a request is, how its answer is read and when it is tried again is decided in ``operations``,
``routes``, ``errors`` and ``retry``; this module only moves bytes, maps each library's network failures
onto the error hierarchy (noting whether the request may have reached the server), and walks pages.

The async client shares one aiohttp session per event loop and endpoint: a triggerer running thousands of
waits then holds one connection pool instead of a session (and sockets) per trigger.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import ssl
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, BinaryIO, TypeVar
from urllib.parse import urlencode, urlsplit

import aiohttp
import requests
import urllib3
import yarl
from pydantic import ValidationError
from requests.adapters import HTTPAdapter

from airflow_provider_aoai_evals.api.errors import (
    EvalsAPIError,
    EvalsConnectionError,
    EvalsNotFoundError,
    EvalsPermanentError,
    EvalsServerError,
    connection_failed,
    error_from_response,
    handshake_closed,
    request_id_from,
    scrub,
    secrets_in,
    timed_out,
    tls_failed,
)
from airflow_provider_aoai_evals.api.lean_http import LeanConnection
from airflow_provider_aoai_evals.api.models import DeletedObject, Eval, EvalRun, FileObject, OutputItem, Page
from airflow_provider_aoai_evals.api.operations import (
    LOOKUP_MAX_RUNS,
    Call,
    Operations,
    is_ambiguous,
    matches_key,
    retryable_without_key,
    too_old,
)
from airflow_provider_aoai_evals.api.raw_items import RawItemPage, UnexpectedShapeError
from airflow_provider_aoai_evals.api.retry import parse_retry_after
from airflow_provider_aoai_evals.api.routes import CANCEL_ROUTES, Operation, PreparedRequest
from airflow_provider_aoai_evals.api.settings import ClientSettings

log = logging.getLogger(__name__)

R = TypeVar("R")
DEFAULT_PAGE_SIZE = 100


def _result(
    call: Call[R], status: int, headers: Mapping[str, str], body: bytes, auth_headers: Mapping[str, str]
) -> R:
    """The parsed result of a 2xx answer, or the typed error for anything else.

    Models are validated straight from the bytes (pydantic's JSON parser is faster than ``json.loads``
    followed by validation, which matters for 2 KB output items by the thousand). A 2xx body that is empty
    or not JSON (a proxy page, a cut-off body) is a transient server error: reading it as an empty object
    would make an empty list of runs out of it, and a create's lookup would then post a second run. JSON of
    the wrong shape is permanent, and its error names the fields, never their values (a run's values hold
    its inline dataset). ``auth_headers`` are what the request carried, cut out of any excerpt quoted.
    """
    req = call.request
    if not 200 <= status < 300:
        raise error_from_response(
            status,
            headers,
            body,
            method=req.method,
            path=req.path,
            retry_after=parse_retry_after(headers),
            secrets=secrets_in(auth_headers),
        )
    if not body or body.isspace():  # isspace stops at the first other byte; strip would copy a page
        raise EvalsServerError(
            f"the response (HTTP {status}) had an empty body",
            status_code=status,
            request_id=request_id_from(headers),
            method=req.method,
            path=req.path,
        )
    try:
        return call.parse(body)
    except (ValidationError, json.JSONDecodeError, UnexpectedShapeError) as exc:
        invalid_json = (
            any(err.get("type") == "json_invalid" for err in exc.errors())
            if isinstance(exc, ValidationError)
            else isinstance(exc, json.JSONDecodeError)
        )
        if invalid_json:
            excerpt = scrub(body[:120].decode("utf-8", errors="replace"), secrets_in(auth_headers))
            error_class: type[EvalsAPIError] = EvalsServerError
            problem = f"was not valid JSON (a proxy page or a cut-off body?): {excerpt!r}"
        else:
            error_class = EvalsPermanentError
            problem = f"had an unexpected shape: {_shape_problem(exc)}"
        raise error_class(
            f"the response {problem}",
            status_code=status,
            request_id=request_id_from(headers),
            method=req.method,
            path=req.path,
        ) from None


def _shape_problem(exc: Exception) -> str:
    """What was wrong with valid JSON, by field location and rule, without the offending values."""
    if not isinstance(exc, ValidationError):
        return str(exc)[:200]
    problems = [
        f"{'.'.join(str(part) for part in err.get('loc', ())) or 'body'}: {err.get('msg', 'invalid')}"
        for err in exc.errors(include_input=False, include_url=False)[:3]
    ]
    more = exc.error_count() - len(problems)
    return "; ".join(problems) + (f" (and {more} more)" if more > 0 else "")


#: URLs an async client keeps parsed (a trigger's client needs one; more than this starts again).
_URL_CACHE_SIZE = 32

#: Largest single read of a response body (a page of 100 output items of 2 KB is about 200 KB).
_BODY_READ_BYTES = 1 << 20


def _attempt_timeout(settings: ClientSettings, deadline: float | None) -> tuple[float, float]:
    """Connect and read timeouts for one attempt, shortened so an attempt never outlives the deadline."""
    connect, read = settings.connect_timeout, settings.read_timeout
    if deadline is not None:
        left = max(deadline - time.time(), 0.05)
        connect, read = min(connect, left), min(read, left)
    return connect, read


def _async_attempt_timeout(settings: ClientSettings, deadline: float | None) -> aiohttp.ClientTimeout:
    """One async attempt's bounds: ``read_timeout`` for the whole attempt (cut to the deadline), and
    ``connect_timeout`` for the socket connect within it.

    A total costs aiohttp one timer per request; its ``connect`` and ``sock_read`` bounds cost about three
    (the read one is re-armed per chunk). At thousands of polls a second their cancelled timers pile up in
    the loop's heap until it is pruned, long enough to be promoted to the oldest GC generation, which makes
    the full collections that stop the loop more frequent. Responses in the triggerer are small, so a total
    loses nothing that an inactivity bound would catch.
    """
    connect, total = _attempt_timeout(settings, deadline)
    return aiohttp.ClientTimeout(total=total, sock_connect=min(connect, total))


def _items(pages: Iterator[Page[Any]]) -> Iterator[Any]:
    for page in pages:
        yield from page.data


async def _aitems(pages: AsyncIterator[Page[Any]]) -> AsyncIterator[Any]:
    async for page in pages:
        for item in page.data:
            yield item


class _CreateLookup:
    """Whether a create may have taken effect, and for how long to keep looking for its run.

    A dropped connection or timeout after sending leaves the server possibly still creating the run, so the
    lookup is polled for ``create_settle_seconds`` before a second POST. A 5xx answer means the server is
    done with the request, so one lookup settles it.
    """

    poll = 0.25

    def __init__(self, settings: ClientSettings, key: str | None) -> None:
        self.key = key
        self.pending = False
        self._settle = settings.retry.create_settle_seconds
        self._until = 0.0

    def failed(self, exc: EvalsAPIError) -> None:
        if is_ambiguous(exc):
            self.pending = True
            mid_request = isinstance(exc, EvalsConnectionError)
            self._until = time.monotonic() + (self._settle if mid_request else 0.0)

    def keep_looking(self) -> bool:
        """Another lookup is due after a pause; once the settle time is over, the run was not created."""
        if time.monotonic() < self._until:
            return True
        self.pending = False
        return False


class _Walk:
    """The cursors a page walk has followed, to stop at a page the server sends again.

    A page whose cursor was followed before is the repeat of an earlier one (a server or proxy that
    ignores ``after``): it is not handed on, so none of its items is read twice, and the walk ends there
    instead of looping for ever.
    """

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def repeated(self, cursor: str | None) -> bool:
        if cursor is None:
            return False
        if cursor in self._seen:
            log.warning(
                "The Evals API sent again a page that ends at %s (it may ignore 'after'); stopping the walk "
                "there rather than reading its items twice",
                cursor,
            )
            return True
        self._seen.add(cursor)
        return False


def _page_size(limit: int | None) -> int:
    return DEFAULT_PAGE_SIZE if limit is None else limit


class _Common:
    settings: ClientSettings
    ops: Operations

    def _retry_if(self, call: Call[Any], *, keyed: bool = False) -> Any:
        policy = self.settings.retry
        return (
            policy.is_retryable
            if call.request.idempotent or keyed
            else retryable_without_key(policy.is_retryable)
        )

    def _url(self, req: PreparedRequest) -> str:
        return self.settings.api_root + req.path

    def _cancel_routes(self) -> tuple[Operation, Operation]:
        first, second = CANCEL_ROUTES[self.settings.flavor]
        preferred = getattr(self, "_cancel_route", None)
        return (preferred, first if preferred == second else second) if preferred else (first, second)


# ------------------------------------------------------------------------------------------------------------
# Sync
# ------------------------------------------------------------------------------------------------------------


class EvalsClient(_Common):
    """Blocking client on a ``requests.Session`` (connection reuse), for operators and sensors in poke mode."""

    def __init__(self, settings: ClientSettings, *, session: requests.Session | None = None) -> None:
        self.settings = settings
        self.ops = Operations(settings)
        self._cancel_route: Operation | None = None
        self._session = session or self._new_session()
        self._verify: bool | str = True if self._session.verify is None else self._session.verify
        # Export pages only (see lean_http): one connection per thread, all closed with the client.
        self._lean = threading.local()
        self._lean_all: list[LeanConnection] = []
        self._root_path = urlsplit(settings.api_root).path
        self._lean_lock = threading.Lock()

    def _new_session(self) -> requests.Session:
        session = requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=min(self.settings.max_connections, 32))
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        # Read the environment (proxies honouring NO_PROXY, CA bundle) once here instead of on every
        # request: requests' per-call environment scan was a quarter of a get_run's CPU. netrc is never
        # wanted, since every request carries its own auth header.
        session.trust_env = False
        if self.settings.proxy:
            session.proxies = {"http": self.settings.proxy, "https": self.settings.proxy}
        else:
            session.proxies = requests.utils.get_environ_proxies(self.settings.api_root)
        env_ca = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        session.verify = self.settings.ca_bundle or env_ca or True
        session.headers.update(self.settings.default_headers())
        return session

    def __enter__(self) -> EvalsClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._session.close()
        with self._lean_lock:
            for conn in self._lean_all:
                conn.close()
            self._lean_all.clear()
        self._lean = threading.local()

    def __repr__(self) -> str:
        return f"EvalsClient({self.settings!r})"

    # -- transport -----------------------------------------------------------------------------------------

    def _send(self, call: Call[R], deadline: float | None) -> R:
        req = call.request
        auth_headers = self.settings.auth.headers()
        headers = {**req.headers, **auth_headers}
        data: Any = None
        if call.upload is not None:
            headers["Content-Type"] = call.upload.content_type
            data = call.upload.reader()
        # Prepared here and sent by the session's transport adapter itself. ``Session.request`` and
        # ``Session.send`` add what this API never uses (cookie jars, response hooks, redirects) at a cost
        # per call: measured on 200 KB pages, 600 requests per variant in 3 rounds, 0.93-1.06 ms of CPU
        # through ``Session.send`` and 0.68-0.77 ms through the adapter (export pages now use lean_http).
        # What the session would add is set on it once (default headers, proxies, TLS). A redirect is
        # therefore not followed: it fails with its status, like any unexpected answer.
        session = self._session
        prepared = requests.PreparedRequest()
        prepared.prepare(
            method=req.method,
            url=self._url(req),
            headers={**session.headers, **headers},
            params=req.query or None,
            json=call.body,
            data=data,
        )
        try:
            resp = session.get_adapter(prepared.url or "").send(
                prepared,
                stream=True,
                timeout=_attempt_timeout(self.settings, deadline),
                verify=self._verify,
                cert=session.cert,
                proxies=session.proxies,
            )
            try:
                body = _read_body(resp, deadline)
            finally:
                resp.close()  # the body was read to its end, so this returns the connection to the pool
        except (requests.exceptions.SSLError, urllib3.exceptions.SSLError) as exc:
            raise tls_failed(exc, method=req.method, path=req.path) from None
        except requests.exceptions.ConnectTimeout:
            raise timed_out(connecting=True, method=req.method, path=req.path) from None
        except (requests.exceptions.ReadTimeout, urllib3.exceptions.ReadTimeoutError, _DeadlinePassed):
            raise timed_out(connecting=False, method=req.method, path=req.path) from None
        except (
            requests.exceptions.ConnectionError,
            requests.exceptions.ChunkedEncodingError,
            urllib3.exceptions.ProtocolError,
        ) as exc:
            raise EvalsConnectionError(
                f"connection failed: {_describe(exc)}",
                request_sent=_requests_sent(exc),
                method=req.method,
                path=req.path,
            ) from None
        return _result(call, resp.status_code, resp.headers, body, auth_headers)

    def _send_lean(self, call: Call[R], deadline: float | None) -> R:
        """``_send`` for a GET on the chain of an export's pages, over ``lean_http`` unless a proxy is set
        or TLS checks are off (then through requests, which handles both)."""
        req = call.request
        proxied = any(self._session.proxies.values())
        if req.method != "GET" or call.body is not None or proxied or self._verify is False:
            return self._send(call, deadline)
        conn: LeanConnection | None = getattr(self._lean, "conn", None)
        if conn is None:
            conn = self._lean.conn = LeanConnection(self.settings.api_root, verify=self._verify)
            with self._lean_lock:
                self._lean_all.append(conn)
        target = self._root_path + req.path + (f"?{urlencode(req.query)}" if req.query else "")
        headers = {
            k: v if isinstance(v, str) else v.decode("latin-1") for k, v in self._session.headers.items()
        }
        headers.update(req.headers)
        auth_headers = self.settings.auth.headers()
        headers.update(auth_headers)
        status, resp_headers, body = conn.get(
            target, headers, timeout=_attempt_timeout(self.settings, deadline), path=req.path
        )
        return _result(call, status, resp_headers, body, auth_headers)

    def _execute(
        self,
        call: Call[R],
        *,
        deadline: float | None = None,
        send: Callable[[Call[R], float | None], R] | None = None,
    ) -> R:
        transport = send or self._send
        return self.settings.retry.call(
            lambda: transport(call, deadline), deadline=deadline, retry_if=self._retry_if(call)
        )

    def _pages(self, make: Any, after: str | None, *, send: Any = None) -> Iterator[Any]:
        """Walk pages by the ``after`` cursor. The first call is built now, so bad arguments fail at the
        call site rather than at first iteration."""
        first = make(after)

        def walk() -> Iterator[Any]:
            call, walk_ = first, _Walk()
            while True:
                page = self._execute(call, send=send)
                cursor = page.next_cursor()
                if walk_.repeated(cursor):
                    return
                yield page
                if cursor is None:
                    return
                call = make(cursor)

        return walk()

    # -- evals ---------------------------------------------------------------------------------------------

    def create_eval(
        self,
        *,
        data_source_config: Mapping[str, Any],
        testing_criteria: Sequence[Mapping[str, Any]],
        name: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> Eval:
        call = self.ops.create_eval(
            name=name,
            data_source_config=data_source_config,
            testing_criteria=testing_criteria,
            metadata=metadata,
        )
        return self._execute(call)

    def list_evals(
        self,
        *,
        order: str = "asc",
        order_by: str = "created_at",
        limit: int | None = None,
        after: str | None = None,
    ) -> Iterator[Eval]:
        size = _page_size(limit)
        return _items(
            self._pages(
                lambda a: self.ops.list_evals(after=a, limit=size, order=order, order_by=order_by), after
            )
        )

    def get_eval(self, eval_id: str) -> Eval:
        return self._execute(self.ops.get_eval(eval_id))

    def update_eval(
        self, eval_id: str, *, name: str | None = None, metadata: Mapping[str, str] | None = None
    ) -> Eval:
        return self._execute(self.ops.update_eval(eval_id, name=name, metadata=metadata))

    def delete_eval(self, eval_id: str) -> DeletedObject:
        return self._execute(self.ops.delete_eval(eval_id))

    # -- runs ----------------------------------------------------------------------------------------------

    def create_run(
        self,
        eval_id: str,
        *,
        data_source: Mapping[str, Any],
        name: str | None = None,
        metadata: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> EvalRun:
        """Start a run. With an ``idempotency_key``, a failure that may have created the run is resolved by
        looking the run up by that key before any second POST, so a retry never starts a duplicate."""
        call = self.ops.create_run(
            eval_id, data_source=data_source, name=name, metadata=metadata, idempotency_key=idempotency_key
        )
        started = time.time()
        lookup = _CreateLookup(self.settings, idempotency_key)
        try:
            for attempt in self.settings.retry.retrying(
                retry_if=self._retry_if(call, keyed=bool(idempotency_key))
            ):
                with attempt:
                    found = self._resolve(eval_id, lookup, started)
                    if found is not None:
                        return found
                    try:
                        return self._send(call, None)
                    except EvalsAPIError as exc:
                        lookup.failed(exc)
                        raise
        except EvalsAPIError as exc:
            found = self._resolve(eval_id, lookup, started)
            if found is not None:
                return found
            raise self.settings.retry.final_error(exc) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _resolve(self, eval_id: str, lookup: _CreateLookup, started: float) -> EvalRun | None:
        """After an ambiguous failure, find the run the failed POST may have created (polling briefly)."""
        while lookup.key and lookup.pending:
            found = self.find_run_by_idempotency_key(eval_id, lookup.key, since=started)
            if found is not None or not lookup.keep_looking():
                return found
            time.sleep(lookup.poll)
        return None

    def find_run_by_idempotency_key(self, eval_id: str, key: str, *, since: float) -> EvalRun | None:
        """The newest run of the eval carrying ``key``, scanning newest first back to ``since`` (epoch s)."""
        return self.find_run(eval_id, lambda run: matches_key(run, key), since=since)

    def find_run(self, eval_id: str, predicate: Callable[[EvalRun], bool], *, since: float) -> EvalRun | None:
        """The newest run matching ``predicate``, scanning newest first back to ``since`` (bounded)."""
        for index, run in enumerate(self.list_runs(eval_id, order="desc")):
            if predicate(run):
                log.info("Found run %s started earlier (%s)", run.id, run.status)
                return run
            if too_old(run, since) or index >= LOOKUP_MAX_RUNS:
                break
        return None

    def list_runs(
        self,
        eval_id: str,
        *,
        status: str | None = None,
        order: str = "asc",
        limit: int | None = None,
        after: str | None = None,
    ) -> Iterator[EvalRun]:
        size = _page_size(limit)

        def make(a: str | None) -> Call[Page[EvalRun]]:
            return self.ops.list_runs(eval_id, after=a, limit=size, order=order, status=status)

        return _items(self._pages(make, after))

    def get_run(self, eval_id: str, run_id: str, *, deadline: float | None = None) -> EvalRun:
        return self._execute(self.ops.get_run(eval_id, run_id), deadline=deadline)

    def cancel_run(self, eval_id: str, run_id: str, *, deadline: float | None = None) -> EvalRun:
        """Cancel through the flavor's route; on 404/405 try the other one (see ``routes.CANCEL_ROUTES``)."""
        first, second = self._cancel_routes()
        try:
            run = self._execute(self.ops.cancel_run(eval_id, run_id, first), deadline=deadline)
            self._cancel_route = first
            return run
        except EvalsNotFoundError as exc:
            log.info(
                "Cancel route %s answered HTTP %s; trying %s", first.value, exc.status_code, second.value
            )
            try:
                run = self._execute(self.ops.cancel_run(eval_id, run_id, second), deadline=deadline)
            except EvalsNotFoundError:
                raise exc from None
            self._cancel_route = second
            return run

    def delete_run(self, eval_id: str, run_id: str) -> DeletedObject:
        return self._execute(self.ops.delete_run(eval_id, run_id))

    # -- output items --------------------------------------------------------------------------------------

    def list_output_item_pages(
        self,
        eval_id: str,
        run_id: str,
        *,
        status: str | None = None,
        order: str = "asc",
        limit: int | None = None,
        after: str | None = None,
    ) -> Iterator[Page[OutputItem]]:
        """Page by page, so an export can stream each page out before fetching the next. Over the lean
        transport, as the raw pages: a comparison reads every item of two runs, and requests' own
        per-response work is a large share of a page's client-side cost."""
        size = _page_size(limit)

        def make(a: str | None) -> Call[Page[OutputItem]]:
            return self.ops.list_output_items(
                eval_id, run_id, after=a, limit=size, order=order, status=status
            )

        return self._pages(make, after, send=self._send_lean)

    def list_output_items(
        self,
        eval_id: str,
        run_id: str,
        *,
        status: str | None = None,
        order: str = "asc",
        limit: int | None = None,
        after: str | None = None,
    ) -> Iterator[OutputItem]:
        return _items(
            self.list_output_item_pages(eval_id, run_id, status=status, order=order, limit=limit, after=after)
        )

    def list_raw_output_item_pages(
        self, eval_id: str, run_id: str, *, status: str | None = None, limit: int | None = None
    ) -> Iterator[RawItemPage]:
        """Pages (oldest first) whose items keep the bytes the API sent: for exports, which copy items
        rather than read them (see ``raw_items``). Retries and the cursor walk are the typed pages'."""
        size = _page_size(limit)
        return self._pages(
            lambda a: self.ops.list_raw_output_items(eval_id, run_id, a, size, status),
            None,
            send=self._send_lean,
        )

    def get_output_item(self, eval_id: str, run_id: str, output_item_id: str) -> OutputItem:
        return self._execute(self.ops.get_output_item(eval_id, run_id, output_item_id))

    # -- files ---------------------------------------------------------------------------------------------

    def upload_file(
        self, open_stream: Callable[[], BinaryIO], *, filename: str, size: int, purpose: str = "evals"
    ) -> FileObject:
        """Upload a dataset through the Files API, streamed from ``open_stream()`` (called once per attempt).

        Sync only: uploads happen in operators on a worker, never in the triggerer.
        """
        return self._execute(self.ops.upload_file(open_stream, filename=filename, size=size, purpose=purpose))


class _DeadlinePassed(Exception):
    """The deadline passed while a body was still arriving."""


def _read_body(resp: requests.Response, deadline: float | None) -> bytes:
    """The whole body; with a ``deadline``, read so that the deadline bounds the read as a whole.

    Without one, a single read: requests' own ``.content`` reads 10 KB at a time, which for a 200 KB page
    of output items cost more CPU than everything else in the call. With one, requests' read timeout is
    no bound at all on the whole body (it applies to each socket read, so a server that trickles a byte
    at a time holds the call for as long as it likes): each read then gets only what is left of the
    deadline, and the call ends when it has passed.
    """
    if deadline is None:
        return b"".join(resp.iter_content(_BODY_READ_BYTES))
    raw = resp.raw
    sock = getattr(getattr(raw, "connection", None), "sock", None)
    chunks: list[bytes] = []
    while True:
        left = deadline - time.time()
        if left <= 0:
            raise _DeadlinePassed
        if sock is not None:
            sock.settimeout(left)
        chunk = raw.read1(_BODY_READ_BYTES, decode_content=True)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _requests_sent(exc: BaseException) -> bool:
    """Whether a requests failure happened after the request went out (so the server may have acted)."""
    text = repr(exc)
    never_sent = ("NewConnectionError", "NameResolutionError", "ConnectTimeoutError", "Failed to establish")
    return not any(marker in text for marker in never_sent)


def _describe(exc: BaseException) -> str:
    """A short cause without URLs' query strings or headers; requests' reprs hold neither, but stay brief."""
    inner = exc.args[0] if exc.args else exc
    reason = getattr(inner, "reason", None)
    return f"{type(exc).__name__}: {reason or inner}"[:300]


# ------------------------------------------------------------------------------------------------------------
# Async
# ------------------------------------------------------------------------------------------------------------


@dataclass
class _SharedSession:
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


# loop -> pool key -> shared session. Weak on the loop, so a closed, dropped loop takes its sessions with it.
_SESSIONS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[object, ...], _SharedSession]] = (
    weakref.WeakKeyDictionary()
)


# loop -> settings -> the client that every user of those settings in that loop shares (see AsyncEvalsClient.shared).
_CLIENTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[ClientSettings, AsyncEvalsClient]] = (
    weakref.WeakKeyDictionary()
)


def shared_session_count() -> int:
    """How many shared aiohttp sessions exist in the running loop (for tests and benchmarks)."""
    try:
        return len(_SESSIONS.get(asyncio.get_running_loop(), {}))
    except RuntimeError:
        return 0


class AsyncEvalsClient(_Common):
    """Non-blocking client on aiohttp for triggers. Use ``async with``: the session is shared and reference
    counted per event loop and endpoint, and closed when its last user leaves."""

    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        self.ops = Operations(settings)
        self._cancel_route: Operation | None = None
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._proxy: str | None = None
        self._urls: dict[tuple[str, tuple[tuple[str, str], ...]], yarl.URL] = {}
        self._https = urlsplit(settings.api_root).scheme == "https"
        #: ``async with`` blocks currently inside this client; the last one out releases the session.
        self._users = 0
        #: The registry this client is shared through, if it came from ``shared()``.
        self._registry: dict[ClientSettings, AsyncEvalsClient] | None = None

    @classmethod
    def shared(cls, settings: ClientSettings) -> AsyncEvalsClient:
        """This event loop's client for ``settings`` (equal settings, not the same object), made on first use.

        Use it as ``async with``; the last block to leave closes it. A triggerer runs thousands of waits:
        one client each kept ~15 long-lived objects per wait (client, operations, settings, auth, policy),
        and every full garbage collection, which stops the loop, walks them all.
        """
        clients = _CLIENTS.setdefault(asyncio.get_running_loop(), {})
        client = clients.get(settings)
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
        # thread on every request (two thread hops per poll, a quarter of a trigger's CPU). The proxy is
        # read from the environment once per pool instead (_proxy_for).
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
        pools = _SESSIONS.setdefault(loop, {})
        key = self.settings.pool_key()
        shared = pools.get(key)
        if shared is None or shared.session.closed:
            shared = pools[key] = _SharedSession(self._make_session(), _proxy_for(self.settings))
        shared.users += 1
        self._session, self._loop, self._proxy = shared.session, loop, shared.proxy
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
        pools = _SESSIONS.get(self._loop, {})
        key = self.settings.pool_key()
        shared = pools.get(key)
        self._session = None
        if shared is None:
            return
        shared.users -= 1
        if shared.users <= 0:
            del pools[key]
            await shared.session.close()

    # -- transport -----------------------------------------------------------------------------------------

    def _target(self, req: PreparedRequest) -> yarl.URL:
        """The request's URL with its query, parsed once per path and query: a trigger asks for the same
        URL on every poll, and parsing it again each time was a tenth of the poll's CPU."""
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
        session = await self._acquire()
        req = call.request
        auth_headers = await self.settings.auth.aheaders()
        headers = {**req.headers, **auth_headers}
        timeout = _async_attempt_timeout(self.settings, deadline)
        try:
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
        except aiohttp.ClientSSLError as exc:
            raise tls_failed(exc, method=req.method, path=req.path) from None
        except aiohttp.ConnectionTimeoutError:
            raise timed_out(connecting=True, method=req.method, path=req.path) from None
        except (aiohttp.ServerTimeoutError, asyncio.TimeoutError):
            raise timed_out(connecting=False, method=req.method, path=req.path) from None
        except aiohttp.ClientConnectorError as exc:
            # A reset while connecting to an https endpoint is aiohttp's word for a handshake the server
            # broke off, which requests reports as an SSL EOF: the same error either way.
            if isinstance(exc.os_error, ConnectionResetError) and self._https:
                raise handshake_closed(method=req.method, path=req.path) from None
            os_error = exc.os_error
            raise EvalsConnectionError(
                f"connection failed: {type(exc).__name__}: {type(os_error).__name__} {os_error}".rstrip(),
                request_sent=False,
                method=req.method,
                path=req.path,
            ) from None
        except aiohttp.ClientError as exc:
            raise connection_failed(exc, request_sent=True, method=req.method, path=req.path) from None
        return _result(call, status, resp_headers, body, auth_headers)

    async def _execute(
        self, call: Call[R], *, deadline: float | None = None, target: yarl.URL | None = None
    ) -> R:
        return await self.settings.retry.acall(
            lambda: self._send(call, deadline, target), deadline=deadline, retry_if=self._retry_if(call)
        )

    def _pages(self, make: Any, after: str | None) -> AsyncIterator[Any]:
        first = make(after)  # validates the arguments now, as the sync client does

        async def walk() -> AsyncIterator[Any]:
            call, walk_ = first, _Walk()
            while True:
                page = await self._execute(call)
                cursor = page.next_cursor()
                if walk_.repeated(cursor):
                    return
                yield page
                if cursor is None:
                    return
                call = make(cursor)

        return walk()

    # -- evals ---------------------------------------------------------------------------------------------

    async def create_eval(
        self,
        *,
        data_source_config: Mapping[str, Any],
        testing_criteria: Sequence[Mapping[str, Any]],
        name: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> Eval:
        call = self.ops.create_eval(
            name=name,
            data_source_config=data_source_config,
            testing_criteria=testing_criteria,
            metadata=metadata,
        )
        return await self._execute(call)

    def list_evals(
        self,
        *,
        order: str = "asc",
        order_by: str = "created_at",
        limit: int | None = None,
        after: str | None = None,
    ) -> AsyncIterator[Eval]:
        size = _page_size(limit)
        return _aitems(
            self._pages(
                lambda a: self.ops.list_evals(after=a, limit=size, order=order, order_by=order_by), after
            )
        )

    async def get_eval(self, eval_id: str) -> Eval:
        return await self._execute(self.ops.get_eval(eval_id))

    async def update_eval(
        self, eval_id: str, *, name: str | None = None, metadata: Mapping[str, str] | None = None
    ) -> Eval:
        return await self._execute(self.ops.update_eval(eval_id, name=name, metadata=metadata))

    async def delete_eval(self, eval_id: str) -> DeletedObject:
        return await self._execute(self.ops.delete_eval(eval_id))

    # -- runs ----------------------------------------------------------------------------------------------

    async def create_run(
        self,
        eval_id: str,
        *,
        data_source: Mapping[str, Any],
        name: str | None = None,
        metadata: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> EvalRun:
        """See ``EvalsClient.create_run``: the same de-duplication by idempotency key."""
        call = self.ops.create_run(
            eval_id, data_source=data_source, name=name, metadata=metadata, idempotency_key=idempotency_key
        )
        started = time.time()
        lookup = _CreateLookup(self.settings, idempotency_key)
        try:
            async for attempt in self.settings.retry.async_retrying(
                retry_if=self._retry_if(call, keyed=bool(idempotency_key))
            ):
                with attempt:
                    found = await self._resolve(eval_id, lookup, started)
                    if found is not None:
                        return found
                    try:
                        return await self._send(call, None)
                    except EvalsAPIError as exc:
                        lookup.failed(exc)
                        raise
        except EvalsAPIError as exc:
            found = await self._resolve(eval_id, lookup, started)
            if found is not None:
                return found
            raise self.settings.retry.final_error(exc) from None
        raise AssertionError("unreachable")  # pragma: no cover

    async def _resolve(self, eval_id: str, lookup: _CreateLookup, started: float) -> EvalRun | None:
        while lookup.key and lookup.pending:
            found = await self.find_run_by_idempotency_key(eval_id, lookup.key, since=started)
            if found is not None or not lookup.keep_looking():
                return found
            await asyncio.sleep(lookup.poll)
        return None

    async def find_run_by_idempotency_key(self, eval_id: str, key: str, *, since: float) -> EvalRun | None:
        return await self.find_run(eval_id, lambda run: matches_key(run, key), since=since)

    async def find_run(
        self, eval_id: str, predicate: Callable[[EvalRun], bool], *, since: float
    ) -> EvalRun | None:
        index = 0
        async for run in self.list_runs(eval_id, order="desc"):
            if predicate(run):
                log.info("Found run %s started earlier (%s)", run.id, run.status)
                return run
            if too_old(run, since) or index >= LOOKUP_MAX_RUNS:
                break
            index += 1
        return None

    def list_runs(
        self,
        eval_id: str,
        *,
        status: str | None = None,
        order: str = "asc",
        limit: int | None = None,
        after: str | None = None,
    ) -> AsyncIterator[EvalRun]:
        size = _page_size(limit)

        def make(a: str | None) -> Call[Page[EvalRun]]:
            return self.ops.list_runs(eval_id, after=a, limit=size, order=order, status=status)

        return _aitems(self._pages(make, after))

    async def get_run(self, eval_id: str, run_id: str, *, deadline: float | None = None) -> EvalRun:
        return await self._execute(self.ops.get_run(eval_id, run_id), deadline=deadline)

    async def cancel_run(self, eval_id: str, run_id: str, *, deadline: float | None = None) -> EvalRun:
        first, second = self._cancel_routes()
        try:
            run = await self._execute(self.ops.cancel_run(eval_id, run_id, first), deadline=deadline)
            self._cancel_route = first
            return run
        except EvalsNotFoundError as exc:
            log.info(
                "Cancel route %s answered HTTP %s; trying %s", first.value, exc.status_code, second.value
            )
            try:
                run = await self._execute(self.ops.cancel_run(eval_id, run_id, second), deadline=deadline)
            except EvalsNotFoundError:
                raise exc from None
            self._cancel_route = second
            return run

    async def delete_run(self, eval_id: str, run_id: str) -> DeletedObject:
        return await self._execute(self.ops.delete_run(eval_id, run_id))

    # -- output items --------------------------------------------------------------------------------------

    def list_output_item_pages(
        self,
        eval_id: str,
        run_id: str,
        *,
        status: str | None = None,
        order: str = "asc",
        limit: int | None = None,
        after: str | None = None,
    ) -> AsyncIterator[Page[OutputItem]]:
        size = _page_size(limit)

        def make(a: str | None) -> Call[Page[OutputItem]]:
            return self.ops.list_output_items(
                eval_id, run_id, after=a, limit=size, order=order, status=status
            )

        return self._pages(make, after)

    def list_output_items(
        self,
        eval_id: str,
        run_id: str,
        *,
        status: str | None = None,
        order: str = "asc",
        limit: int | None = None,
        after: str | None = None,
    ) -> AsyncIterator[OutputItem]:
        return _aitems(
            self.list_output_item_pages(eval_id, run_id, status=status, order=order, limit=limit, after=after)
        )

    async def get_output_item(self, eval_id: str, run_id: str, output_item_id: str) -> OutputItem:
        return await self._execute(self.ops.get_output_item(eval_id, run_id, output_item_id))


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

"""EvalsClient: the blocking transport (requests), for operators, sensors in poke mode and the UI.

It moves bytes, maps requests' and urllib3's failures onto the error hierarchy, and drives the flows of
``flows``; what a request is, how its answer is read and when it is tried again is decided elsewhere.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

import requests
import urllib3
from requests.adapters import HTTPAdapter

from airflow_provider_aoai_evals.api import flows
from airflow_provider_aoai_evals.api.errors import (
    EvalsAPIError,
    EvalsConnectionError,
    find_cause,
    timed_out,
    tls_failed,
)
from airflow_provider_aoai_evals.api.models import DeletedObject, Eval, EvalRun, FileObject, OutputItem, Page
from airflow_provider_aoai_evals.api.operations import Call, Operations, matches_key
from airflow_provider_aoai_evals.api.raw_items import RawItemPage, RawPageWalk
from airflow_provider_aoai_evals.api.settings import ClientSettings
from airflow_provider_aoai_evals.api.wire import ClientBase, attempt_timeout, page_size, read_answer
from airflow_provider_aoai_evals.export.lean_pages import LeanPages

if TYPE_CHECKING:
    from typing_extensions import Unpack

log = logging.getLogger(__name__)

R = TypeVar("R")
Send = Callable[[Call[Any], "float | None"], Any]

#: Largest single read of a response body (a page of 100 output items of 2 KB is about 200 KB).
_BODY_READ_BYTES = 1 << 20


class EvalsClient(ClientBase):
    """Blocking client on a ``requests.Session`` (connection reuse), for operators and sensors in poke mode."""

    def __init__(self, settings: ClientSettings, *, session: requests.Session | None = None) -> None:
        self.settings = settings
        self.ops = Operations(settings)
        self._cancel_routes = flows.CancelRoutes(settings.flavor)
        self._session = session or self._new_session()
        self._verify: bool | str = True if self._session.verify is None else self._session.verify
        self._lean = LeanPages(settings, self._session, self._verify, fallback=self._send)

    def _new_session(self) -> requests.Session:
        session = requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=min(self.settings.max_connections, 32))
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        # The environment (proxies honouring NO_PROXY, CA bundle) is read once here: requests would scan
        # it again on every request, at a cost that shows on a poll. netrc is never wanted, since every
        # request carries its own auth header.
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
        self._lean.close()

    def __repr__(self) -> str:
        return f"EvalsClient({self.settings!r})"

    @property
    def _lean_all(self) -> list[Any]:
        """The fast page path's open connections, one per thread that walked pages."""
        return self._lean.connections

    # -- transport -----------------------------------------------------------------------------------------

    def _send(self, call: Call[R], deadline: float | None) -> R:
        req = call.request
        auth_headers = self.settings.auth.headers()
        headers = {**req.headers, **auth_headers}
        data: Any = None
        if call.upload is not None:
            headers["Content-Type"] = call.upload.content_type
            data = call.upload.reader()
        # Prepared here and sent by the session's transport adapter itself: ``Session.request`` and
        # ``Session.send`` add per call what this API never uses (cookie jars, response hooks, redirects).
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
                timeout=attempt_timeout(self.settings, deadline),
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
                request_sent=_request_sent(exc),
                method=req.method,
                path=req.path,
            ) from None
        return read_answer(call, resp.status_code, resp.headers, body, auth_headers)

    def _execute(self, call: Call[R], *, deadline: float | None = None, send: Send | None = None) -> R:
        transport = send or self._send
        result: R = self.settings.retry.call(
            lambda: transport(call, deadline), deadline=deadline, retry_if=self._retry_if(call)
        )
        return result

    def _drive(self, flow: flows.Flow[R]) -> R:
        """Run a flow to its end: each request sent here, each pause slept here."""
        runner = flows.Runner(flow)
        while runner.step is not None:
            try:
                outcome = self._take(runner.step)
            except EvalsAPIError as exc:
                runner.fail(exc)
                continue
            runner.reply(outcome)
        return runner.result  # type: ignore[return-value]

    def _take(self, step: flows.Step) -> Any:
        if isinstance(step, flows.Pause):
            time.sleep(step.seconds)
            return None
        if step.retried:
            return self._execute(step.call, deadline=step.deadline)
        return self._send(step.call, step.deadline)

    def _walk(self, walk: flows.PageWalk[Any], send: Send | None = None) -> Iterator[Any]:
        call = walk.first
        while call is not None:
            page = self._execute(call, send=send)
            call, fresh = walk.follow(page)
            if fresh:
                yield page

    # -- evals ---------------------------------------------------------------------------------------------

    def create_eval(self, **spec: Unpack[flows.EvalSpec]) -> Eval:
        """``data_source_config`` and ``testing_criteria`` (required), ``name``, ``metadata``."""
        return self._execute(self.ops.create_eval(**spec))

    def list_evals(self, **query: Unpack[flows.EvalListQuery]) -> Iterator[Eval]:
        """Every eval, walking pages: ``order`` (asc), ``order_by`` (created_at), ``limit``, ``after``."""
        return _items(self._walk(flows.eval_pages(self.ops, **query)))

    def get_eval(self, eval_id: str) -> Eval:
        return self._execute(self.ops.get_eval(eval_id))

    def update_eval(
        self, eval_id: str, *, name: str | None = None, metadata: Mapping[str, str] | None = None
    ) -> Eval:
        return self._execute(self.ops.update_eval(eval_id, name=name, metadata=metadata))

    def delete_eval(self, eval_id: str) -> DeletedObject:
        return self._execute(self.ops.delete_eval(eval_id))

    # -- runs ----------------------------------------------------------------------------------------------

    def create_run(self, eval_id: str, **spec: Unpack[flows.RunSpec]) -> EvalRun:
        """Start a run: ``data_source`` (required), ``name``, ``metadata``, ``idempotency_key``. With a key,
        a failure that may have created the run is resolved by looking the run up by that key before any
        second POST, so a retry never starts a duplicate."""
        call = self.ops.create_run(eval_id, **spec)
        key = spec.get("idempotency_key")
        retry_if = self._retry_if(call, keyed=bool(key))
        return self._drive(flows.create_run(self.ops, self.settings.retry, retry_if, eval_id, call, key))

    def find_run_by_idempotency_key(self, eval_id: str, key: str, *, since: float) -> EvalRun | None:
        """The newest run of the eval carrying ``key``, scanning newest first back to ``since`` (epoch s)."""
        return self.find_run(eval_id, lambda run: matches_key(run, key), since=since)

    def find_run(self, eval_id: str, predicate: Callable[[EvalRun], bool], *, since: float) -> EvalRun | None:
        """The newest run matching ``predicate``, scanning newest first back to ``since`` (bounded)."""
        return self._drive(flows.find_run(self.ops, eval_id, predicate, since=since))

    def list_runs(self, eval_id: str, **query: Unpack[flows.FilteredListQuery]) -> Iterator[EvalRun]:
        """The eval's runs, walking pages: ``status``, ``order`` (asc), ``limit``, ``after``."""
        return _items(self._walk(flows.run_pages(self.ops, eval_id, **query)))

    def get_run(self, eval_id: str, run_id: str, *, deadline: float | None = None) -> EvalRun:
        return self._execute(self.ops.get_run(eval_id, run_id), deadline=deadline)

    def cancel_run(self, eval_id: str, run_id: str, *, deadline: float | None = None) -> EvalRun:
        """Cancel through the flavor's route; on 404/405 try the other one (see ``routes.CANCEL_ROUTES``)."""
        return self._drive(flows.cancel_run(self.ops, self._cancel_routes, eval_id, run_id, deadline))

    def delete_run(self, eval_id: str, run_id: str) -> DeletedObject:
        return self._execute(self.ops.delete_run(eval_id, run_id))

    # -- output items --------------------------------------------------------------------------------------

    def list_output_item_pages(
        self, eval_id: str, run_id: str, **query: Unpack[flows.FilteredListQuery]
    ) -> Iterator[Page[OutputItem]]:
        """Page by page (``status``, ``order``, ``limit``, ``after``), so an export can stream each page out
        before fetching the next; over the fast page transport, since a comparison reads every item of
        two runs in a chain."""
        return self._walk(flows.item_pages(self.ops, eval_id, run_id, **query), send=self._lean.send)

    def list_output_items(
        self, eval_id: str, run_id: str, **query: Unpack[flows.FilteredListQuery]
    ) -> Iterator[OutputItem]:
        return _items(self.list_output_item_pages(eval_id, run_id, **query))

    def list_raw_output_item_pages(
        self, eval_id: str, run_id: str, *, status: str | None = None, limit: int | None = None
    ) -> Iterator[RawItemPage]:
        """Pages (oldest first) whose items keep the bytes the API sent: for exports, which copy items
        rather than read them (see ``raw_items``). Retries and the cursor walk's rules are the typed
        pages'; each page is asked for while the one before may still be unscanned (``RawPageWalk``)."""
        size = page_size(limit)

        def make(after: str | None) -> Call[RawItemPage]:
            return self.ops.list_raw_output_items(eval_id, run_id, after, size, status)

        return iter(RawPageWalk(make, flows.PageWalk(make, None), _PageFetch(self)))

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


class _PageFetch:
    """The client's page transport for ``RawPageWalk``: the fast page path, under the retry policy."""

    __slots__ = ("_client",)

    def __init__(self, client: EvalsClient) -> None:
        self._client = client

    def __call__(self, call: Call[RawItemPage], first: bytes | Exception | None = None) -> RawItemPage:
        send: Send = self._client._lean.send
        if first is not None:
            send = _after_first(first, send)
        return self._client._execute(call, send=send)

    def once(self, call: Call[RawItemPage]) -> RawItemPage:
        return self._client._lean.send(call, None)


def _after_first(first: bytes | Exception, send: Send) -> Send:
    """A transport whose first attempt is an outcome already had, then ``send``: a body is read as any
    answer is (the status and headers it came with are not kept, so its errors name neither), a failure
    is raised."""
    pending = [first]

    def attempt(call: Call[Any], deadline: float | None) -> Any:
        if not pending:
            return send(call, deadline)
        had = pending.pop()
        if isinstance(had, Exception):
            raise had
        return read_answer(call, 200, {}, had, {})

    return attempt


def _items(pages: Iterator[Page[Any]]) -> Iterator[Any]:
    for page in pages:
        yield from page.data


class _DeadlinePassed(Exception):
    """The deadline passed while a body was still arriving."""


def _read_body(resp: requests.Response, deadline: float | None) -> bytes:
    """The whole body; with a ``deadline``, read so that the deadline bounds the read as a whole.

    Without one, a single read: requests' own ``.content`` reads 10 KB at a time, which on a large page
    costs more CPU than the rest of the call. With one, requests' read timeout is no bound at all on the
    whole body (it applies to each socket read, so a server that trickles a byte at a time holds the call
    for as long as it likes): each read then gets only what is left of the deadline, and the call ends
    when it has passed.
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


#: What urllib3 raises when no connection was made, so the request never left (wrapped by requests).
_NEVER_SENT = (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ConnectTimeoutError)


def _request_sent(exc: BaseException) -> bool:
    """Whether a requests failure happened after the request went out (so the server may have acted):
    not when urllib3 failed to connect (DNS, refused, connect timeout), which requests wraps."""
    return find_cause(exc, _NEVER_SENT) is None


def _describe(exc: BaseException) -> str:
    """A short cause without URLs' query strings or headers; requests' reprs hold neither, but stay brief."""
    inner = exc.args[0] if exc.args else exc
    reason = getattr(inner, "reason", None)
    return f"{type(exc).__name__}: {reason or inner}"[:300]

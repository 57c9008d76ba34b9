"""The API flows that take more than one request, written once for both clients.

A flow is a generator that never does I/O: it yields the steps to take (a request to send, a pause) and
is handed back each step's result, or has its error thrown in. ``EvalsClient`` drives flows with a
blocking loop and ``AsyncEvalsClient`` with an async one, as httpx's ``auth_flow`` generators serve both of
its clients. What a create does after an ambiguous failure, how a cancel falls back to the other route and
when a page walk stops is therefore decided here and nowhere else.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypedDict, TypeVar, Union

from airflow_provider_aoai_evals.api.errors import EvalsAPIError, EvalsConnectionError, EvalsNotFoundError
from airflow_provider_aoai_evals.api.models import Eval, EvalRun, OutputItem, Page
from airflow_provider_aoai_evals.api.operations import (
    LOOKUP_MAX_RUNS,
    Call,
    Operations,
    is_ambiguous,
    matches_key,
    too_old,
)
from airflow_provider_aoai_evals.api.retry import RetryPolicy
from airflow_provider_aoai_evals.api.routes import CANCEL_ROUTES, Flavor, Operation
from airflow_provider_aoai_evals.api.wire import page_size

if TYPE_CHECKING:
    from typing_extensions import Required

log = logging.getLogger(__name__)

R = TypeVar("R")
P = TypeVar("P", bound="Paged")


class Paged(Protocol):
    """A page of a list: typed (``models.Page``) or raw (``raw_items.RawItemPage``)."""

    @property
    def data(self) -> Sequence[Any]: ...

    def next_cursor(self) -> str | None: ...


@dataclass(frozen=True)
class Send(Generic[R]):
    """Send ``call``: under the retry policy, or once when the flow runs its own attempts."""

    call: Call[R]
    deadline: float | None = None
    retried: bool = True


@dataclass(frozen=True)
class Pause:
    seconds: float


Step = Union[Send[Any], Pause]  # noqa: UP007 - a runtime alias; ``X | Y`` of generics needs 3.10+ objects
Flow = Generator[Step, Any, R]


class Runner(Generic[R]):
    """Steps a flow for a driver: the driver takes ``step``, then hands back its result or its error.

    Kept apart from the drivers so that each is a loop of a few lines; ``step`` is None once the flow has
    returned (``result``) or raised (the error leaves ``reply``/``fail`` to the driver's caller).
    """

    __slots__ = ("_flow", "result", "step")

    def __init__(self, flow: Flow[R]) -> None:
        self._flow = flow
        self.result: R | None = None
        self.step: Step | None = self._advance(flow.send, None)

    def reply(self, value: Any) -> None:
        self.step = self._advance(self._flow.send, value)

    def fail(self, exc: BaseException) -> None:
        self.step = self._advance(self._flow.throw, exc)

    def _advance(self, resume: Callable[[Any], Step], value: Any) -> Step | None:
        try:
            return resume(value)
        except StopIteration as stop:
            self.result = stop.value
            return None


# -- page walks ----------------------------------------------------------------------------------------------


class PageWalk(Generic[P]):
    """The calls of a walk by the ``after`` cursor, and where it stops.

    The first call is built at once, so bad arguments fail where the list was asked for rather than at
    the first iteration. A page whose cursor was followed before is a repeat (a server or proxy that
    ignores ``after``): it is not handed on, so none of its items is read twice, and the walk ends there
    instead of looping for ever.
    """

    __slots__ = ("_make", "_seen", "first")

    def __init__(self, make: Callable[[str | None], Call[P]], after: str | None) -> None:
        self._make = make
        self._seen: set[str] = set()
        self.first: Call[P] | None = make(after)

    def follow(self, page: P) -> tuple[Call[P] | None, bool]:
        """The next call (None at the end) and whether ``page`` is new, to be handed on."""
        cursor = page.next_cursor()
        if cursor is None:
            return None, True
        if cursor in self._seen:
            log.warning(
                "The Evals API sent again a page that ends at %s (it may ignore 'after'); stopping the walk "
                "there rather than reading its items twice",
                cursor,
            )
            return None, False
        self._seen.add(cursor)
        return self._make(cursor), True


class ListQuery(TypedDict, total=False):
    order: str
    limit: int | None
    after: str | None


class EvalListQuery(ListQuery, total=False):
    order_by: str


class FilteredListQuery(ListQuery, total=False):
    status: str | None


def eval_pages(
    ops: Operations,
    *,
    order: str = "asc",
    order_by: str = "created_at",
    limit: int | None = None,
    after: str | None = None,
) -> PageWalk[Page[Eval]]:
    size = page_size(limit)
    return PageWalk(lambda a: ops.list_evals(after=a, limit=size, order=order, order_by=order_by), after)


def run_pages(
    ops: Operations,
    eval_id: str,
    *,
    status: str | None = None,
    order: str = "asc",
    limit: int | None = None,
    after: str | None = None,
) -> PageWalk[Page[EvalRun]]:
    size = page_size(limit)
    return PageWalk(lambda a: ops.list_runs(eval_id, after=a, limit=size, order=order, status=status), after)


def item_pages(
    ops: Operations,
    eval_id: str,
    run_id: str,
    *,
    status: str | None = None,
    order: str = "asc",
    limit: int | None = None,
    after: str | None = None,
) -> PageWalk[Page[OutputItem]]:
    size = page_size(limit)
    return PageWalk(
        lambda a: ops.list_output_items(eval_id, run_id, after=a, limit=size, order=order, status=status),
        after,
    )


# -- finding a run -------------------------------------------------------------------------------------------


def find_run(
    ops: Operations, eval_id: str, predicate: Callable[[EvalRun], bool], *, since: float
) -> Flow[EvalRun | None]:
    """The newest run matching ``predicate``, scanning newest first back to ``since`` (epoch seconds),
    and never more than ``LOOKUP_MAX_RUNS`` runs."""
    walk = run_pages(ops, eval_id, order="desc")
    scanned = 0
    call = walk.first
    while call is not None:
        page = yield Send(call)
        call, fresh = walk.follow(page)
        for run in page.data if fresh else ():
            if predicate(run):
                log.info("Found run %s started earlier (%s)", run.id, run.status)
                found: EvalRun = run
                return found
            if too_old(run, since) or scanned >= LOOKUP_MAX_RUNS:
                return None
            scanned += 1
    return None


# -- creating a run without duplicates -----------------------------------------------------------------------


class RunSpec(TypedDict, total=False):
    data_source: Required[Mapping[str, Any]]
    name: str | None
    metadata: Mapping[str, str] | None
    idempotency_key: str | None


class EvalSpec(TypedDict, total=False):
    data_source_config: Required[Mapping[str, Any]]
    testing_criteria: Required[Sequence[Mapping[str, Any]]]
    name: str | None
    metadata: Mapping[str, str] | None


class CreateLookup:
    """Whether a create may have taken effect, and for how long to keep looking for its run.

    A dropped connection or timeout after sending leaves the server possibly still creating the run, so the
    lookup is polled for ``create_settle_seconds`` before a second POST. A 5xx answer means the server is
    done with the request, so one lookup settles it.
    """

    poll = 0.25

    def __init__(self, settle_seconds: float, key: str | None) -> None:
        self.key = key
        self.pending = False
        self._settle = settle_seconds
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


def create_run(
    ops: Operations,
    policy: RetryPolicy,
    retry_if: Callable[[BaseException], bool],
    eval_id: str,
    call: Call[EvalRun],
    key: str | None,
) -> Flow[EvalRun]:
    """Post ``call``; with an idempotency ``key``, a failure that may have created the run is resolved by
    looking the run up by that key before any second POST, so a retry never starts a duplicate."""
    started = time.time()
    lookup = CreateLookup(policy.create_settle_seconds, key)
    attempt = 0
    while True:
        attempt += 1
        posting = False
        try:
            found = yield from _resolve(ops, eval_id, lookup, started)
            if found is not None:
                return found
            posting = True
            created: EvalRun = yield Send(call, retried=False)
            return created
        except EvalsAPIError as exc:
            if posting:
                lookup.failed(exc)
            pause = policy.pause_before_retry(attempt, exc, retry_if=retry_if)
            if pause is None:
                found = yield from _resolve(ops, eval_id, lookup, started)
                if found is not None:
                    return found
                raise policy.final_error(exc) from None
        yield Pause(pause)


def _resolve(ops: Operations, eval_id: str, lookup: CreateLookup, started: float) -> Flow[EvalRun | None]:
    """After an ambiguous failure, the run the failed POST may have created (polling briefly), or None."""
    key = lookup.key
    while key and lookup.pending:
        found = yield from find_run(ops, eval_id, functools.partial(_carries, key=key), since=started)
        if found is not None or not lookup.keep_looking():
            return found
        yield Pause(lookup.poll)
    return None


def _carries(run: EvalRun, *, key: str) -> bool:
    return matches_key(run, key)


# -- cancelling through either route -------------------------------------------------------------------------


class CancelRoutes:
    """The flavor's two cancel routes, the one that last worked first (see ``routes.CANCEL_ROUTES``)."""

    __slots__ = ("_order",)

    def __init__(self, flavor: Flavor) -> None:
        self._order: tuple[Operation, Operation] = CANCEL_ROUTES[flavor]

    def order(self) -> tuple[Operation, Operation]:
        return self._order

    def worked(self, route: Operation) -> None:
        first, second = self._order
        if route is second:
            self._order = (second, first)


def cancel_run(
    ops: Operations, routes: CancelRoutes, eval_id: str, run_id: str, deadline: float | None
) -> Flow[EvalRun]:
    """Cancel through the preferred route; on 404/405 try the other one, and remember which worked."""
    first, second = routes.order()
    try:
        run: EvalRun = yield Send(ops.cancel_run(eval_id, run_id, first), deadline)
    except EvalsNotFoundError as exc:
        log.info("Cancel route %s answered HTTP %s; trying %s", first.value, exc.status_code, second.value)
        try:
            run = yield Send(ops.cancel_run(eval_id, run_id, second), deadline)
        except EvalsNotFoundError:
            raise exc from None
        routes.worked(second)
        return run
    routes.worked(first)
    return run

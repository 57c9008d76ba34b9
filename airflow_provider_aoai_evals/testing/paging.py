"""List endpoints: their query parameters (limit, order, after, status) and how one page is cut.

Pages stop one match past their end, so listing a large run costs a page's work, not the run's; the
store counts the indices scanned so a test can hold it to that.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_aoai_evals.testing.errors import ApiError, invalid_value

if TYPE_CHECKING:
    from airflow_provider_aoai_evals.testing.records import RunRecord

RUN_STATUS_FILTERS = frozenset({"queued", "in_progress", "completed", "canceled", "failed"})
ITEM_STATUS_FILTERS = frozenset({"pass", "fail"})
MAX_LIMIT = 100
DEFAULT_LIMIT = 20


@dataclass
class Page:
    """One list page; ``data`` is already in API shape."""

    data: list[dict[str, Any]]
    has_more: bool

    def to_api(self) -> dict[str, Any]:
        return {
            "object": "list",
            "data": self.data,
            "first_id": self.data[0]["id"] if self.data else None,
            "last_id": self.data[-1]["id"] if self.data else None,
            "has_more": self.has_more,
        }


def parse_limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        raise ApiError(
            400,
            f"Invalid 'limit': expected an integer, but got '{raw}' instead.",
            param="limit",
            code="invalid_type",
        ) from None
    if limit < 1 or limit > MAX_LIMIT:
        raise ApiError(
            400,
            f"Invalid 'limit': integer out of range. Expected a value between 1 and {MAX_LIMIT}, "
            f"but got {limit} instead.",
            param="limit",
            code="integer_out_of_range",
        )
    return limit


def parse_order(raw: str | None) -> str:
    if raw is None or raw == "":
        return "asc"
    if raw not in ("asc", "desc"):
        raise invalid_value(raw, "'asc' and 'desc'", "order")
    return raw


def parse_status(raw: str | None, allowed: frozenset[str], supported: str) -> str | None:
    """``supported`` is ``allowed`` as the API words it in its error, in the API's order."""
    if raw is not None and raw not in allowed:
        raise invalid_value(raw, supported, "status")
    return raw


def page_of(
    records: list[Any],
    after: str | None,
    limit: int,
    key: Callable[[Any], str],
    render: Callable[[Any], dict[str, Any]],
    keep: Callable[[Any], bool] | None = None,
) -> Page:
    """Page an ordered list. The cursor is located in the unfiltered order, so a filter whose membership
    changes between pages (a run finishing) does not make a valid cursor unknown."""
    start = 0
    if after:
        for pos, record in enumerate(records):
            if key(record) == after:
                start = pos + 1
                break
        else:
            raise ApiError(
                400,
                f"Invalid 'after': no object with id '{after}' in this list.",
                param="after",
                code="invalid_value",
            )
    picked: list[Any] = []
    has_more = False
    for record in records[start:]:
        if keep is not None and not keep(record):
            continue
        if len(picked) == limit:
            has_more = True
            break
        picked.append(record)
    return Page([render(r) for r in picked], has_more)


def item_page_indices(
    run: RunRecord, visible: int, after: str | None, order: str, limit: int, status: str | None
) -> tuple[list[int], bool, int]:
    """(indices of the page's items, has_more, indices scanned) among the run's ``visible`` items.

    Output items are never stored, so their page is cut from index arithmetic: the cursor is an item id
    that encodes its index, and only the items picked are ever built.
    """
    if after:
        cursor = run.parse_item_id(after)
        if cursor is None or cursor >= visible:
            raise ApiError(
                400,
                f"Invalid 'after': no output item with id '{after}' in this run.",
                param="after",
                code="invalid_value",
            )
    else:
        cursor = -1 if order == "asc" else visible
    step = 1 if order == "asc" else -1
    stop = visible if order == "asc" else -1
    matches = _matching_indices(run, range(cursor + step, stop, step), status)
    picked: list[int] = []
    scanned = 0
    has_more = False
    for index, steps in matches:
        scanned = steps
        if len(picked) == limit:
            has_more = True
            break
        picked.append(index)
    else:
        scanned = abs(stop - cursor) - 1
    return picked, has_more, scanned


def _matching_indices(run: RunRecord, indices: range, status: str | None) -> Iterator[tuple[int, int]]:
    """Yield (index, steps scanned so far) lazily so a page never looks further than one match past its end."""
    for steps, index in enumerate(indices, start=1):
        if status is None or run.item_status(index) == status:
            yield index, steps

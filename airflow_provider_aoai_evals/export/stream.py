"""The export loop: pages in, bytes out, one page at a time, with counts for the task's XCom and logs.

Memory stays flat in the number of items: a page is encoded and handed to ``write`` before the next one
is taken, and the only state that grows is the compact id set (see ``dedupe``). Pages arrive as
``RawItemPage`` (items kept as the API's bytes), so JSON Lines never builds a model per item.

Fetching the next page while this one is written is the caller's choice (``read_ahead``): it gained nothing
while every item went through a pydantic model (the export was CPU-bound in the client), and pays once
pages are copied as bytes (figures in docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_aoai_evals.api.raw_items import RawItemPage
from airflow_provider_aoai_evals.export.dedupe import SeenIds
from airflow_provider_aoai_evals.export.formats import Encoder


@dataclass
class ExportStats:
    """What an export has done so far; ``by_status`` counts items by their ``status`` (pass / fail)."""

    count: int = 0
    pages: int = 0
    bytes: int = 0
    duplicates: int = 0
    by_status: dict[str, int] = field(default_factory=dict)


class ItemLimitExceeded(Exception):
    """More items than ``max_items``; raised as soon as the count passes it, before fetching further."""

    def __init__(self, limit: int, seen: int) -> None:
        self.limit = limit
        self.seen = seen
        super().__init__(f"more than {limit} items (stopped after {seen})")


def stream_pages(
    pages: Iterable[RawItemPage],
    encoder: Encoder,
    *,
    write: Callable[[bytes], Any] | None = None,
    keep: list[dict[str, Any]] | None = None,
    max_items: int | None = None,
    on_page: Callable[[ExportStats], None] | None = None,
) -> ExportStats:
    """Encode each page and ``write`` it; optionally ``keep`` its records (XCom mode) up to ``max_items``.

    Items already seen (by id) are dropped and counted in ``duplicates``.
    """
    stats = ExportStats()
    seen = SeenIds()
    head = encoder.header()
    if head and write is not None:
        write(head)
    stats.bytes += len(head)
    for page in pages:
        stats.pages += 1
        fresh = [item for item in page.data if seen.add(item.id)]
        stats.duplicates += len(page.data) - len(fresh)
        stats.count += len(fresh)
        if max_items is not None and stats.count > max_items:
            raise ItemLimitExceeded(max_items, stats.count)
        for item in fresh:
            status = item.status or "unknown"
            stats.by_status[status] = stats.by_status.get(status, 0) + 1
        data = encoder.encode(fresh)
        if write is not None and data:
            write(data)
        stats.bytes += len(data)
        if keep is not None:
            for item in fresh:
                keep.extend(encoder.records(item))
        if on_page is not None:
            on_page(stats)
    return stats

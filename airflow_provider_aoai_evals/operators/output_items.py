"""ExportEvalRunOutputItemsOperator: an eval run's output items to object storage (or, when few, to XCom).

Runs can have hundreds of thousands of output items of a few KB each, so the export streams: each page
(100 items) is encoded and written before the next is used, memory stays flat, and the file appears at its
final path only once complete (see ``export.atomic``). XCom is for small results only, and the limit is
enforced before the items are pulled into memory.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from functools import cached_property
from typing import Any, NoReturn

from airflow.providers.common.compat.sdk import (
    AirflowFailException,
    BaseOperator,
    Context,
    ObjectStoragePath,
)

from airflow_provider_aoai_evals.api.errors import EvalsConfigError
from airflow_provider_aoai_evals.api.models import EvalRun
from airflow_provider_aoai_evals.api.operations import MAX_PAGE_SIZE, OUTPUT_ITEM_STATUS_FILTERS
from airflow_provider_aoai_evals.api.summary import summarize
from airflow_provider_aoai_evals.api.validation import validate_id
from airflow_provider_aoai_evals.export.atomic import UnwritableTarget, atomic_write
from airflow_provider_aoai_evals.export.formats import EXPORT_FORMATS, encoder_for
from airflow_provider_aoai_evals.export.read_ahead import read_ahead
from airflow_provider_aoai_evals.export.stream import ExportStats, ItemLimitExceeded, stream_pages
from airflow_provider_aoai_evals.hooks.evals import EvalsHook
from airflow_provider_aoai_evals.operators import _lineage as lineage
from airflow_provider_aoai_evals.operators._destination import (
    check_destination_type,
    destination_path,
    prepare_destination,
    unwritable,
)
from airflow_provider_aoai_evals.operators._run_lineage import run_lineage
from airflow_provider_aoai_evals.templating import TemplatedIds

#: Seconds between INFO progress lines during a long export (the first page is always logged).
PROGRESS_LOG_INTERVAL = 10.0


class OutputItemsTooLargeForXComError(AirflowFailException):
    """More output items than ``max_xcom_items`` and no destination. Not retried: a finished run will not
    shrink, so the task fails at once and says how to export to storage instead."""


def _is_template(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value


class ExportEvalRunOutputItemsOperator(TemplatedIds, BaseOperator):
    """Export the output items of an eval run as JSON Lines or CSV to any Airflow object storage path.

    Pages through every output item (100 per request), streaming each page to ``destination`` as it
    arrives, so memory does not grow with the number of items. The file is written under a hidden
    temporary name beside the destination and moved into place only when complete: a failed or killed
    export leaves nothing at the final path (see docs/export.md for what "atomic" means on object stores).
    Items are de-duplicated by id, so a rerun on a finished run writes the same set of items, each once
    (line order may differ: the API orders by whole-second timestamps).

    Without ``destination``, the items go to XCom (under ``"items"`` in the return value) if there are at
    most ``max_xcom_items``; otherwise the task fails, as soon as the count passes the limit, with an
    error that says to set a destination.

    Returns (XCom) ``{"path", "count", "by_status", "format", "bytes"}`` (+ ``"items"`` in XCom mode).

    :param eval_id: the eval (templated).
    :param run_id: the run (templated).
    :param destination: an ``ObjectStoragePath``, or a URL / absolute path string (templated), e.g.
        ``"s3://bucket/evals/{{ ds }}/{{ params.run }}.jsonl"``, ``"abfs://container/x.csv"``,
        ``"/data/x.jsonl"``. ``None``: XCom mode.
    :param status: only items with this status: ``"pass"`` or ``"fail"`` (templated); ``None`` for all.
    :param format: ``"jsonl"`` (items as the API sent them) or ``"csv"`` (one row per grader result)
        (templated).
    :param conn_id: an ``aoai_evals`` connection.
    :param storage_conn_id: the connection of a string ``destination``'s filesystem (an
        ``ObjectStoragePath`` carries its own).
    :param max_xcom_items: the most items returned through XCom when there is no destination.
    """

    template_fields: Sequence[str] = (
        "eval_id",
        "run_id",
        "destination",
        "status",
        "format",
        "storage_conn_id",
    )
    templated_ids = ("eval_id", "run_id")
    ui_color = "#e8f0d5"

    def __init__(
        self,
        *,
        eval_id: str,
        run_id: str,
        destination: ObjectStoragePath | str | os.PathLike[str] | None = None,
        status: str | None = None,
        format: str = "jsonl",
        conn_id: str = EvalsHook.default_conn_name,
        storage_conn_id: str | None = None,
        max_xcom_items: int = 100,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.eval_id = eval_id
        self.run_id = run_id
        self.destination = destination
        self.status = status
        self.format = format
        self.conn_id = conn_id
        self.storage_conn_id = storage_conn_id
        self.max_xcom_items = max_xcom_items
        # For lineage: the run as fetched, and where the export went with its return value.
        self._observed: lineage.ObservedRun | None = None
        self._exported: tuple[ObjectStoragePath | None, dict[str, Any]] | None = None
        # Fail at DAG parse time for what templates cannot change; the rest is checked again after rendering.
        self._check_static()

    # -- input checks (all before any request) -------------------------------------------------------------

    def _check_static(self) -> None:
        if isinstance(self.max_xcom_items, bool) or not isinstance(self.max_xcom_items, int):
            raise EvalsConfigError(
                "max_xcom_items", f"must be an integer, got {type(self.max_xcom_items).__name__}"
            )
        if self.max_xcom_items < 0:
            raise EvalsConfigError("max_xcom_items", f"must be >= 0, got {self.max_xcom_items}")
        check_destination_type(self.destination, "XCom mode")
        if not _is_template(self.format):
            self._check_format()
        if not _is_template(self.status):
            self._check_status()

    def _check_format(self) -> None:
        if self.format not in EXPORT_FORMATS:
            raise EvalsConfigError("format", f"must be one of {list(EXPORT_FORMATS)}, got {self.format!r}")

    def _check_status(self) -> None:
        if self.status == "":  # an empty rendered template means "no filter"
            self.status = None
        if self.status is not None and self.status not in OUTPUT_ITEM_STATUS_FILTERS:
            hint = " (the API's item filter is 'fail', not 'failed')" if self.status == "failed" else ""
            raise EvalsConfigError(
                "status",
                f"must be one of {list(OUTPUT_ITEM_STATUS_FILTERS)} or None, got {self.status!r}{hint}",
            )

    def _check_rendered(self) -> ObjectStoragePath | None:
        """Validate every parameter after templating; return the destination as a path (or None)."""
        self.check_rendered_ids()
        validate_id("eval_id", self.eval_id)
        validate_id("run_id", self.run_id)
        self._check_static()
        self._check_format()
        self._check_status()
        return destination_path(self.destination, self.storage_conn_id, none_means="XCom mode")

    # -- execution -----------------------------------------------------------------------------------------

    @cached_property
    def hook(self) -> EvalsHook:
        return EvalsHook(self.conn_id)

    def execute(self, context: Context) -> dict[str, Any]:
        path = self._check_rendered()
        if path is not None:
            prepare_destination(path)
        client = self.hook.get_conn()
        run = client.get_run(self.eval_id, self.run_id)  # 404s and auth errors fail before any file exists
        self._observed = lineage.ObservedRun(self.eval_id, self.run_id, summarize(run).to_xcom())
        expected = self._expected_count(run)
        if not run.is_terminal:
            self.log.warning(
                "Eval run %s is %r, not finished: exporting the output items that exist now; a later "
                "export may contain more",
                self.run_id,
                run.status,
            )
        fmt = encoder_for(self.format)
        if path is None:
            return self._record_export(None, self._to_xcom(client, fmt, expected))

        self.log.info(
            "Exporting output items of eval run %s (eval %s, status filter %s) as %s to %s",
            self.run_id,
            self.eval_id,
            self.status or "none",
            fmt.name,
            path,
        )
        pages = client.list_raw_output_item_pages(
            self.eval_id, self.run_id, status=self.status, limit=MAX_PAGE_SIZE
        )
        started = time.monotonic()
        try:
            with atomic_write(path.fs, path.path) as handle, read_ahead(pages) as ahead:
                stats = stream_pages(ahead, fmt, write=handle.write, on_page=self._progress(started))
        except UnwritableTarget as exc:  # raised before any item is fetched: the temp file could not open
            raise unwritable(path, exc) from None
        self._log_done(stats, started, path)
        self._check_count(stats, expected)
        return self._record_export(
            path,
            {
                "path": str(path),
                "count": stats.count,
                "by_status": stats.by_status,
                "format": fmt.name,
                "bytes": stats.bytes,
            },
        )

    def _record_export(self, path: ObjectStoragePath | None, result: dict[str, Any]) -> dict[str, Any]:
        self._exported = (path, result)
        return result

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Input: the eval run's results; output: the file written (none in XCom mode), with its item count
        and size. Facets: the run's ids, status and pass rates, and what the export wrote.

        A failed export reports no output: the atomic write left nothing at the destination. None without
        the OpenLineage provider.
        """
        return lineage.to_operator_lineage(self._lineage_report)

    def _lineage_report(self) -> lineage.LineageReport | None:
        outputs = []
        facet: dict[str, Any] | None = None
        if self._exported is not None:
            path, result = self._exported
            if path is not None:
                outputs.append(
                    lineage.storage_dataset(path, row_count=result["count"], size_bytes=result["bytes"])
                )
            facet = {
                "export": {
                    "statusFilter": self.status,
                    "format": result["format"],
                    "count": result["count"],
                    "byStatus": result["by_status"],
                    "bytes": result["bytes"],
                }
            }
        return run_lineage(
            self.hook, str(self.eval_id), str(self.run_id), self._observed, outputs=outputs, facet=facet
        )

    def _to_xcom(self, client: Any, fmt: Any, expected: int | None) -> dict[str, Any]:
        """Items to XCom, failing as soon as there are more than ``max_xcom_items`` (before pulling them all)."""
        limit = self.max_xcom_items
        if expected is not None and expected > limit:
            self._too_many(expected, exact=True)
        # One item past the limit is enough to know; never fetch a 100-item page to learn that 4 is too many.
        page_size = max(1, min(MAX_PAGE_SIZE, limit + 1))
        pages = client.list_raw_output_item_pages(
            self.eval_id, self.run_id, status=self.status, limit=page_size
        )
        records: list[dict[str, Any]] = []
        try:
            stats = stream_pages(pages, fmt, keep=records, max_items=limit)
        except ItemLimitExceeded as exc:
            self._too_many(exc.seen, exact=False)
        self._check_count(stats, expected)
        self.log.info(
            "Returning %d output items of eval run %s through XCom (%s)",
            stats.count,
            self.run_id,
            stats.by_status,
        )
        return {
            "path": None,
            "count": stats.count,
            "by_status": stats.by_status,
            "format": fmt.name,
            "bytes": stats.bytes,
            "items": records,
        }

    def _too_many(self, count: int, *, exact: bool) -> NoReturn:
        amount = f"{count}" if exact else f"more than {self.max_xcom_items}"
        which = f" with status {self.status!r}" if self.status else ""
        raise OutputItemsTooLargeForXComError(
            f"Eval run {self.run_id} has {amount} output items{which}, above max_xcom_items="
            f"{self.max_xcom_items}: XCom is for small results. Set destination= to an ObjectStoragePath or URL "
            "(e.g. 's3://bucket/evals/{{ ds }}/items.jsonl' or 'abfs://container/items.jsonl') to export them "
            "to storage, or raise max_xcom_items."
        )

    def _expected_count(self, run: EvalRun) -> int | None:
        """Items an unfiltered export of a finished run should hold (None when unknown)."""
        if self.status is not None or not run.is_terminal or run.result_counts is None:
            return None
        return run.result_counts.total

    def _check_count(self, stats: ExportStats, expected: int | None) -> None:
        if stats.duplicates:
            self.log.warning(
                "Dropped %d output items that the API returned more than once across pages", stats.duplicates
            )
        if expected is not None and stats.count != expected:
            self.log.warning(
                "Exported %d output items but the run's result_counts.total is %d: the API's paging "
                "returned a different set than the run reports",
                stats.count,
                expected,
            )

    def _progress(self, started: float) -> Any:
        last = [started]

        def on_page(stats: ExportStats) -> None:
            now = time.monotonic()
            if stats.pages == 1 or now - last[0] >= PROGRESS_LOG_INTERVAL:
                last[0] = now
                self.log.info(
                    "Export progress: %d pages, %d items, %d bytes (%.0f items/s)",
                    stats.pages,
                    stats.count,
                    stats.bytes,
                    stats.count / max(now - started, 1e-6),
                )

        return on_page

    def _log_done(self, stats: ExportStats, started: float, path: ObjectStoragePath) -> None:
        elapsed = time.monotonic() - started
        self.log.info(
            "Exported %d output items (%s) in %d pages, %d bytes, to %s in %.1fs",
            stats.count,
            stats.by_status,
            stats.pages,
            stats.bytes,
            path,
            elapsed,
        )

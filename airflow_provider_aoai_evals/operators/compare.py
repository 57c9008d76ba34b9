"""EvalRunCompareOperator: an eval run against a baseline run, item by item, and the items that flipped.

A gate says whether a run's pass rate dropped; this says whether the drop is evidence or noise (the
exact McNemar test on the items that flipped, ``api.stats``) and which items flipped, so a person can
read them. Two runs of one eval grade the same rows; pairing them by ``datasource_item_id``
(``api.pairing``) is far more sensitive than comparing two rates, because most items agree.

Memory is bounded by one run's compact outcome map, never by a run's items:

* pass 1 streams the baseline's output items a page at a time into ``pairing.BaselineOutcomes`` (an int
  per item), then streams the candidate's past it; nothing else of either run is kept (``pairing`` checks
  that the same ``datasource_item_id`` is the same row with a digest, without holding the rows);
* with a destination, the candidate's side of each flipped item (its output text and grader results) is
  written to a local spool file as it is paired, and the flipped ids are held in a dict; pass 2 streams
  the baseline again and writes, for each flipped id, one line with both sides (``_flips``). What is held
  in memory grows with the number of flips (an id and a file offset each), not with the run.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Iterator, Sequence
from functools import cached_property
from typing import Any

from airflow.providers.common.compat.sdk import (
    AirflowSkipException,
    BaseOperator,
    Context,
    ObjectStoragePath,
)

from airflow_provider_aoai_evals.api.client import EvalsClient
from airflow_provider_aoai_evals.api.comparison import comparison_line, summary_lines
from airflow_provider_aoai_evals.api.errors import EvalsConfigError
from airflow_provider_aoai_evals.api.models import EvalRun, OutputItem, RunStatus
from airflow_provider_aoai_evals.api.operations import MAX_PAGE_SIZE
from airflow_provider_aoai_evals.api.pairing import BaselineOutcomes, Pairer, Pairing
from airflow_provider_aoai_evals.api.stats import DEFAULT_CONFIDENCE, compare_runs
from airflow_provider_aoai_evals.api.summary import summarize
from airflow_provider_aoai_evals.api.validation import validate_id
from airflow_provider_aoai_evals.export.atomic import UnwritableTarget, atomic_write
from airflow_provider_aoai_evals.export.read_ahead import read_ahead
from airflow_provider_aoai_evals.hooks.evals import EvalsHook
from airflow_provider_aoai_evals.links import EvalRunReportLink, publish_report_url
from airflow_provider_aoai_evals.operators import _lineage as lineage
from airflow_provider_aoai_evals.operators._baseline import PREVIOUS, resolve_baseline
from airflow_provider_aoai_evals.operators._destination import (
    check_destination_type,
    destination_path,
    prepare_destination,
    unwritable,
)
from airflow_provider_aoai_evals.operators._flips import (
    SPOOL_MEMORY_BYTES,
    FlipsChanged,
    FlipSpool,
    item_side,
    output_text,
    write_flips,
)
from airflow_provider_aoai_evals.operators._run_lineage import run_lineage
from airflow_provider_aoai_evals.templating import TemplatedIds

#: With the flips file's pieces and the comparison's words, which callers have always imported from here.
__all__ = [
    "SPOOL_MEMORY_BYTES",
    "EvalRunCompareOperator",
    "FlipsChanged",
    "comparison_line",
    "item_side",
    "output_text",
    "summary_lines",
]

#: What ``destination=None`` means, in error messages.
_NO_FILE = "no flips file"


def _check_confidence(confidence: Any) -> float:
    """A level strictly between 0.5 and 1: below 0.5 an "interval" covers less than it misses, and 95
    (for 95 %) or 1 would make every interval meaningless."""
    if (
        isinstance(confidence, bool)
        or not isinstance(confidence, (int, float))
        or math.isnan(confidence)
        or not 0.5 < confidence < 1
    ):
        raise EvalsConfigError(
            "confidence", f"must be a level between 0.5 and 1 (exclusive) such as 0.95, got {confidence!r}"
        )
    return float(confidence)


class EvalRunCompareOperator(TemplatedIds, BaseOperator):
    """Compare an eval run with a baseline run, paired item by item, and optionally write the flipped items.

    Streams both runs' output items (bounded memory, see the module docstring), pairs them by
    ``datasource_item_id`` and returns ``stats.compare_runs(...).to_xcom()`` with the pairing's counts,
    overall and per criterion: flips each way, the exact McNemar p-value, both rates with Wilson intervals
    and the difference with Newcombe's interval. Runs that cannot be paired (different datasets, different
    rows, unusable ids) are compared from their counts with the two-proportions z-test, and ``reason`` says
    why. The comparison reports; it never fails the task on a regression (gate that with
    ``EvalRunCheckOperator``).

    With ``destination``, also writes the flipped items as JSON Lines (written atomically, as the export
    is): per item the data source row, both runs' output text and grader results, and the direction.

    Returns (XCom) the comparison plus ``eval_id``, ``pairing`` (``Pairing.to_xcom()``), ``summary`` (the
    lines it logs), ``flips_path`` and ``flips`` (see docs/compare.md).

    :param eval_id: the eval (templated).
    :param run_id: the candidate run (templated); it must have completed.
    :param baseline_run_id: a run id of the same eval, or ``"previous"`` (the default) for the latest
        completed run of the eval created before ``run_id`` (templated).
    :param baseline_same_model: with ``"previous"``, only consider runs of the same model.
    :param baseline_metadata_key: with ``"previous"``, only consider runs whose metadata has the same value
        for this key (e.g. ``"dataset"``).
    :param allow_missing_baseline: when no baseline run exists (first night), skip the task instead of
        failing it.
    :param confidence: level of every interval, between 0.5 and 1 (exclusive).
    :param destination: where to write the flipped items: an ``ObjectStoragePath``, or a URL / absolute
        path string (templated). ``None``: no file.
    :param storage_conn_id: the connection of a string ``destination``'s filesystem (templated).
    :param conn_id: an ``aoai_evals`` connection.
    """

    template_fields: Sequence[str] = (
        "eval_id",
        "run_id",
        "baseline_run_id",
        "destination",
        "storage_conn_id",
    )
    templated_ids = ("eval_id", "run_id", "baseline_run_id")
    operator_extra_links = (EvalRunReportLink(),)
    ui_color = "#e3e8f5"

    def __init__(
        self,
        *,
        eval_id: str,
        run_id: str,
        baseline_run_id: str = PREVIOUS,
        baseline_same_model: bool = False,
        baseline_metadata_key: str | None = None,
        allow_missing_baseline: bool = False,
        confidence: float = DEFAULT_CONFIDENCE,
        destination: ObjectStoragePath | str | None = None,
        storage_conn_id: str | None = None,
        conn_id: str = EvalsHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.eval_id = eval_id
        self.run_id = run_id
        self.baseline_run_id = baseline_run_id
        self.baseline_same_model = baseline_same_model
        self.baseline_metadata_key = baseline_metadata_key
        self.allow_missing_baseline = allow_missing_baseline
        self.confidence = _check_confidence(confidence)
        self.destination = destination
        self.storage_conn_id = storage_conn_id
        self.conn_id = conn_id
        check_destination_type(destination, _NO_FILE)
        # For lineage: the candidate as fetched, the baseline's id, and the file written with its size.
        self._observed: lineage.ObservedRun | None = None
        self._baseline_id: str | None = None
        self._written: tuple[ObjectStoragePath, int, int] | None = None

    @cached_property
    def hook(self) -> EvalsHook:
        return EvalsHook(self.conn_id)

    # -- input checks (all before any request) -------------------------------------------------------------

    def _check_rendered(self) -> ObjectStoragePath | None:
        self.check_rendered_ids()
        validate_id("eval_id", self.eval_id)
        validate_id("run_id", self.run_id)
        if not isinstance(self.baseline_run_id, str) or not self.baseline_run_id:
            raise EvalsConfigError(
                "baseline_run_id", f"must be a run id or {PREVIOUS!r}, got {self.baseline_run_id!r}"
            )
        if self.baseline_run_id != PREVIOUS:
            validate_id("baseline_run_id", self.baseline_run_id)
            if self.baseline_run_id == self.run_id:
                raise EvalsConfigError(
                    "baseline_run_id", f"is run {self.run_id} itself; name an earlier run or {PREVIOUS!r}"
                )
        return destination_path(self.destination, self.storage_conn_id, none_means=_NO_FILE)

    @staticmethod
    def _check_completed(parameter: str, run: EvalRun) -> None:
        if run.status != RunStatus.COMPLETED:
            raise EvalsConfigError(
                parameter,
                f"run {run.id} is {run.status!r}, not 'completed': its output items are not all graded, so "
                "a comparison would describe part of the run (wait for it with EvalRunSensor first)",
            )

    # -- execution -----------------------------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        path = self._check_rendered()
        if path is not None:
            prepare_destination(path)
        eval_id, run_id = str(self.eval_id), str(self.run_id)
        client = self.hook.get_conn()
        run = client.get_run(eval_id, run_id)
        self._observed = lineage.ObservedRun(eval_id, run_id, summarize(run).to_xcom())
        publish_report_url(context, run.report_url)
        if run.eval_id and run.eval_id != eval_id:
            raise EvalsConfigError("run_id", f"run {run.id} belongs to eval {run.eval_id}, not {eval_id}")
        self._check_completed("run_id", run)
        baseline = resolve_baseline(
            client,
            eval_id,
            run,
            str(self.baseline_run_id),
            same_model=self.baseline_same_model,
            metadata_key=self.baseline_metadata_key,
            allow_missing=self.allow_missing_baseline,
            log=self.log,
        )
        if baseline is None:
            raise AirflowSkipException(
                f"No baseline run for eval run {run_id} (baseline_run_id={self.baseline_run_id!r}); "
                "nothing compared (allow_missing_baseline=True)"
            )
        self._baseline_id = baseline.id
        self._check_completed("baseline_run_id", baseline)

        with tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES) as spool_file:
            spool = FlipSpool(spool_file) if path is not None else None
            pairing = self._pair(client, eval_id, baseline, run, spool)
            comparison = compare_runs(summarize(run), summarize(baseline), pairing, self.confidence)
            summary = summary_lines(comparison, pairing)
            for line in summary:
                self.log.info("%s", line)
            flips: dict[str, Any] = {"flips_path": None, "flips": None}
            if path is not None and spool is not None:
                if comparison.paired:
                    flips = self._write_flips(client, eval_id, baseline.id, path, spool)
                else:
                    self.log.warning(
                        "No flips file written to %s: the runs were not paired (%s), so no item is known "
                        "to have flipped",
                        path,
                        comparison.reason,
                    )
        return {
            **comparison.to_xcom(),
            "eval_id": eval_id,
            "pairing": pairing.to_xcom(),
            "summary": summary,
            **flips,
        }

    def _pages(self, client: EvalsClient, eval_id: str, run_id: str) -> Iterator[list[OutputItem]]:
        """A run's items a page at a time, the next page fetched while this one is paired or written (one
        page ahead: memory stays a few pages, and the wait for the API overlaps the work on the last)."""
        pages = client.list_output_item_pages(eval_id, run_id, limit=MAX_PAGE_SIZE)
        with read_ahead(pages) as ahead:
            for page in ahead:
                yield page.data

    def _feed(
        self, add: Callable[[list[OutputItem]], None], client: EvalsClient, eval_id: str, run_id: str
    ) -> int:
        """Every page of the run to ``add``; returns how many items there were."""
        count = 0
        for items in self._pages(client, eval_id, run_id):
            add(items)
            count += len(items)
        return count

    def _pair(
        self, client: EvalsClient, eval_id: str, baseline: EvalRun, run: EvalRun, spool: FlipSpool | None
    ) -> Pairing:
        """Pass 1: the baseline into its compact map, then the candidate past it, a page at a time."""
        outcomes = BaselineOutcomes(baseline.id)
        baseline_items = self._feed(outcomes.add, client, eval_id, baseline.id)
        if baseline_items == 0:
            raise EvalsConfigError(
                "baseline_run_id",
                f"baseline run {baseline.id} has no output items, so there is nothing to pair with (the run "
                "graded nothing, or its items were deleted); name a run that has them",
            )
        pairer = Pairer(outcomes, run.id, on_flip=spool.add if spool is not None else None)
        candidate_items = self._feed(pairer.add, client, eval_id, run.id)
        if candidate_items == 0:
            raise EvalsConfigError(
                "run_id", f"run {run.id} has no output items, so there is nothing to compare"
            )
        pairing = pairer.result()
        self.log.info(
            "Read %d output items of baseline run %s and %d of run %s",
            baseline_items,
            baseline.id,
            candidate_items,
            run.id,
        )
        return pairing

    def _write_flips(
        self, client: EvalsClient, eval_id: str, baseline_id: str, path: ObjectStoragePath, spool: FlipSpool
    ) -> dict[str, Any]:
        """Pass 2: the baseline again; each flipped item becomes one line with both runs' sides."""
        count = size = 0
        self.log.info("Writing %d flipped items to %s", len(spool.index), path)
        try:
            with atomic_write(path.fs, path.path) as handle:
                if spool.index:  # no flips: an empty file, without reading the baseline again
                    pages = self._pages(client, eval_id, baseline_id)
                    count, size = write_flips(pages, spool, handle.write, baseline_id)
        except UnwritableTarget as exc:
            raise unwritable(path, exc) from None
        self._written = (path, count, size)
        self.log.info("Wrote %d flipped items (%d bytes) to %s", count, size, path)
        return {"flips_path": str(path), "flips": count}

    # -- lineage -------------------------------------------------------------------------------------------

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Inputs: both runs' results; output: the flips file, with its line count and size. Facet: the
        candidate run's ids, status and pass rates. None without the OpenLineage provider."""
        return lineage.to_operator_lineage(self._lineage_report)

    def _lineage_report(self) -> lineage.LineageReport | None:
        outputs = []
        if self._written is not None:
            path, count, size = self._written
            outputs.append(lineage.storage_dataset(path, row_count=count, size_bytes=size))
        return run_lineage(
            self.hook,
            str(self.eval_id),
            str(self.run_id),
            self._observed,
            baseline_run_id=self._baseline_id,
            outputs=outputs,
        )

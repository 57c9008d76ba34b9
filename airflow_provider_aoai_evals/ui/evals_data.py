"""What the pages read from the Evals API, through ``EvalsHook`` on the api-server, and nothing more.

Runs are reduced to their :class:`~airflow_provider_aoai_evals.api.summary.RunSummary` (the provider's
pass-rate policy, without the run's ``data_source``) before they are cached or rendered, so a page can never
show an inline data source's rows, and the cache holds a few KB per run. Answers are cached per connection
(see :mod:`.cache`); callers check the user's access to the connection first.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_aoai_evals.api.client import EvalsClient
from airflow_provider_aoai_evals.api.models import OutputItem
from airflow_provider_aoai_evals.api.pairing import BaselineOutcomes, Flip, Pairer, Pairing
from airflow_provider_aoai_evals.api.stats import RunRates, mcnemar_exact_p, run_rates
from airflow_provider_aoai_evals.api.summary import RunSummary, summarize
from airflow_provider_aoai_evals.api.validation import validate_id
from airflow_provider_aoai_evals.hooks.evals import EvalsHook
from airflow_provider_aoai_evals.ui import settings
from airflow_provider_aoai_evals.ui.cache import TTLCache

CACHE = TTLCache(settings.CACHE_MAX_ENTRIES)


@dataclass(frozen=True)
class EvalInfo:
    id: str
    name: str | None
    created_at: int | None
    criteria: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunRow:
    """One run as the chart and the table show it."""

    summary: RunSummary
    rates: RunRates


@dataclass(frozen=True)
class EvalRuns:
    eval: EvalInfo
    runs: tuple[RunRow, ...]  # oldest first
    #: True when the limit (``settings.MAX_RUNS``) was reached: older runs, if any, are not shown.
    truncated: bool


class TooManyItems(Exception):
    """A run has more output items than the page pairs itself (``settings.MAX_PAIRED_ITEMS``)."""


@dataclass(frozen=True)
class FlipItem:
    datasource_item_id: int
    overall: str | None
    criteria: dict[str, str]
    input: str
    baseline_output: str
    candidate_output: str


@dataclass(frozen=True)
class FlipReport:
    baseline_run_id: str
    candidate_run_id: str
    pairing: Pairing
    #: Flipped items found (overall or on a criterion); ``shown`` holds the first of them.
    flipped: int
    shown: tuple[FlipItem, ...] = field(default_factory=tuple)
    p_value: float | None = None


def _client(conn_id: str) -> EvalsClient:
    return EvalsHook(conn_id).get_conn()


def _ttl() -> float:
    return settings.cache_ttl_seconds()


def list_evals(conn_id: str) -> tuple[EvalInfo, ...]:
    """The connection's evals, newest first (at most ``settings.MAX_EVALS``)."""

    def load() -> tuple[EvalInfo, ...]:
        with _client(conn_id) as client:
            evals = itertools.islice(client.list_evals(order="desc"), settings.MAX_EVALS)
            return tuple(EvalInfo(e.id, e.name, e.created_at) for e in evals)

    return CACHE.get_or_load(("evals", conn_id), _ttl(), load)


def eval_runs(conn_id: str, eval_id: str) -> EvalRuns:
    """The eval and its newest runs (at most ``settings.MAX_RUNS``, so at most 10 list requests of 100)."""
    validate_id("eval_id", eval_id)  # ids come from the page's URL: never a path of their own

    def load() -> EvalRuns:
        with _client(conn_id) as client:
            found = client.get_eval(eval_id)
            criteria = tuple(str(c.get("name") or c.get("type") or "") for c in found.testing_criteria)
            # No look past the limit: asking whether run 1,001 exists would cost an 11th list request.
            newest = list(itertools.islice(client.list_runs(eval_id, order="desc"), settings.MAX_RUNS))
        truncated = len(newest) == settings.MAX_RUNS
        rows = []
        for run in reversed(newest):
            summary = summarize(run)  # drops data_source
            rows.append(RunRow(summary, run_rates(summary)))
        rows.sort(key=lambda r: r.summary.created_at or 0)
        return EvalRuns(EvalInfo(found.id, found.name, found.created_at, criteria), tuple(rows), truncated)

    return CACHE.get_or_load(("runs", conn_id, eval_id), _ttl(), load)


def run_summary(conn_id: str, eval_id: str, run_id: str) -> RunSummary:
    validate_id("eval_id", eval_id)
    validate_id("run_id", run_id)

    def load() -> RunSummary:
        with _client(conn_id) as client:
            return summarize(client.get_run(eval_id, run_id))

    return CACHE.get_or_load(("run", conn_id, eval_id, run_id), _ttl(), load)


def _bounded_pages(client: EvalsClient, eval_id: str, run_id: str) -> Iterator[list[OutputItem]]:
    seen = 0
    for page in client.list_output_item_pages(eval_id, run_id):
        seen += len(page.data)
        if seen > settings.MAX_PAIRED_ITEMS:
            raise TooManyItems(
                f"run {run_id} has more than {settings.MAX_PAIRED_ITEMS} output items; "
                "the page does not pair runs that large (use EvalRunCompareOperator's flips file)"
            )
        yield page.data


def text_of(value: Any) -> str:
    """A short, plain-text rendering of an item's input or a sample's output (escaped by the template)."""
    if value is None:
        return ""
    if isinstance(value, dict) and isinstance(value.get("output"), list):
        parts = [str(m.get("content", "")) for m in value["output"] if isinstance(m, dict)]
        text = "\n".join(parts)
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    if len(text) > settings.MAX_TEXT_CHARS:
        text = text[: settings.MAX_TEXT_CHARS] + " [...]"
    return text


def flips(conn_id: str, eval_id: str, baseline_run_id: str, candidate_run_id: str) -> FlipReport:
    """Pair the two runs' output items (``api.pairing``) and keep the first flipped items, with the input
    and the candidate's output; the baseline's outputs of those items come from a second, early-stopping
    pass over the baseline (the pairing keeps no baseline items)."""
    for name, value in (
        ("eval_id", eval_id),
        ("baseline_run_id", baseline_run_id),
        ("run_id", candidate_run_id),
    ):
        validate_id(name, value)

    def load() -> FlipReport:
        shown: list[Flip] = []
        count = 0

        def on_flip(flip: Flip) -> None:
            nonlocal count
            count += 1
            if len(shown) < settings.MAX_FLIPS_SHOWN:
                shown.append(flip)

        with _client(conn_id) as client:
            outcomes = BaselineOutcomes(baseline_run_id)
            for items in _bounded_pages(client, eval_id, baseline_run_id):
                outcomes.add(items)
            pairer = Pairer(outcomes, candidate_run_id, on_flip=on_flip)
            for items in _bounded_pages(client, eval_id, candidate_run_id):
                pairer.add(items)
            pairing = pairer.result()
            if not pairing.pairable:
                shown.clear()
                count = 0
            wanted = {f.datasource_item_id for f in shown}
            before: dict[int, str] = {}
            if wanted:
                for items in _bounded_pages(client, eval_id, baseline_run_id):
                    for item in items:
                        if item.datasource_item_id in wanted:
                            before[item.datasource_item_id] = text_of(item.sample)
                    if len(before) == len(wanted):
                        break
        overall = pairing.overall
        p_value = mcnemar_exact_p(overall.pass_to_fail, overall.fail_to_pass) if pairing.pairable else None
        return FlipReport(
            baseline_run_id=baseline_run_id,
            candidate_run_id=candidate_run_id,
            pairing=pairing,
            flipped=count,
            shown=tuple(
                FlipItem(
                    datasource_item_id=f.datasource_item_id,
                    overall=f.overall,
                    criteria=dict(f.criteria),
                    input=text_of(f.candidate.datasource_item),
                    baseline_output=before.get(f.datasource_item_id, ""),
                    candidate_output=text_of(f.candidate.sample),
                )
                for f in shown
            ),
            p_value=p_value,
        )

    return CACHE.get_or_load(("flips", conn_id, eval_id, baseline_run_id, candidate_run_id), _ttl(), load)

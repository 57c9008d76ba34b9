"""Gate or branch a pipeline on an eval run's pass rates, optionally against a baseline run.

Both operators take the same flat threshold keywords and ask ``api.gates.evaluate`` for the verdict; the
rates come from the run summary (``api.summary``), so a gate, a branch and the sensor's XCom always agree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from functools import cached_property
from typing import Any

from airflow.providers.common.compat.sdk import (
    AirflowFailException,
    AirflowSkipException,
    BaseBranchOperator,
    BaseOperator,
    Context,
)

from airflow_provider_aoai_evals.api.client import EvalsClient
from airflow_provider_aoai_evals.api.errors import EvalsConfigError
from airflow_provider_aoai_evals.api.gates import INCONCLUSIVE, Thresholds, Verdict, evaluate
from airflow_provider_aoai_evals.api.models import EvalRun
from airflow_provider_aoai_evals.api.pairing import pair_items
from airflow_provider_aoai_evals.api.stats import DEFAULT_CONFIDENCE, Comparison, compare_runs
from airflow_provider_aoai_evals.api.summary import RunSummary, summarize
from airflow_provider_aoai_evals.api.validation import validate_id
from airflow_provider_aoai_evals.hooks.evals import EvalsHook
from airflow_provider_aoai_evals.links import EvalRunReportLink, publish_report_url
from airflow_provider_aoai_evals.operators import _lineage as lineage
from airflow_provider_aoai_evals.operators._baseline import PREVIOUS, resolve_baseline
from airflow_provider_aoai_evals.operators._run_lineage import run_lineage
from airflow_provider_aoai_evals.templating import TemplatedIds


class EvalGateFailed(AirflowFailException):
    """The run did not meet its thresholds. Not retried: the same run will fail the same gate."""

    def __init__(self, verdict: Verdict) -> None:
        self.verdict = verdict
        super().__init__(verdict.message())


class _QualityGate(TemplatedIds, BaseOperator):
    """Thresholds, baseline lookup and the verdict, shared by the check and the branch operator.

    :param eval_id: the eval (templated).
    :param run_id: the run to judge (templated).
    :param min_pass_rate: overall pass rate at least this (errored items count as not passed).
    :param min_criterion_pass_rates: ``{criterion name: rate}``; names are the ones given to the graders.
    :param max_errored_rate: errored items at most this share of executed items.
    :param baseline_run_id: a run id, or ``"previous"`` for the latest completed run of the eval before
        this one (templated).
    :param max_regression: fail when any pass rate (overall or per criterion) drops more than this many
        absolute rate points (0.05 = five points) below the baseline's.
    :param baseline_same_model: with ``"previous"``, only consider runs of the same model.
    :param baseline_metadata_key: with ``"previous"``, only consider runs whose metadata has the same value
        for this key (e.g. ``"dataset"``).
    :param allow_missing_baseline: when no baseline run exists (first night), skip the regression check
        instead of failing.
    :param confidence: decide each rate threshold on the rate's interval at this level (e.g. ``0.95``):
        passed when the lower bound meets the threshold, failed when the upper bound is below it,
        inconclusive otherwise. Default None: point estimates, as before.
    :param regression_alpha: with ``max_regression`` and a baseline: a drop larger than ``max_regression``
        fails only when it is also significant at this level (paired item by item when both runs share
        their dataset, else from the counts), and is inconclusive otherwise. Default None.
    """

    template_fields: Sequence[str] = ("eval_id", "run_id", "baseline_run_id")
    templated_ids = ("eval_id", "run_id", "baseline_run_id")
    operator_extra_links = (EvalRunReportLink(),)

    def __init__(
        self,
        *,
        eval_id: str,
        run_id: str,
        min_pass_rate: float | None = None,
        min_criterion_pass_rates: Mapping[str, float] | None = None,
        max_errored_rate: float | None = None,
        baseline_run_id: str | None = None,
        max_regression: float | None = None,
        baseline_same_model: bool = False,
        baseline_metadata_key: str | None = None,
        allow_missing_baseline: bool = False,
        confidence: float | None = None,
        regression_alpha: float | None = None,
        conn_id: str = EvalsHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.eval_id = eval_id
        self.run_id = run_id
        self.thresholds = Thresholds(
            min_pass_rate=min_pass_rate,
            min_criterion_pass_rates=dict(min_criterion_pass_rates or {}),
            max_errored_rate=max_errored_rate,
            max_regression=max_regression,
            confidence=confidence,
            regression_alpha=regression_alpha,
        )
        if self.thresholds.empty:
            raise EvalsConfigError(
                "min_pass_rate",
                "set at least one of min_pass_rate, min_criterion_pass_rates, max_errored_rate, max_regression",
            )
        if max_regression is not None and not baseline_run_id:
            raise EvalsConfigError(
                "baseline_run_id", f"max_regression needs a baseline: a run id or {PREVIOUS!r}"
            )
        if baseline_run_id and max_regression is None:
            raise EvalsConfigError("max_regression", "a baseline_run_id is only used with max_regression")
        self.baseline_run_id = baseline_run_id
        self.baseline_same_model = baseline_same_model
        self.baseline_metadata_key = baseline_metadata_key
        self.allow_missing_baseline = allow_missing_baseline
        self.conn_id = conn_id
        # For lineage: the judged run as fetched and the verdict (set before a failing gate raises).
        self._observed: lineage.ObservedRun | None = None
        self._verdict: dict[str, Any] | None = None

    @cached_property
    def hook(self) -> EvalsHook:
        return EvalsHook(self.conn_id)

    def verdict(self, context: Context) -> Verdict:
        self.check_rendered_ids()
        validate_id("eval_id", self.eval_id)
        validate_id("run_id", self.run_id)
        if self.baseline_run_id and self.baseline_run_id != PREVIOUS:
            validate_id("baseline_run_id", self.baseline_run_id)
        client = self.hook.get_conn()
        run = client.get_run(self.eval_id, self.run_id)
        self._observed = lineage.ObservedRun(self.eval_id, self.run_id, summarize(run).to_xcom())
        publish_report_url(context, run.report_url)
        thresholds = self.thresholds
        summary = summarize(run)
        baseline_run = None
        if thresholds.max_regression is not None:
            baseline_run = self._baseline(client, run)
            if baseline_run is None:
                self.log.warning(
                    "No baseline run found; regression not checked (allow_missing_baseline=True)"
                )
                thresholds = replace(thresholds, max_regression=None, regression_alpha=None)
        baseline = summarize(baseline_run) if baseline_run is not None else None
        comparison = None
        if baseline_run is not None and baseline is not None and thresholds.regression_alpha is not None:
            comparison = self._compare(client, summary, baseline)
        verdict = evaluate(summary, thresholds, baseline, comparison)
        self._verdict = verdict.to_xcom()
        self.log.info("%s", verdict.message())
        context["ti"].xcom_push(key="verdict", value=self._verdict)
        return verdict

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Inputs: the judged run's results and, for a regression check, the baseline run's. Facets: the
        run's ids, status and pass rates, and the verdict with each check.

        Also called when the gate failed the task, so the FAIL event carries the failing checks. None
        without the OpenLineage provider.
        """
        return lineage.to_operator_lineage(self._lineage_report)

    def _lineage_report(self) -> lineage.LineageReport | None:
        baseline = self._verdict.get("baseline_run_id") if self._verdict is not None else None
        return run_lineage(
            self.hook,
            str(self.eval_id),
            str(self.run_id),
            self._observed,
            baseline_run_id=str(baseline) if baseline else None,
            facet={"verdict": lineage.verdict_fields(self._verdict)} if self._verdict is not None else None,
        )

    def _compare(self, client: EvalsClient, summary: RunSummary, baseline: RunSummary) -> Comparison:
        """Both runs' items paired by ``datasource_item_id`` (the baseline held as a compact map, this run
        streamed past it), then compared: a paired test when every item is in both runs."""
        pairing = pair_items(
            client.list_output_items(str(self.eval_id), baseline.run_id),
            client.list_output_items(str(self.eval_id), summary.run_id),
            baseline_run_id=baseline.run_id,
            candidate_run_id=summary.run_id,
        )
        comparison = compare_runs(
            summary, baseline, pairing, self.thresholds.confidence or DEFAULT_CONFIDENCE
        )
        self.log.info(
            "Compared with baseline %s: %s (%s)", baseline.run_id, comparison.test, comparison.reason
        )
        return comparison

    def _baseline(self, client: EvalsClient, run: EvalRun) -> EvalRun | None:
        return resolve_baseline(
            client,
            str(self.eval_id),
            run,
            str(self.baseline_run_id),
            same_model=self.baseline_same_model,
            metadata_key=self.baseline_metadata_key,
            allow_missing=self.allow_missing_baseline,
            log=self.log,
        )


class EvalRunCheckOperator(_QualityGate):
    """Fail the task (or skip it with ``soft_fail=True``) when the run misses its thresholds.

    The error lists every failing check with its rate and threshold (and the baseline's rate for
    regressions). Returns the verdict as XCom when the run passes.

    :param on_inconclusive: with ``confidence`` or ``regression_alpha``, what an inconclusive verdict does:
        ``"fail"`` (default) fails the task like a failed check, ``"pass"`` lets it pass with a warning.
    """

    def __init__(self, *, soft_fail: bool = False, on_inconclusive: str = "fail", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if on_inconclusive not in ("fail", "pass"):
            raise EvalsConfigError("on_inconclusive", f"must be 'fail' or 'pass', got {on_inconclusive!r}")
        self.soft_fail = soft_fail
        self.on_inconclusive = on_inconclusive

    def execute(self, context: Context) -> dict[str, Any]:
        verdict = self.verdict(context)
        if verdict.outcome == INCONCLUSIVE and self.on_inconclusive == "pass":
            self.log.warning("The evidence is inconclusive; passing the gate as on_inconclusive='pass'")
            return verdict.to_xcom()
        if not verdict.passed:
            if self.soft_fail:
                raise AirflowSkipException(verdict.message())
            raise EvalGateFailed(verdict)
        return verdict.to_xcom()


class EvalRunBranchOperator(_QualityGate, BaseBranchOperator):
    """Follow ``follow_task_ids_if_true`` when the run meets its thresholds, else ``follow_task_ids_if_false``.

    With ``confidence`` or ``regression_alpha``, an inconclusive verdict follows ``inconclusive_task_ids``
    when given (a person's review, say), else ``follow_task_ids_if_false``: no evidence is not a pass.

    The verdict is pushed to XCom under ``verdict``. Bad configuration (an unknown criterion, a missing
    baseline) fails the task rather than choosing a branch.
    """

    def __init__(
        self,
        *,
        follow_task_ids_if_true: str | Sequence[str],
        follow_task_ids_if_false: str | Sequence[str],
        inconclusive_task_ids: str | Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.follow_task_ids_if_true = follow_task_ids_if_true
        self.follow_task_ids_if_false = follow_task_ids_if_false
        self.inconclusive_task_ids = inconclusive_task_ids

    def choose_branch(self, context: Context) -> str | Iterable[str]:
        verdict = self.verdict(context)
        if verdict.passed:
            return self.follow_task_ids_if_true
        if verdict.outcome == INCONCLUSIVE and self.inconclusive_task_ids is not None:
            return self.inconclusive_task_ids
        return self.follow_task_ids_if_false

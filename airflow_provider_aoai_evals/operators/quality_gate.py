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
from airflow_provider_aoai_evals.api.errors import EvalsConfigError, EvalsNotFoundError
from airflow_provider_aoai_evals.api.gates import Thresholds, Verdict, evaluate
from airflow_provider_aoai_evals.api.models import EvalRun, RunStatus
from airflow_provider_aoai_evals.api.summary import RunSummary, summarize
from airflow_provider_aoai_evals.api.validation import validate_id
from airflow_provider_aoai_evals.hooks.evals import EvalsHook
from airflow_provider_aoai_evals.links import EvalRunReportLink, publish_report_url
from airflow_provider_aoai_evals.operators import _lineage as lineage
from airflow_provider_aoai_evals.operators._lineage import ObservedRun
from airflow_provider_aoai_evals.templating import TemplatedIds

#: ``baseline_run_id`` value meaning "the latest completed run of the same eval before this one".
PREVIOUS = "previous"
#: How many earlier runs are scanned for a baseline.
BASELINE_SCAN_LIMIT = 500


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
        self._observed: ObservedRun | None = None
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
        self._observed = ObservedRun(self.eval_id, self.run_id, summarize(run).to_xcom())
        publish_report_url(context, run.report_url)
        thresholds = self.thresholds
        baseline = None
        if thresholds.max_regression is not None:
            baseline = self._baseline(client, run)
            if baseline is None:
                self.log.warning(
                    "No baseline run found; regression not checked (allow_missing_baseline=True)"
                )
                thresholds = replace(thresholds, max_regression=None)
        verdict = evaluate(summarize(run), thresholds, baseline)
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
        namespace = lineage.namespace_of(self.hook)
        if namespace is None:
            return None
        eval_id, run_id = str(self.eval_id), str(self.run_id)
        inputs = [lineage.run_dataset(namespace, eval_id, run_id)]
        facet = lineage.run_facet_fields(self._observed, eval_id, run_id)
        if self._verdict is not None:
            facet["verdict"] = lineage.verdict_fields(self._verdict)
            baseline = self._verdict.get("baseline_run_id")
            if baseline:
                inputs.append(lineage.run_dataset(namespace, eval_id, str(baseline)))
        return lineage.LineageReport(
            api_namespace=namespace, inputs=inputs, facet=facet, external_run_id=run_id
        )

    def _baseline(self, client: EvalsClient, run: EvalRun) -> RunSummary | None:
        if self.baseline_run_id != PREVIOUS:
            try:
                return summarize(client.get_run(self.eval_id, str(self.baseline_run_id)))
            except EvalsNotFoundError:
                if self.allow_missing_baseline:
                    return None
                raise EvalsConfigError(
                    "baseline_run_id",
                    f"baseline run {self.baseline_run_id} of eval {self.eval_id} does not exist",
                ) from None
        found = _previous_completed(
            client.list_runs(self.eval_id, status=RunStatus.COMPLETED, order="desc"),
            run,
            same_model=self.baseline_same_model,
            metadata_key=self.baseline_metadata_key,
        )
        if found is None:
            if self.allow_missing_baseline:
                return None
            scope = []
            if self.baseline_same_model:
                scope.append(f"model {run.model!r}")
            if self.baseline_metadata_key:
                value = (run.metadata or {}).get(self.baseline_metadata_key)
                scope.append(f"metadata {self.baseline_metadata_key}={value!r}")
            where = f" with {' and '.join(scope)}" if scope else ""
            raise EvalsConfigError(
                "baseline_run_id",
                f"no completed run of eval {self.eval_id} before run {run.id}{where} to compare with "
                "(set allow_missing_baseline=True to skip the regression check then)",
            )
        self.log.info("Baseline: run %s (%s, created %s)", found.id, found.model, found.created_at)
        return summarize(found)


def _previous_completed(
    runs: Iterable[EvalRun], run: EvalRun, *, same_model: bool, metadata_key: str | None
) -> EvalRun | None:
    """The newest completed run created before ``run`` that matches the filters (bounded scan)."""
    wanted = (run.metadata or {}).get(metadata_key) if metadata_key else None
    for index, candidate in enumerate(runs):
        if index >= BASELINE_SCAN_LIMIT:
            return None
        if candidate.id == run.id or candidate.status != RunStatus.COMPLETED:
            continue
        if (
            run.created_at is not None
            and candidate.created_at is not None
            and candidate.created_at > run.created_at
        ):
            continue  # a later run is not a baseline for this one
        if same_model and candidate.model != run.model:
            continue
        if metadata_key and (candidate.metadata or {}).get(metadata_key) != wanted:
            continue
        return candidate
    return None


class EvalRunCheckOperator(_QualityGate):
    """Fail the task (or skip it with ``soft_fail=True``) when the run misses its thresholds.

    The error lists every failing check with its rate and threshold (and the baseline's rate for
    regressions). Returns the verdict as XCom when the run passes.
    """

    def __init__(self, *, soft_fail: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.soft_fail = soft_fail

    def execute(self, context: Context) -> dict[str, Any]:
        verdict = self.verdict(context)
        if not verdict.passed:
            if self.soft_fail:
                raise AirflowSkipException(verdict.message())
            raise EvalGateFailed(verdict)
        return verdict.to_xcom()


class EvalRunBranchOperator(_QualityGate, BaseBranchOperator):
    """Follow ``follow_task_ids_if_true`` when the run meets its thresholds, else ``follow_task_ids_if_false``.

    The verdict is pushed to XCom under ``verdict``. Bad configuration (an unknown criterion, a missing
    baseline) fails the task rather than choosing a branch.
    """

    def __init__(
        self,
        *,
        follow_task_ids_if_true: str | Sequence[str],
        follow_task_ids_if_false: str | Sequence[str],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.follow_task_ids_if_true = follow_task_ids_if_true
        self.follow_task_ids_if_false = follow_task_ids_if_false

    def choose_branch(self, context: Context) -> str | Iterable[str]:
        verdict = self.verdict(context)
        return self.follow_task_ids_if_true if verdict.passed else self.follow_task_ids_if_false

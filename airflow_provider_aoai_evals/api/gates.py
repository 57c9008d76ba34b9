"""Quality gates: the thresholds a gate is given, and its verdict over a run summary.

The check and the branch operators both call ``evaluate``; it reads rates only from ``RunSummary`` (the
pass-rate policy in ``summary.py``) and never computes a rate itself. It runs the checks the thresholds
ask for (each one is ``gate_checks``'s) and assembles them into a verdict that lists every failing check
with its value and threshold, so one message says everything that is wrong.

Deciding on evidence (off unless asked for, so a gate without these keywords decides as it always did):

* with ``confidence``, a rate threshold has three outcomes: **passed** when the rate's interval
  (``stats.estimate_rate``) lies at or above the threshold, **failed** when it lies wholly below it,
  **inconclusive** when it straddles it (for ``max_errored_rate`` the same, mirrored);
* with ``regression_alpha``, a drop larger than ``max_regression`` fails only when the comparison of the two
  runs (``stats.compare_runs``: paired by item when it can be) finds it significant at that level, and is
  inconclusive otherwise. A drop within ``max_regression`` passes, significant or not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_aoai_evals.api.comparison import Comparison, compare_runs
from airflow_provider_aoai_evals.api.errors import EvalsConfigError
from airflow_provider_aoai_evals.api.gate_checks import (
    EPSILON,
    FAILED,
    INCONCLUSIVE,
    PASSED,
    Check,
    at_least,
    at_most,
    regressions,
    regressions_on_evidence,
)
from airflow_provider_aoai_evals.api.models import RunStatus
from airflow_provider_aoai_evals.api.proportions import DEFAULT_CONFIDENCE, estimate_rate
from airflow_provider_aoai_evals.api.stats import run_rates
from airflow_provider_aoai_evals.api.summary import RunSummary

#: With the check types of ``gate_checks`` that callers have always imported from here.
__all__ = [
    "EPSILON",
    "FAILED",
    "INCONCLUSIVE",
    "PASSED",
    "Check",
    "Thresholds",
    "Verdict",
    "evaluate",
]


def _rate(parameter: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise EvalsConfigError(parameter, f"must be a rate between 0 and 1, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Thresholds:
    """The gate keywords shared by EvalRunCheckOperator and EvalRunBranchOperator."""

    min_pass_rate: float | None = None
    min_criterion_pass_rates: Mapping[str, float] = field(default_factory=dict)
    max_errored_rate: float | None = None
    max_regression: float | None = None
    #: Confidence level of the intervals a threshold is judged on (None: point estimates, as before).
    confidence: float | None = None
    #: Significance level a regression must reach to fail (None: any drop past max_regression fails).
    regression_alpha: float | None = None

    def __post_init__(self) -> None:
        if self.confidence is not None:
            if isinstance(self.confidence, bool) or not isinstance(self.confidence, (int, float)):
                raise EvalsConfigError(
                    "confidence", f"must be a number such as 0.95, got {self.confidence!r}"
                )
            if not 0.5 < self.confidence < 1:
                raise EvalsConfigError(
                    "confidence", f"must be a level between 0.5 and 1 such as 0.95, got {self.confidence!r}"
                )
        if self.regression_alpha is not None:
            alpha = self.regression_alpha
            if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
                raise EvalsConfigError(
                    "regression_alpha",
                    f"must be a significance level between 0 and 1 such as 0.05, got {alpha!r}",
                )
            if self.max_regression is None:
                raise EvalsConfigError(
                    "regression_alpha", "tests a regression: set max_regression and baseline_run_id with it"
                )
        if self.min_pass_rate is not None:
            _rate("min_pass_rate", self.min_pass_rate)
        if self.max_errored_rate is not None:
            _rate("max_errored_rate", self.max_errored_rate)
        if self.max_regression is not None:
            _rate("max_regression", self.max_regression)
        if not isinstance(self.min_criterion_pass_rates, Mapping):
            raise EvalsConfigError("min_criterion_pass_rates", "must be a dict of criterion name -> rate")
        for name, value in self.min_criterion_pass_rates.items():
            if not isinstance(name, str) or not name:
                raise EvalsConfigError(
                    "min_criterion_pass_rates", f"criterion name {name!r} must be a string"
                )
            _rate(f"min_criterion_pass_rates[{name!r}]", value)

    @property
    def empty(self) -> bool:
        return (
            self.min_pass_rate is None
            and not self.min_criterion_pass_rates
            and self.max_errored_rate is None
            and self.max_regression is None
        )


@dataclass(frozen=True)
class Verdict:
    run_id: str
    passed: bool
    checks: list[Check]
    baseline_run_id: str | None = None
    #: Whether the gate decided on evidence (confidence or regression_alpha set): then the XCom and the
    #: message carry the outcome and each check's evidence.
    on_evidence: bool = False
    comparison: Mapping[str, Any] | None = None

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if c.outcome == FAILED]

    @property
    def inconclusive(self) -> list[Check]:
        return [c for c in self.checks if c.outcome == INCONCLUSIVE]

    @property
    def outcome(self) -> str:
        """``failed`` if any check failed, else ``inconclusive`` if any was, else ``passed``."""
        if self.failures:
            return FAILED
        return INCONCLUSIVE if self.inconclusive else PASSED

    def message(self) -> str:
        word = {PASSED: "passed", FAILED: "failed", INCONCLUSIVE: "was inconclusive on"}[self.outcome]
        head = f"eval run {self.run_id} {word} its quality gate"
        if self.baseline_run_id:
            head += f" (baseline {self.baseline_run_id})"
        return head + ":\n" + "\n".join("  " + c.line() for c in self.checks)

    def to_xcom(self) -> dict[str, Any]:
        xcom: dict[str, Any] = {
            "run_id": self.run_id,
            "passed": self.passed,
            "baseline_run_id": self.baseline_run_id,
            "checks": [],
        }
        for c in self.checks:
            check: dict[str, Any] = {
                "name": c.name,
                "value": c.value,
                "threshold": c.threshold,
                "passed": c.passed,
                "detail": c.detail,
            }
            if self.on_evidence:
                check["outcome"] = c.outcome
                check["evidence"] = dict(c.evidence) if c.evidence is not None else None
            xcom["checks"].append(check)
        if self.on_evidence:
            xcom["outcome"] = self.outcome
            xcom["comparison"] = dict(self.comparison) if self.comparison is not None else None
        return xcom


def evaluate(
    summary: RunSummary,
    thresholds: Thresholds,
    baseline: RunSummary | None = None,
    comparison: Comparison | None = None,
) -> Verdict:
    """Every threshold and regression check on ``summary``; a rate equal to its threshold passes.

    ``comparison`` (``stats.compare_runs`` of ``summary`` with ``baseline``, paired by item when the caller
    could pair them) is what a regression is judged on with ``regression_alpha``; without one, the runs
    are compared from their counts.
    """
    checks: list[Check] = []
    if summary.status != RunStatus.COMPLETED:
        checks.append(Check("status", None, 0.0, False, f"run status is {summary.status!r}, not 'completed'"))
    no_results = "the run has no results (no item was graded)"
    confidence = thresholds.confidence
    # With a confidence level every rate threshold is judged on its interval, else on the point estimate.
    rates = run_rates(summary, confidence) if confidence is not None else None
    if thresholds.min_pass_rate is not None:
        overall = rates.overall if rates is not None else None
        checks.append(
            at_least(
                "pass_rate", "pass rate", summary.pass_rate, overall, thresholds.min_pass_rate, no_results
            )
        )
    if thresholds.max_errored_rate is not None:
        errored = (
            estimate_rate(summary.counts.errored, summary.counts.executed, confidence)
            if confidence is not None
            else None
        )
        checks.append(
            at_most(
                "errored_rate",
                "errored rate",
                summary.errored_rate,
                errored,
                thresholds.max_errored_rate,
                no_results,
            )
        )
    for name, threshold in thresholds.min_criterion_pass_rates.items():
        criterion = summary.criterion(name)  # an unknown name raises, listing the names the run has
        estimate = rates.criterion(criterion.id).estimate if rates is not None else None
        checks.append(
            at_least(
                f"criterion:{criterion.name}",
                f"criterion {criterion.name!r} pass rate",
                criterion.pass_rate,
                estimate,
                threshold,
                "no item was graded by it",
            )
        )
    on_evidence = confidence is not None or thresholds.regression_alpha is not None
    if thresholds.max_regression is not None:
        if baseline is None:
            raise EvalsConfigError("baseline_run_id", "a regression check needs a baseline run")
        if on_evidence:
            comparison = comparison or compare_runs(summary, baseline, None, confidence or DEFAULT_CONFIDENCE)
            checks.extend(
                regressions_on_evidence(comparison, thresholds.max_regression, thresholds.regression_alpha)
            )
        else:
            checks.extend(regressions(summary, baseline, thresholds.max_regression))
    return Verdict(
        run_id=summary.run_id,
        passed=all(c.outcome == PASSED for c in checks),
        checks=checks,
        baseline_run_id=baseline.run_id if baseline else None,
        on_evidence=on_evidence,
        comparison=comparison.to_xcom() if on_evidence and comparison is not None else None,
    )

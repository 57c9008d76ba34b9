"""Quality gates: thresholds and regression checks over run summaries.

The check and the branch operators both call ``evaluate``; it reads rates only from ``RunSummary`` (the
pass-rate policy in ``summary.py``) and never computes a rate itself. A verdict lists every failing
check with its value and threshold, so one message says everything that is wrong.

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

from airflow_provider_aoai_evals.api.errors import EvalsConfigError
from airflow_provider_aoai_evals.api.models import RunStatus
from airflow_provider_aoai_evals.api.stats import (
    DEFAULT_CONFIDENCE,
    Comparison,
    RateComparison,
    RateEstimate,
    compare_runs,
    estimate_rate,
    run_rates,
)
from airflow_provider_aoai_evals.api.summary import RunSummary

#: Float slack so that a rate equal to its threshold passes (2/3 vs 0.6666666666666666).
EPSILON = 1e-9


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


PASSED, FAILED, INCONCLUSIVE = "passed", "failed", "inconclusive"


@dataclass(frozen=True)
class Check:
    name: str
    value: float | None
    threshold: float
    passed: bool
    detail: str
    #: ``passed``, ``failed`` or ``inconclusive``; the last only when the gate decides on evidence.
    outcome: str = ""
    #: The evidence, when the gate decides on it: the interval, and for a regression the test's figures.
    evidence: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if not self.outcome:
            object.__setattr__(self, "outcome", PASSED if self.passed else FAILED)

    def line(self) -> str:
        mark = {PASSED: "ok  ", FAILED: "FAIL", INCONCLUSIVE: "????"}[self.outcome]
        return f"{mark} {self.detail}"


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


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _at_least(name: str, value: float | None, threshold: float, what: str, no_data: str) -> Check:
    if value is None:
        return Check(name, None, threshold, False, f"{what}: {no_data} (needs >= {_pct(threshold)})")
    ok = value + EPSILON >= threshold
    return Check(name, value, threshold, ok, f"{what} {_pct(value)} {'>=' if ok else '<'} {_pct(threshold)}")


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
    rates = run_rates(summary, confidence) if confidence is not None else None
    if thresholds.min_pass_rate is not None:
        if rates is not None:
            checks.append(
                _at_least_on_evidence(
                    "pass_rate", rates.overall, thresholds.min_pass_rate, "pass rate", no_results
                )
            )
        else:
            checks.append(
                _at_least("pass_rate", summary.pass_rate, thresholds.min_pass_rate, "pass rate", no_results)
            )
    if thresholds.max_errored_rate is not None:
        limit = thresholds.max_errored_rate
        if confidence is not None:
            errored = estimate_rate(summary.counts.errored, summary.counts.executed, confidence)
            checks.append(_at_most_on_evidence("errored_rate", errored, limit, "errored rate", no_results))
        elif summary.errored_rate is None:
            checks.append(Check("errored_rate", None, limit, False, f"errored rate: {no_results}"))
        else:
            ok = summary.errored_rate <= limit + EPSILON
            checks.append(
                Check(
                    "errored_rate",
                    summary.errored_rate,
                    limit,
                    ok,
                    f"errored rate {_pct(summary.errored_rate)} {'<=' if ok else '>'} {_pct(limit)}",
                )
            )
    for name, threshold in thresholds.min_criterion_pass_rates.items():
        criterion = summary.criterion(name)  # an unknown name raises, listing the names the run has
        what = f"criterion {criterion.name!r} pass rate"
        if rates is not None:
            estimate = rates.criterion(criterion.id).estimate
            checks.append(
                _at_least_on_evidence(
                    f"criterion:{criterion.name}", estimate, threshold, what, "no item was graded by it"
                )
            )
        else:
            checks.append(
                _at_least(
                    f"criterion:{criterion.name}",
                    criterion.pass_rate,
                    threshold,
                    what,
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
                _regressions_on_evidence(comparison, thresholds.max_regression, thresholds.regression_alpha)
            )
        else:
            checks.extend(_regressions(summary, baseline, thresholds.max_regression))
    return Verdict(
        run_id=summary.run_id,
        passed=all(c.outcome == PASSED for c in checks),
        checks=checks,
        baseline_run_id=baseline.run_id if baseline else None,
        on_evidence=on_evidence,
        comparison=comparison.to_xcom() if on_evidence and comparison is not None else None,
    )


def _interval(estimate: RateEstimate) -> str:
    return (
        f"{estimate.confidence:.0%} interval {_pct(estimate.low)}-{_pct(estimate.high)}, "
        f"{estimate.passed} of {estimate.n}"
    )


def _at_least_on_evidence(
    name: str, estimate: RateEstimate, threshold: float, what: str, no_data: str
) -> Check:
    """Passed when the interval's lower bound meets the threshold, failed when its upper bound is below
    it, inconclusive in between: the run's size decides how close to the threshold it may be."""
    evidence = estimate.to_xcom()
    if estimate.rate is None or estimate.low is None or estimate.high is None:
        return Check(
            name, None, threshold, False, f"{what}: {no_data} (needs >= {_pct(threshold)})", evidence=evidence
        )
    if estimate.low + EPSILON >= threshold:
        outcome, verb = PASSED, "at or above"
    elif estimate.high + EPSILON < threshold:
        outcome, verb = FAILED, "below"
    else:
        outcome, verb = INCONCLUSIVE, "on both sides of"
    detail = f"{what} {_pct(estimate.rate)} ({_interval(estimate)}): interval {verb} {_pct(threshold)}"
    return Check(name, estimate.rate, threshold, outcome == PASSED, detail, outcome, evidence)


def _at_most_on_evidence(name: str, estimate: RateEstimate, limit: float, what: str, no_data: str) -> Check:
    """The mirror of ``_at_least_on_evidence`` for a rate that must stay low."""
    evidence = estimate.to_xcom()
    if estimate.rate is None or estimate.low is None or estimate.high is None:
        return Check(name, None, limit, False, f"{what}: {no_data}", evidence=evidence)
    if estimate.high <= limit + EPSILON:
        outcome, verb = PASSED, "at or below"
    elif estimate.low > limit + EPSILON:
        outcome, verb = FAILED, "above"
    else:
        outcome, verb = INCONCLUSIVE, "on both sides of"
    detail = f"{what} {_pct(estimate.rate)} ({_interval(estimate)}): interval {verb} {_pct(limit)}"
    return Check(name, estimate.rate, limit, outcome == PASSED, detail, outcome, evidence)


def _regressions_on_evidence(comparison: Comparison, tolerance: float, alpha: float | None) -> list[Check]:
    """Each rate both runs have, judged on the comparison: a drop within ``tolerance`` passes; a larger one
    fails when significant at ``alpha`` (or always, without ``alpha``) and is inconclusive otherwise."""
    checks = []
    for rc in (comparison.overall, *comparison.criteria):
        name = "regression:pass_rate" if rc is comparison.overall else f"regression:{rc.name}"
        what = "pass rate" if rc is comparison.overall else f"criterion {rc.name!r}"
        evidence = rc.to_xcom()
        now, before = rc.candidate.rate, rc.baseline.rate
        if rc.regression is None or now is None or before is None:
            checks.append(_not_measured(name, what, now, tolerance, evidence))
            continue
        drop = rc.regression
        figures = _test_figures(rc)
        if drop <= tolerance + EPSILON:
            outcome, verdict = PASSED, f"within {tolerance * 100:.1f}"
        elif alpha is None:
            outcome, verdict = FAILED, f"exceeds {tolerance * 100:.1f}"
        elif rc.p_value is not None and rc.p_value < alpha:
            outcome, verdict = FAILED, f"exceeds {tolerance * 100:.1f} and is significant at {alpha:g}"
        else:
            outcome, verdict = (
                INCONCLUSIVE,
                f"exceeds {tolerance * 100:.1f} but is not significant at {alpha:g}",
            )
        detail = (
            f"{what} {_pct(now)} vs baseline {_pct(before)}: {'drop' if drop > 0 else 'change'} "
            f"{abs(drop) * 100:.1f} points ({verdict}); {figures}"
        )
        checks.append(Check(name, now, tolerance, outcome == PASSED, detail, outcome, evidence))
    return checks


def _not_measured(
    name: str, what: str, now: float | None, tolerance: float, evidence: Mapping[str, Any] | None = None
) -> Check:
    """A regression that cannot be measured: failed when this run has no results, passed when only the
    baseline has none, since there is nothing to have regressed from."""
    side = "this run" if now is None else "the baseline"
    return Check(
        name,
        now,
        tolerance,
        now is not None,
        f"{what}: {side} has no results; regression not measured",
        evidence=evidence,
    )


def _test_figures(rc: RateComparison) -> str:
    """The comparison's figures for a person: interval of the difference, test, p-value, flips, and why."""
    parts = []
    if rc.low is not None and rc.high is not None:
        parts.append(
            f"difference {rc.difference * 100 if rc.difference is not None else 0:+.1f} points, "
            f"{rc.confidence:.0%} interval {rc.low * 100:+.1f} to {rc.high * 100:+.1f}"
        )
    parts.append(f"{rc.test} p={rc.p_value:.3g}" if rc.p_value is not None else rc.test)
    if rc.pass_to_fail is not None and rc.fail_to_pass is not None:
        parts.append(f"{rc.pass_to_fail} pass->fail, {rc.fail_to_pass} fail->pass")
    parts.append(rc.reason)
    return ", ".join(parts)


def _regressions(summary: RunSummary, baseline: RunSummary, tolerance: float) -> list[Check]:
    """Each rate both runs have may drop by at most ``tolerance`` (absolute rate points)."""
    pairs: list[tuple[str, str, float | None, float | None]] = [
        ("regression:pass_rate", "pass rate", summary.pass_rate, baseline.pass_rate)
    ]
    base_by_name = {c.name: c for c in baseline.criteria}
    for criterion in summary.criteria:
        old = base_by_name.get(criterion.name)
        if old is not None:
            pairs.append(
                (
                    f"regression:{criterion.name}",
                    f"criterion {criterion.name!r}",
                    criterion.pass_rate,
                    old.pass_rate,
                )
            )
    checks = []
    for name, what, now, before in pairs:
        if now is None or before is None:
            checks.append(_not_measured(name, what, now, tolerance))
            continue
        drop = before - now
        ok = drop <= tolerance + EPSILON
        checks.append(
            Check(
                name,
                now,
                tolerance,
                ok,
                f"{what} {_pct(now)} vs baseline {_pct(before)}: "
                f"{'drop' if drop > 0 else 'change'} {abs(drop) * 100:.1f} points "
                f"({'within' if ok else 'exceeds'} {tolerance * 100:.1f})",
            )
        )
    return checks

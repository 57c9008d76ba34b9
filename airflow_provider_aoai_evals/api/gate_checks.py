"""The checks of a quality gate, one at a time: a rate against its threshold and a rate against the baseline.

Each check is decided either on the point estimate (the summary's rate, as gates always did) or, when the
gate asks for evidence, on the rate's interval or the comparison's test, where it may also come out
inconclusive. ``gates.evaluate`` picks which checks a gate runs and assembles them into its verdict; the
words of each check are written here, next to the rule that decides it, so the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from airflow_provider_aoai_evals.api.comparison import Comparison, RateComparison
from airflow_provider_aoai_evals.api.proportions import RateEstimate
from airflow_provider_aoai_evals.api.summary import RunSummary

#: Float slack so that a rate equal to its threshold passes (2/3 vs 0.6666666666666666).
EPSILON = 1e-9

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


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _interval(estimate: RateEstimate) -> str:
    return (
        f"{estimate.confidence:.0%} interval {_pct(estimate.low)}-{_pct(estimate.high)}, "
        f"{estimate.passed} of {estimate.n}"
    )


# ---- a rate against its threshold ------------------------------------------------------------------------


def at_least(
    name: str,
    what: str,
    value: float | None,
    estimate: RateEstimate | None,
    threshold: float,
    no_data: str,
) -> Check:
    """``value`` must reach ``threshold``: judged on ``estimate``'s interval when there is one, else on
    the point estimate."""
    if estimate is not None:
        return _at_least_on_evidence(name, estimate, threshold, what, no_data)
    if value is None:
        return Check(name, None, threshold, False, f"{what}: {no_data} (needs >= {_pct(threshold)})")
    ok = value + EPSILON >= threshold
    return Check(name, value, threshold, ok, f"{what} {_pct(value)} {'>=' if ok else '<'} {_pct(threshold)}")


def at_most(
    name: str, what: str, value: float | None, estimate: RateEstimate | None, limit: float, no_data: str
) -> Check:
    """The mirror of ``at_least`` for a rate that must stay low."""
    if estimate is not None:
        return _at_most_on_evidence(name, estimate, limit, what, no_data)
    if value is None:
        return Check(name, None, limit, False, f"{what}: {no_data}")
    ok = value <= limit + EPSILON
    return Check(name, value, limit, ok, f"{what} {_pct(value)} {'<=' if ok else '>'} {_pct(limit)}")


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


# ---- a rate against the baseline -------------------------------------------------------------------------


def regressions_on_evidence(comparison: Comparison, tolerance: float, alpha: float | None) -> list[Check]:
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
        detail = f"{_change(what, now, before, drop)} ({verdict}); {figures}"
        checks.append(Check(name, now, tolerance, outcome == PASSED, detail, outcome, evidence))
    return checks


def _change(what: str, now: float, before: float, drop: float) -> str:
    return (
        f"{what} {_pct(now)} vs baseline {_pct(before)}: {'drop' if drop > 0 else 'change'} "
        f"{abs(drop) * 100:.1f} points"
    )


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


def regressions(summary: RunSummary, baseline: RunSummary, tolerance: float) -> list[Check]:
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
                f"{_change(what, now, before, drop)} ({'within' if ok else 'exceeds'} {tolerance * 100:.1f})",
            )
        )
    return checks

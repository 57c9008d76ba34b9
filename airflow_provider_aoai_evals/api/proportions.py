"""The closed-form statistics of pass rates: an interval for one rate, a test and an interval for two.

Gates, branches, the run comparison and the UI all decide on these figures, so each formula exists once,
here, and works on plain counts (``stats.run_rates`` and ``comparison.compare_runs`` read the counts from
run summaries and pairings). Only the standard library is used: the api layer runs in workers and in the
triggerer, and installing a numeric stack there for a handful of closed-form figures would be a poor
trade. The tests compare every figure with scipy and statsmodels instead (docs/statistics.md has worked
examples).

Methods, and why these:

* one pass rate: the **Wilson score interval**. Unlike the textbook normal (Wald) interval it stays inside
  [0, 1], is not zero-width at 0 or n successes, and keeps close to its nominal coverage for small runs;
* two runs paired item by item: the **exact McNemar test** (a two-sided binomial test with p = 1/2 on the
  discordant pairs: exact, so valid for the handful of flips a small eval produces) and **Newcombe's
  square-and-add interval for paired data** (Newcombe 1998, method 10, with his correction of the
  correlation phi), which combines the two runs' Wilson intervals and so inherits their behaviour at the
  edges;
* two runs that cannot be paired: the **two-sided z-test with pooled variance** (the classic two-
  proportions test, equal to Pearson's chi-square on the 2x2 table) and **Newcombe's hybrid score
  interval** for independent proportions (Newcombe 1998, method 10), the same construction without phi.

Differences are candidate minus baseline: a negative difference is a regression.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from airflow_provider_aoai_evals.api.errors import EvalsConfigError

DEFAULT_CONFIDENCE = 0.95

#: Names of the methods, as results report them.
WILSON = "wilson"
MCNEMAR_EXACT = "mcnemar-exact"
TWO_PROPORTIONS_Z = "two-proportions-z"
NEWCOMBE_PAIRED = "newcombe-paired"
NEWCOMBE_INDEPENDENT = "newcombe-hybrid-score"
#: The ``test`` of a comparison where a run has nothing to compare.
NO_TEST = "none"

_LN2 = math.log(2.0)


def check_confidence(confidence: float, parameter: str = "confidence") -> float:
    """A confidence level strictly between 0 and 1 (0.95, not 95); anything else is a setting to fix."""
    if (
        isinstance(confidence, bool)
        or not isinstance(confidence, (int, float))
        or not 0 < confidence < 1
        or math.isnan(confidence)
    ):
        raise EvalsConfigError(parameter, f"must be a level between 0 and 1 such as 0.95, got {confidence!r}")
    return float(confidence)


def _check_counts(successes: int, n: int) -> None:
    if not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")


def z_value(confidence: float) -> float:
    """The two-sided normal quantile for ``confidence`` (1.959963984540054 for 0.95)."""
    return NormalDist().inv_cdf(0.5 + check_confidence(confidence) / 2)


# ---- one rate --------------------------------------------------------------------------------------------


def wilson_interval(
    successes: int, n: int, confidence: float = DEFAULT_CONFIDENCE
) -> tuple[float, float] | None:
    """The Wilson score interval for ``successes`` of ``n``; None when ``n`` is 0.

    None rather than (0, 1): with no item graded there is no rate, and a gate must say "no results"
    instead of comparing a threshold with a made-up interval. At 0 (or ``n``) successes the bound on that
    side is exactly 0 (or 1), where the float formula can land a few ulps off.
    """
    _check_counts(successes, n)
    z = z_value(confidence)
    if n == 0:
        return None
    z2 = z * z
    center = (successes + z2 / 2) / (n + z2)
    half = z * math.sqrt(successes * (n - successes) / n + z2 / 4) / (n + z2)
    low = 0.0 if successes == 0 else max(0.0, center - half)
    high = 1.0 if successes == n else min(1.0, center + half)
    return low, high


@dataclass(frozen=True)
class RateEstimate:
    """A pass rate, ``passed`` of ``n``, with its Wilson interval (all None when ``n`` is 0)."""

    passed: int
    n: int
    rate: float | None
    low: float | None
    high: float | None
    confidence: float
    method: str = WILSON

    def to_xcom(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "n": self.n,
            "rate": self.rate,
            "low": self.low,
            "high": self.high,
            "confidence": self.confidence,
            "method": self.method,
        }


def estimate_rate(passed: int, n: int, confidence: float = DEFAULT_CONFIDENCE) -> RateEstimate:
    """``passed / n`` with its interval. Callers pass the policy's numerator and denominator
    (``RunSummary`` counts, see ``stats.run_rates``); this function only does the arithmetic."""
    interval = wilson_interval(passed, n, confidence)
    return RateEstimate(
        passed=passed,
        n=n,
        rate=passed / n if n else None,
        low=interval[0] if interval else None,
        high=interval[1] if interval else None,
        confidence=check_confidence(confidence),
    )


# ---- paired runs -----------------------------------------------------------------------------------------


def _binomial_half_cdf(k: int, n: int) -> float:
    """P(X <= k) for X ~ Binomial(n, 1/2) and k < n/2, in O(sqrt(n)) float operations.

    The exact sum of comb(n, i) / 2**n needs big integers of n bits, whose cost grows with n far faster
    than the answer's precision needs. Instead the largest term, i = k, comes from lgamma in log space
    (relative error ~1e-16 * n*ln2: about 1e-11 at n = 20,000), and the others as ratios of it,
    t(i-1) / t(i) = i / (n-i+1) < 1, summed until they no longer change a double. Below ~1e-308 the result
    underflows to 0.0, which a p-value may.
    """
    log_top = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) - n * _LN2
    total = term = 1.0
    for i in range(k, 0, -1):
        term *= i / (n - i + 1)
        total += term
        if term < total * 1e-17:
            break
    return math.exp(log_top + math.log(total))


def mcnemar_exact_p(pass_to_fail: int, fail_to_pass: int) -> float:
    """Two-sided exact McNemar p-value: how surprising this split of the discordant pairs would be if
    the two runs were equally good, i.e. if each flip were equally likely to go either way.

    Only the flips carry evidence; items that passed (or failed) in both runs say nothing about which
    run is better. No flips at all, or as many each way, give 1.0. Equals statsmodels'
    ``mcnemar(table, exact=True)`` and scipy's ``binomtest(b, b + c, 0.5)``.
    """
    if pass_to_fail < 0 or fail_to_pass < 0:
        raise ValueError(f"flip counts must be >= 0, got {pass_to_fail} and {fail_to_pass}")
    n = pass_to_fail + fail_to_pass
    k = min(pass_to_fail, fail_to_pass)
    if n == 0 or 2 * k >= n:
        return 1.0
    return min(1.0, 2.0 * _binomial_half_cdf(k, n))


def newcombe_paired_interval(
    both_passed: int,
    pass_to_fail: int,
    fail_to_pass: int,
    both_failed: int,
    confidence: float = DEFAULT_CONFIDENCE,
) -> tuple[float, float] | None:
    """Interval for candidate minus baseline pass rate over the same items (None without items).

    Newcombe (1998), "Improved confidence intervals for the difference between binomial proportions
    based on paired data", method 10: each run's Wilson interval, combined by square-and-add with the
    correlation phi between the runs, which Newcombe shrinks towards 0 by n/2 (and sets to 0 when
    positive but smaller than that) so that the interval is not too narrow. Items that pass in both runs
    narrow it; the same flips with fewer agreeing items give a wider one.
    """
    counts = (both_passed, pass_to_fail, fail_to_pass, both_failed)
    if min(counts) < 0:
        raise ValueError(f"pair counts must be >= 0, got {counts}")
    n = sum(counts)
    if n == 0:
        check_confidence(confidence)
        return None
    candidate_passed = both_passed + fail_to_pass
    baseline_passed = both_passed + pass_to_fail
    p1, p2 = candidate_passed / n, baseline_passed / n
    l1, u1 = wilson_interval(candidate_passed, n, confidence) or (0.0, 1.0)
    l2, u2 = wilson_interval(baseline_passed, n, confidence) or (0.0, 1.0)
    margins = candidate_passed * (n - candidate_passed) * baseline_passed * (n - baseline_passed)
    phi = 0.0
    if margins > 0:
        a = both_passed * both_failed - fail_to_pass * pass_to_fail
        if a > n / 2:
            phi = (a - n / 2) / math.sqrt(margins)
        elif a < 0:
            phi = a / math.sqrt(margins)
    d = p1 - p2
    below = math.sqrt(max(0.0, (p1 - l1) ** 2 + (u2 - p2) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2)))
    above = math.sqrt(max(0.0, (p2 - l2) ** 2 + (u1 - p1) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1)))
    return max(-1.0, d - below), min(1.0, d + above)


# ---- independent runs ------------------------------------------------------------------------------------


def two_proportions_z_test(
    candidate_passed: int, candidate_n: int, baseline_passed: int, baseline_n: int
) -> tuple[float, float] | None:
    """(z, two-sided p-value) of the pooled two-proportions z-test; None when a run has no items.

    When both runs pass everything (or nothing) the pooled variance is 0 and the rates are equal, so
    z is 0 and p is 1.0 (statsmodels' ``proportions_ztest`` gives nan there). The p-value comes from
    ``erfc``, not ``1 - cdf``, so it keeps its digits far into the tail.
    """
    _check_counts(candidate_passed, candidate_n)
    _check_counts(baseline_passed, baseline_n)
    if candidate_n == 0 or baseline_n == 0:
        return None
    pooled = (candidate_passed + baseline_passed) / (candidate_n + baseline_n)
    variance = pooled * (1 - pooled) * (1 / candidate_n + 1 / baseline_n)
    if variance <= 0:
        return 0.0, 1.0
    z = (candidate_passed / candidate_n - baseline_passed / baseline_n) / math.sqrt(variance)
    return z, math.erfc(abs(z) / math.sqrt(2))


def newcombe_interval(
    candidate_passed: int,
    candidate_n: int,
    baseline_passed: int,
    baseline_n: int,
    confidence: float = DEFAULT_CONFIDENCE,
) -> tuple[float, float] | None:
    """Interval for candidate minus baseline pass rate of two independent runs (None if one is empty).

    Newcombe (1998), "Interval estimation for the difference between independent proportions", method
    10 (hybrid score, square-and-add of the two Wilson intervals); statsmodels calls it ``"newcomb"``.
    """
    c = wilson_interval(candidate_passed, candidate_n, confidence)
    b = wilson_interval(baseline_passed, baseline_n, confidence)
    if c is None or b is None:
        return None
    p1, p2 = candidate_passed / candidate_n, baseline_passed / baseline_n
    d = p1 - p2
    below = math.sqrt((p1 - c[0]) ** 2 + (b[1] - p2) ** 2)
    above = math.sqrt((p2 - b[0]) ** 2 + (c[1] - p1) ** 2)
    return max(-1.0, d - below), min(1.0, d + above)

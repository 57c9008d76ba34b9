"""Two runs compared, overall and per criterion: paired item by item when the pairing allows, from counts
otherwise, and the comparison in words.

``compare_runs`` chooses the test for each rate (``proportions``: exact McNemar with Newcombe's paired
interval, or the pooled z-test with Newcombe's independent one) and says why, so that a gate, the compare
operator and a person reading the summary all see the same reason. Rates come from the run summaries
(``summary.py``) and the paired tables from a ``pairing.Pairing`` of their output items.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airflow_provider_aoai_evals.api import proportions
from airflow_provider_aoai_evals.api.pairing import FAIL_TO_PASS, PASS_TO_FAIL, PairedCounts, Pairing
from airflow_provider_aoai_evals.api.summary import CriterionSummary, RunSummary


@dataclass(frozen=True)
class RateComparison:
    """One rate of two runs compared: the test used, why, and the difference (candidate - baseline)."""

    name: str
    test: str
    reason: str
    candidate: proportions.RateEstimate
    baseline: proportions.RateEstimate
    difference: float | None
    low: float | None
    high: float | None
    interval_method: str | None
    p_value: float | None
    confidence: float
    #: Paired tests only: items that passed in the baseline and failed in the candidate, and back.
    pass_to_fail: int | None = None
    fail_to_pass: int | None = None

    @property
    def regression(self) -> float | None:
        """How far the rate dropped (baseline - candidate), in rate points; negative for a gain."""
        return None if self.difference is None else -self.difference

    def to_xcom(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "test": self.test,
            "reason": self.reason,
            "candidate": self.candidate.to_xcom(),
            "baseline": self.baseline.to_xcom(),
            "difference": self.difference,
            "low": self.low,
            "high": self.high,
            "interval_method": self.interval_method,
            "p_value": self.p_value,
            "confidence": self.confidence,
            "pass_to_fail": self.pass_to_fail,
            "fail_to_pass": self.fail_to_pass,
        }


@dataclass(frozen=True)
class Comparison:
    """Two runs compared, overall and per criterion both runs have."""

    candidate_run_id: str
    baseline_run_id: str
    paired: bool
    reason: str
    confidence: float
    overall: RateComparison
    criteria: tuple[RateComparison, ...]
    criteria_only_in_candidate: tuple[str, ...] = ()
    criteria_only_in_baseline: tuple[str, ...] = ()
    #: From the pairing, when there was one: items in both runs, and in one run only.
    matched: int | None = None
    missing_in_candidate: int | None = None
    missing_in_baseline: int | None = None

    @property
    def test(self) -> str:
        return self.overall.test

    def criterion(self, name: str) -> RateComparison | None:
        return next((c for c in self.criteria if c.name == name), None)

    def to_xcom(self) -> dict[str, Any]:
        return {
            "candidate_run_id": self.candidate_run_id,
            "baseline_run_id": self.baseline_run_id,
            "paired": self.paired,
            "test": self.test,
            "reason": self.reason,
            "confidence": self.confidence,
            "overall": self.overall.to_xcom(),
            "criteria": [c.to_xcom() for c in self.criteria],
            "criteria_only_in_candidate": list(self.criteria_only_in_candidate),
            "criteria_only_in_baseline": list(self.criteria_only_in_baseline),
            "matched": self.matched,
            "missing_in_candidate": self.missing_in_candidate,
            "missing_in_baseline": self.missing_in_baseline,
        }


def compare_paired(name: str, counts: PairedCounts, reason: str, confidence: float) -> RateComparison:
    """Exact McNemar and Newcombe's paired interval on one paired table."""
    interval = proportions.newcombe_paired_interval(
        counts.both_passed, counts.pass_to_fail, counts.fail_to_pass, counts.both_failed, confidence
    )
    candidate = proportions.estimate_rate(counts.candidate_passed, counts.n, confidence)
    baseline = proportions.estimate_rate(counts.baseline_passed, counts.n, confidence)
    if interval is None or candidate.rate is None or baseline.rate is None:
        return _untested(name, "no item is in both runs", candidate, baseline, confidence)
    return RateComparison(
        name=name,
        test=proportions.MCNEMAR_EXACT,
        reason=reason,
        candidate=candidate,
        baseline=baseline,
        difference=(counts.fail_to_pass - counts.pass_to_fail) / counts.n,
        low=interval[0],
        high=interval[1],
        interval_method=proportions.NEWCOMBE_PAIRED,
        p_value=proportions.mcnemar_exact_p(counts.pass_to_fail, counts.fail_to_pass),
        confidence=confidence,
        pass_to_fail=counts.pass_to_fail,
        fail_to_pass=counts.fail_to_pass,
    )


def compare_independent(
    name: str,
    candidate_passed: int,
    candidate_n: int,
    baseline_passed: int,
    baseline_n: int,
    reason: str,
    confidence: float,
) -> RateComparison:
    """The pooled z-test and Newcombe's hybrid score interval on two runs' counts."""
    candidate = proportions.estimate_rate(candidate_passed, candidate_n, confidence)
    baseline = proportions.estimate_rate(baseline_passed, baseline_n, confidence)
    test = proportions.two_proportions_z_test(candidate_passed, candidate_n, baseline_passed, baseline_n)
    interval = proportions.newcombe_interval(
        candidate_passed, candidate_n, baseline_passed, baseline_n, confidence
    )
    if test is None or interval is None or candidate.rate is None or baseline.rate is None:
        side = "the candidate run" if candidate_n == 0 else "the baseline run"
        return _untested(name, f"{side} has no results", candidate, baseline, confidence)
    return RateComparison(
        name=name,
        test=proportions.TWO_PROPORTIONS_Z,
        reason=reason,
        candidate=candidate,
        baseline=baseline,
        difference=candidate.rate - baseline.rate,
        low=interval[0],
        high=interval[1],
        interval_method=proportions.NEWCOMBE_INDEPENDENT,
        p_value=test[1],
        confidence=confidence,
    )


def _untested(
    name: str,
    reason: str,
    candidate: proportions.RateEstimate,
    baseline: proportions.RateEstimate,
    confidence: float,
) -> RateComparison:
    return RateComparison(
        name=name,
        test=proportions.NO_TEST,
        reason=reason,
        candidate=candidate,
        baseline=baseline,
        difference=None,
        low=None,
        high=None,
        interval_method=None,
        p_value=None,
        confidence=confidence,
    )


def _items(n: int) -> str:
    return f"{n} item" if n == 1 else f"{n} items"


def _pairing_verdict(pairing: Pairing | None) -> tuple[bool, str]:
    """Whether the paired test applies, and the reason a person reads either way."""
    if pairing is None:
        return False, "output items were not paired; compared from result counts"
    if pairing.unpairable_reason is not None:
        return False, pairing.unpairable_reason
    if pairing.unmatched:
        # A McNemar test on the overlap alone would answer a question about a subset the two summaries'
        # rates do not describe; the independent test compares the rates as reported.
        return False, (
            f"runs have different datasets: {_items(pairing.unmatched)} unmatched "
            f"({pairing.missing_in_candidate} missing from the candidate, "
            f"{pairing.missing_in_baseline} missing from the baseline)"
        )
    if pairing.matched == 0:
        return False, "no output items to pair"
    return True, f"paired by datasource_item_id ({_items(pairing.matched)})"


def _match_criteria(
    candidate: RunSummary, baseline: RunSummary
) -> tuple[list[tuple[str, CriterionSummary, CriterionSummary]], tuple[str, ...], tuple[str, ...]]:
    """Criteria both runs have, matched by the user's name (the API's ids differ between evals), or by
    exact id where a name is used twice in a run. Returns (key, candidate's, baseline's) triples."""

    def keyed(summary: RunSummary) -> dict[str, CriterionSummary]:
        names = [c.name for c in summary.criteria]
        return {c.name if names.count(c.name) == 1 else c.id: c for c in summary.criteria}

    new, old = keyed(candidate), keyed(baseline)
    both = [(key, new[key], old[key]) for key in new if key in old]
    return both, tuple(k for k in new if k not in old), tuple(k for k in old if k not in new)


def compare_runs(
    candidate: RunSummary,
    baseline: RunSummary,
    pairing: Pairing | None = None,
    confidence: float = proportions.DEFAULT_CONFIDENCE,
) -> Comparison:
    """Compare ``candidate`` with ``baseline``, paired item by item when ``pairing`` allows.

    Paired (every item in both runs, ids usable): exact McNemar and Newcombe's paired interval on the
    items' outcomes. Otherwise the pooled z-test and Newcombe's independent interval on the summaries'
    counts, and ``reason`` says why the items were not paired. A criterion that no matched item was
    graded by in both runs falls back to its counts the same way.
    """
    confidence = proportions.check_confidence(confidence)
    if pairing is not None:
        # Swapped runs would flip the sign of every difference, turning a regression into a gain.
        for side, summary, paired_id in (
            ("baseline", baseline, pairing.baseline_run_id),
            ("candidate", candidate, pairing.candidate_run_id),
        ):
            if paired_id is not None and paired_id != summary.run_id:
                raise ValueError(
                    f"the pairing's {side} is run {paired_id}, but the {side} summary is run {summary.run_id}"
                )
    paired, reason = _pairing_verdict(pairing)
    if paired and pairing is not None:
        overall = compare_paired("pass_rate", pairing.overall, reason, confidence)
    else:
        overall = compare_independent(
            "pass_rate",
            candidate.counts.passed,
            candidate.counts.executed,
            baseline.counts.passed,
            baseline.counts.executed,
            reason,
            confidence,
        )
    matched, only_candidate, only_baseline = _match_criteria(candidate, baseline)
    criteria = []
    for key, new, old in matched:
        pairs = pairing.criterion(key) if paired and pairing is not None else None
        if pairs is not None and pairs.counts.n > 0:
            why = reason
            if pairs.one_sided:
                why += f"; {_items(pairs.one_sided)} graded by it in one run only left out"
            criteria.append(compare_paired(key, pairs.counts, why, confidence))
        else:
            why = (
                reason if not paired else "no item was graded by it in both runs; compared from result counts"
            )
            criteria.append(
                compare_independent(key, new.passed, new.graded, old.passed, old.graded, why, confidence)
            )
    # The pairing's item counts mean something only when the runs could be paired at all.
    counted = pairing if pairing is not None and pairing.pairable else None
    return Comparison(
        candidate_run_id=candidate.run_id,
        baseline_run_id=baseline.run_id,
        paired=paired,
        reason=reason,
        confidence=confidence,
        overall=overall,
        criteria=tuple(criteria),
        criteria_only_in_candidate=only_candidate,
        criteria_only_in_baseline=only_baseline,
        matched=counted.matched if counted is not None else None,
        missing_in_candidate=counted.missing_in_candidate if counted is not None else None,
        missing_in_baseline=counted.missing_in_baseline if counted is not None else None,
    )


# ---- in words --------------------------------------------------------------------------------------------


def _or_dash(value: int | None) -> str:
    return "-" if value is None else str(value)


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.1%}"


def summary_lines(comparison: Comparison, pairing: Pairing) -> list[str]:
    """The comparison for a person: what was paired, then one line per check. The compare operator logs
    them and returns them in its XCom, so a notification downstream can quote them without formatting
    numbers itself."""
    how = comparison.reason if comparison.paired else f"not paired ({comparison.reason})"
    lines = [
        f"eval run {comparison.candidate_run_id} against baseline {comparison.baseline_run_id}: {how}; "
        f"{_or_dash(comparison.matched)} matched, "
        f"{_or_dash(comparison.missing_in_candidate)} missing from the run, "
        f"{_or_dash(comparison.missing_in_baseline)} missing from the baseline; errored items: "
        f"{pairing.errored_baseline} in the baseline, {pairing.errored_candidate} in the run"
    ]
    lines.extend(comparison_line(check) for check in (comparison.overall, *comparison.criteria))
    for side, names in (
        ("run", comparison.criteria_only_in_candidate),
        ("baseline", comparison.criteria_only_in_baseline),
    ):
        if names:
            lines.append(f"criteria only in the {side}, not compared: {', '.join(names)}")
    return lines


def comparison_line(check: RateComparison) -> str:
    """One check in words: the rates, the difference with its interval, p, the flips, the test and why."""
    head = f"{check.name}: {_pct(check.baseline.rate)} -> {_pct(check.candidate.rate)}"
    d, low, high, p = check.difference, check.low, check.high, check.p_value
    if d is None or low is None or high is None or p is None:
        return f"{head}; not tested: {check.reason}"
    level = f"{check.confidence * 100:g}%"
    text = f"{head} ({d * 100:+.1f} points, {level} CI {low * 100:+.1f} to {high * 100:+.1f}), p={p:.4g}"
    if check.pass_to_fail is not None and check.fail_to_pass is not None:
        text += f", {check.pass_to_fail} {PASS_TO_FAIL} / {check.fail_to_pass} {FAIL_TO_PASS}"
    return f"{text}; {check.test}: {check.reason}"

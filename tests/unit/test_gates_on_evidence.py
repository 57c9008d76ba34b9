"""Gates that decide on evidence: three outcomes with ``confidence``, significance with ``regression_alpha``.

Figures are checked against statsmodels and scipy (test-only oracles), never against the code's own.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from scipy.stats import binomtest
from statsmodels.stats.proportion import proportion_confint

from airflow_provider_aoai_evals.api.errors import EvalsConfigError
from airflow_provider_aoai_evals.api.gates import FAILED, INCONCLUSIVE, PASSED, Thresholds, evaluate
from airflow_provider_aoai_evals.api.pairing import PairedCounts, Pairing
from airflow_provider_aoai_evals.api.stats import MCNEMAR_EXACT, TWO_PROPORTIONS_Z, compare_runs
from tests.unit.test_gates import summary


def test_nine_of_ten_clears_085_on_the_point_but_not_on_the_evidence() -> None:
    s = summary(passed=9, failed=1)
    assert evaluate(s, Thresholds(min_pass_rate=0.85)).passed  # the point estimate: 0.9 >= 0.85
    verdict = evaluate(s, Thresholds(min_pass_rate=0.85, confidence=0.95))
    [check] = verdict.checks
    low, high = proportion_confint(9, 10, alpha=0.05, method="wilson")
    assert check.outcome == INCONCLUSIVE and verdict.outcome == INCONCLUSIVE and not verdict.passed
    assert check.evidence is not None
    assert check.evidence["low"] == pytest.approx(low) and check.evidence["high"] == pytest.approx(high)
    assert f"{low:.1%}-{high:.1%}" in check.detail and "9 of 10" in check.detail
    xcom = verdict.to_xcom()
    assert xcom["outcome"] == "inconclusive" and xcom["checks"][0]["outcome"] == "inconclusive"


@pytest.mark.parametrize(
    ("passed", "failed", "threshold", "outcome"),
    [(980, 20, 0.95, PASSED), (900, 100, 0.95, FAILED), (95, 5, 0.95, INCONCLUSIVE), (0, 10, 0.0, PASSED)],
)
def test_three_outcomes_follow_the_interval(passed: int, failed: int, threshold: float, outcome: str) -> None:
    verdict = evaluate(
        summary(passed=passed, failed=failed), Thresholds(min_pass_rate=threshold, confidence=0.95)
    )
    assert verdict.checks[0].outcome == outcome
    low, high = proportion_confint(passed, passed + failed, alpha=0.05, method="wilson")
    expected = PASSED if low >= threshold - 1e-9 else FAILED if high < threshold else INCONCLUSIVE
    assert outcome == expected


def test_errored_rate_and_criteria_on_evidence() -> None:
    s = summary(passed=90, failed=0, errored=10, criteria={"exact": (45, 5)})
    verdict = evaluate(
        s, Thresholds(max_errored_rate=0.2, min_criterion_pass_rates={"exact": 0.75}, confidence=0.95)
    )
    by_name = {c.name: c for c in verdict.checks}
    err_high = proportion_confint(10, 100, alpha=0.05, method="wilson")[1]
    assert err_high <= 0.2 and by_name["errored_rate"].outcome == PASSED
    crit_low = proportion_confint(45, 50, alpha=0.05, method="wilson")[0]
    assert crit_low >= 0.75 and by_name["criterion:exact"].outcome == PASSED


def test_no_results_still_fails_saying_so() -> None:
    verdict = evaluate(summary(), Thresholds(min_pass_rate=0.5, confidence=0.95))
    assert verdict.outcome == FAILED and "no results" in verdict.message()


def _pairing(both_passed: int, pass_to_fail: int, fail_to_pass: int, both_failed: int) -> Pairing:
    counts = PairedCounts(
        both_passed=both_passed, pass_to_fail=pass_to_fail, fail_to_pass=fail_to_pass, both_failed=both_failed
    )
    n = both_passed + pass_to_fail + fail_to_pass + both_failed
    return Pairing(
        baseline_run_id="evalrun_base",
        candidate_run_id="evalrun_now",
        matched=n,
        missing_in_candidate=0,
        missing_in_baseline=0,
        errored_baseline=0,
        errored_candidate=0,
        unpairable_reason=None,
        overall=counts,
        criteria=(),
    )


def test_a_small_drop_on_a_small_eval_is_noise() -> None:
    # 50 items: baseline 45 passed, candidate 43: a 4-point drop past max_regression=0.02.
    base, now = summary(passed=45, failed=5, id="evalrun_base"), summary(passed=43, failed=7)
    pairing = _pairing(both_passed=42, pass_to_fail=3, fail_to_pass=1, both_failed=4)
    comparison = compare_runs(now, base, pairing)
    old = evaluate(now, Thresholds(max_regression=0.02), base)
    assert not old.passed  # before: any drop past the tolerance failed
    verdict = evaluate(now, Thresholds(max_regression=0.02, regression_alpha=0.05), base, comparison)
    [check] = [c for c in verdict.checks if c.name == "regression:pass_rate"]
    p = binomtest(3, 4, 0.5).pvalue
    assert check.outcome == INCONCLUSIVE and check.evidence is not None
    assert check.evidence["p_value"] == pytest.approx(p) and check.evidence["test"] == MCNEMAR_EXACT
    assert "3 pass->fail, 1 fail->pass" in check.detail and "not significant at 0.05" in check.detail
    assert "paired by datasource_item_id" in check.detail


def test_a_small_drop_on_a_large_eval_is_real() -> None:
    # 20,000 items: a 1.5-point drop, within a 2-point tolerance it passes; past a 1-point one it fails.
    base = summary(passed=18_000, failed=2_000, id="evalrun_base")
    now = summary(passed=17_700, failed=2_300)
    pairing = _pairing(both_passed=17_500, pass_to_fail=500, fail_to_pass=200, both_failed=1_800)
    comparison = compare_runs(now, base, pairing)
    assert evaluate(now, Thresholds(max_regression=0.02, regression_alpha=0.05), base, comparison).passed
    verdict = evaluate(now, Thresholds(max_regression=0.01, regression_alpha=0.05), base, comparison)
    [check] = [c for c in verdict.checks if c.name == "regression:pass_rate"]
    assert check.outcome == FAILED and "significant at 0.05" in check.detail
    assert check.evidence is not None and check.evidence["p_value"] == pytest.approx(
        binomtest(500, 700, 0.5).pvalue
    )


def test_unpaired_runs_use_the_independent_test_and_say_why() -> None:
    base, now = summary(passed=900, failed=100, id="evalrun_base"), summary(passed=800, failed=200)
    verdict = evaluate(now, Thresholds(max_regression=0.02, regression_alpha=0.05), base)
    [check] = [c for c in verdict.checks if c.name == "regression:pass_rate"]
    assert check.outcome == FAILED and check.evidence is not None
    assert check.evidence["test"] == TWO_PROPORTIONS_Z and "not paired" in check.detail
    assert verdict.to_xcom()["comparison"]["paired"] is False


def test_without_the_new_keywords_the_xcom_keeps_its_shape() -> None:
    xcom = evaluate(summary(passed=9, failed=1), Thresholds(min_pass_rate=0.85)).to_xcom()
    assert set(xcom) == {"run_id", "passed", "baseline_run_id", "checks"}
    assert set(xcom["checks"][0]) == {"name", "value", "threshold", "passed", "detail"}


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"min_pass_rate": 0.9, "confidence": 0.5}, "confidence"),
        ({"min_pass_rate": 0.9, "confidence": 1.0}, "confidence"),
        ({"min_pass_rate": 0.9, "confidence": 95}, "confidence"),
        ({"min_pass_rate": 0.9, "confidence": True}, "confidence"),
        ({"max_regression": 0.05, "regression_alpha": 0.0}, "regression_alpha"),
        ({"max_regression": 0.05, "regression_alpha": 1.0}, "regression_alpha"),
        ({"min_pass_rate": 0.9, "regression_alpha": 0.05}, "regression_alpha"),
    ],
)
def test_bad_evidence_settings_name_the_parameter(kwargs: dict[str, float], parameter: str) -> None:
    with pytest.raises(EvalsConfigError) as info:
        Thresholds(**kwargs)  # type: ignore[arg-type]
    assert info.value.parameter == parameter


def test_the_worked_example_in_the_docs_is_what_the_gate_says() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "quality-gates.md").read_text()
    block = docs.split("<!-- evidence-example -->\n```\n", 1)[1].split("\n```", 1)[0]
    base, now = summary(passed=45, failed=5, id="evalrun_base"), summary(passed=43, failed=7)
    pairing = _pairing(both_passed=42, pass_to_fail=3, fail_to_pass=1, both_failed=4)
    thresholds = Thresholds(min_pass_rate=0.8, max_regression=0.02, regression_alpha=0.05, confidence=0.95)
    assert evaluate(now, thresholds, base, compare_runs(now, base, pairing)).message() == block

"""Every figure of api/stats.py against scipy and statsmodels, over many generated cases and the edges.

scipy and statsmodels are test-only (the `test` extra): the module itself uses the standard library.
Published values come from Fagerland, Lydersen and Laake, "Statistical Analysis of Contingency Tables"
(2017), chapter 8, example "Complete response before and after consolidation therapy" (Cavo et al. 2012),
as the authors' R package `contingencytables` prints them.
"""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from scipy.stats import binomtest
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_confint,
    proportions_ztest,
)

from airflow_provider_aoai_evals.api.errors import EvalsConfigError
from airflow_provider_aoai_evals.api.models import EvalRun, OutputItem
from airflow_provider_aoai_evals.api.pairing import PairedCounts, pair_items
from airflow_provider_aoai_evals.api.stats import (
    MCNEMAR_EXACT,
    NEWCOMBE_INDEPENDENT,
    NEWCOMBE_PAIRED,
    NO_TEST,
    TWO_PROPORTIONS_Z,
    compare_paired,
    compare_runs,
    estimate_rate,
    mcnemar_exact_p,
    newcombe_interval,
    newcombe_paired_interval,
    run_rates,
    two_proportions_z_test,
    wilson_interval,
    z_value,
)
from airflow_provider_aoai_evals.api.summary import summarize

CONFIDENCES = (0.8, 0.9, 0.95, 0.99, 0.999)


#: Tolerances: a few ulps for closed forms; the exact binomial sum's leading term comes from lgamma,
#: whose relative error grows with n (about 1e-11 at n = 20,000).
def close(expected: float) -> Any:
    return pytest.approx(expected, rel=1e-10, abs=1e-13)


def _cases(seed: int, count: int, max_n: int) -> list[tuple[int, int, float]]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        n = rng.choice([rng.randint(1, 30), rng.randint(1, 500), rng.randint(1, max_n)])
        out.append((rng.randint(0, n), n, rng.choice([*CONFIDENCES, rng.uniform(0.5, 0.999)])))
    return out


# ---- Wilson ----------------------------------------------------------------------------------------------

WILSON_EDGES = [
    (0, 1, 0.95),
    (1, 1, 0.95),
    (0, 20, 0.95),
    (20, 20, 0.95),
    (0, 20_000, 0.95),
    (20_000, 20_000, 0.99),
    (1, 20_000, 0.95),
    (10_000, 20_000, 0.95),
    (7, 20, 0.5),
]


@pytest.mark.parametrize(("k", "n", "confidence"), _cases(1, 400, 20_000) + WILSON_EDGES)
def test_wilson_matches_statsmodels_and_scipy(k: int, n: int, confidence: float) -> None:
    low, high = wilson_interval(k, n, confidence) or (math.nan, math.nan)
    sm_low, sm_high = proportion_confint(k, n, alpha=1 - confidence, method="wilson")
    sp = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    assert low == close(float(sm_low)) and high == close(float(sm_high))
    assert low == close(sp.low) and high == close(sp.high)
    assert 0.0 <= low <= k / n <= high <= 1.0


def test_wilson_edges_are_exact() -> None:
    assert wilson_interval(0, 50)[0] == 0.0  # type: ignore[index]
    assert wilson_interval(50, 50)[1] == 1.0  # type: ignore[index]
    assert wilson_interval(0, 0) is None  # no items, no interval (documented): not (0, 1)
    assert estimate_rate(0, 0).to_xcom() == {
        "passed": 0,
        "n": 0,
        "rate": None,
        "low": None,
        "high": None,
        "confidence": 0.95,
        "method": "wilson",
    }
    assert z_value(0.95) == pytest.approx(1.959963984540054, rel=1e-15)


@pytest.mark.parametrize("confidence", [0, 1, 95, -0.1, math.nan, True, "0.95", None])
def test_a_confidence_outside_0_1_is_a_setting_to_fix(confidence: Any) -> None:
    with pytest.raises(EvalsConfigError, match=r"'confidence'.*between 0 and 1"):
        wilson_interval(1, 2, confidence)
    with pytest.raises(EvalsConfigError):
        wilson_interval(0, 0, confidence)  # even with nothing to compute


@pytest.mark.parametrize(("k", "n"), [(-1, 5), (6, 5), (0, -1)])
def test_impossible_counts_are_refused(k: int, n: int) -> None:
    with pytest.raises(ValueError, match="successes"):
        wilson_interval(k, n)


# ---- McNemar ---------------------------------------------------------------------------------------------


def _flip_cases(seed: int, count: int) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        total = rng.choice([rng.randint(0, 25), rng.randint(0, 400), rng.randint(0, 20_000)])
        b = rng.choice([rng.randint(0, total), round(total * rng.uniform(0.4, 0.6))])
        out.append((b, total - b))
    return out


FLIP_EDGES = [
    (0, 0),
    (0, 1),
    (1, 0),
    (5, 5),
    (0, 30),
    (30, 0),
    (1, 19_999),
    (9_999, 10_001),
    (10_000, 10_000),
]


@pytest.mark.parametrize(("b", "c"), _flip_cases(2, 400) + FLIP_EDGES)
def test_mcnemar_matches_statsmodels_and_scipy(b: int, c: int) -> None:
    p = mcnemar_exact_p(b, c)
    sm = float(mcnemar([[7, b], [c, 3]], exact=True).pvalue)
    assert p == close(sm)
    if b + c:
        assert p == close(binomtest(b, b + c, 0.5).pvalue)
    assert 0.0 <= p <= 1.0


def test_mcnemar_edges() -> None:
    assert mcnemar_exact_p(0, 0) == 1.0  # no flips: no evidence either way
    assert mcnemar_exact_p(7, 7) == 1.0
    assert mcnemar_exact_p(0, 1) == 1.0  # one flip proves nothing
    assert mcnemar_exact_p(0, 5) == 2 / 32
    assert mcnemar_exact_p(16, 6) == pytest.approx(0.052479, abs=5e-7)  # published (Cavo)
    with pytest.raises(ValueError, match=">= 0"):
        mcnemar_exact_p(-1, 3)


def test_mcnemar_on_20000_items_is_accurate() -> None:
    worst = [(9_999, 10_001), (9_000, 11_000), (9_900, 10_100), (1, 19_999)]
    values = [mcnemar_exact_p(b, c) for b, c in worst]
    for (b, c), p in zip(worst, values, strict=True):
        assert p == pytest.approx(binomtest(b, b + c, 0.5).pvalue, rel=1e-9, abs=1e-300)
    # A million discordant pairs: the tail is summed in floating point, not with exact big integers.
    assert mcnemar_exact_p(499_000, 501_000) == pytest.approx(binomtest(499_000, 1_000_000).pvalue, rel=1e-8)


# ---- Newcombe, paired ------------------------------------------------------------------------------------


def _newcombe_paired_oracle(a: int, b: int, c: int, d: int, confidence: float) -> tuple[float, float]:
    """Newcombe's method 10 as Fagerland, Lydersen and Laake write it (rows: candidate, columns:
    baseline; n11 both passed, n12 candidate only, n21 baseline only), on scipy's Wilson intervals."""
    table = np.array([[a, c], [b, d]], dtype=float)
    n = table.sum()
    rows, cols = table.sum(axis=1), table.sum(axis=0)
    p1, p2 = rows[0] / n, cols[0] / n
    ci1 = binomtest(int(rows[0]), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    ci2 = binomtest(int(cols[0]), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    psi = 0.0
    if rows.prod() * cols.prod() > 0:
        big_a = table[0, 0] * table[1, 1] - table[0, 1] * table[1, 0]
        if big_a > n / 2:
            psi = (big_a - n / 2) / np.sqrt(rows.prod() * cols.prod())
        elif big_a < 0:
            psi = big_a / np.sqrt(rows.prod() * cols.prod())
    lo = (
        p1
        - p2
        - np.sqrt((p1 - ci1.low) ** 2 + (ci2.high - p2) ** 2 - 2 * psi * (p1 - ci1.low) * (ci2.high - p2))
    )
    hi = (
        p1
        - p2
        + np.sqrt((p2 - ci2.low) ** 2 + (ci1.high - p1) ** 2 - 2 * psi * (p2 - ci2.low) * (ci1.high - p1))
    )
    return max(-1.0, float(lo)), min(1.0, float(hi))


def _tables(seed: int, count: int) -> list[tuple[int, int, int, int, float]]:
    rng = random.Random(seed)
    out: list[tuple[int, int, int, int, float]] = []
    for _ in range(count):
        n = rng.choice([rng.randint(1, 20), rng.randint(1, 300), rng.randint(1, 20_000)])
        weights = [rng.random() for _ in range(4)]
        weights[0] *= rng.choice([1, 5, 20])  # eval runs mostly agree
        cells = [0, 0, 0, 0]
        for i in rng.choices(range(4), weights=weights, k=n):
            cells[i] += 1
        a, b, c, d = cells
        out.append((a, b, c, d, rng.choice(CONFIDENCES)))
    return out


TABLE_EDGES = [
    (1, 0, 0, 0, 0.95),
    (0, 0, 0, 1, 0.95),
    (0, 1, 0, 0, 0.95),
    (10, 0, 0, 0, 0.95),  # everything passed twice: zero margins, phi 0
    (0, 0, 0, 10, 0.95),
    (0, 10, 0, 0, 0.95),  # every item regressed
    (0, 0, 10, 0, 0.95),
    (59, 16, 6, 80, 0.95),  # Cavo
    (19_000, 400, 300, 300, 0.95),
]


@pytest.mark.parametrize(("a", "b", "c", "d", "confidence"), _tables(3, 300) + TABLE_EDGES)
def test_newcombe_paired_matches_the_published_construction(
    a: int, b: int, c: int, d: int, confidence: float
) -> None:
    low, high = newcombe_paired_interval(a, b, c, d, confidence) or (math.nan, math.nan)
    want_low, want_high = _newcombe_paired_oracle(a, b, c, d, confidence)
    assert low == close(want_low) and high == close(want_high)
    n = a + b + c + d
    assert -1.0 <= low <= (c - b) / n + 1e-15 and (c - b) / n - 1e-15 <= high <= 1.0


def _zero_phi_tables(seed: int, count: int) -> list[tuple[int, int, int, int, float]]:
    """Tables whose corrected phi is 0: 0 <= ad - bc <= n/2 for the flips drawn, or a zero margin."""
    rng = random.Random(seed)
    out: list[tuple[int, int, int, int, float]] = []
    while len(out) < count:
        n = rng.choice([rng.randint(1, 40), rng.randint(1, 2_000)])
        b = rng.randint(0, n)
        c = rng.randint(0, n - b)
        m = n - b - c
        fits = [a for a in range(m + 1) if 0 <= a * (m - a) - b * c <= n / 2]
        if not fits:
            continue
        a = rng.choice(fits)
        out.append((a, b, c, m - a, rng.choice(CONFIDENCES)))
    return out


@pytest.mark.parametrize(("a", "b", "c", "d", "confidence"), _zero_phi_tables(4, 200) + TABLE_EDGES[:7])
def test_newcombe_paired_without_correlation_is_statsmodels_newcomb(
    a: int, b: int, c: int, d: int, confidence: float
) -> None:
    """Where Newcombe's corrected phi is 0, the paired interval is the independent one on the same
    margins, which statsmodels computes: an oracle that shares no code with ours."""
    n = a + b + c + d
    low, high = newcombe_paired_interval(a, b, c, d, confidence) or (math.nan, math.nan)
    sm_low, sm_high = confint_proportions_2indep(
        a + c, n, a + b, n, method="newcomb", compare="diff", alpha=1 - confidence
    )
    assert low == close(float(sm_low)) and high == close(float(sm_high))


def test_newcombe_paired_published_example() -> None:
    """Cavo et al. (2012): 59 + 80 agree, 16 + 6 flip; 95% CI -0.1186 to -0.0046 as published."""
    low, high = newcombe_paired_interval(59, 16, 6, 80) or (0.0, 0.0)
    assert round(low, 4) == -0.1186 and round(high, 4) == -0.0046
    assert newcombe_paired_interval(0, 0, 0, 0) is None


# ---- independent runs ------------------------------------------------------------------------------------


def _pairs_of_runs(seed: int, count: int) -> list[tuple[int, int, int, int, float]]:
    rng = random.Random(seed)
    out = []
    for (k1, n1, confidence), (k2, n2, _) in zip(
        _cases(seed, count, 20_000), _cases(seed + 100, count, 20_000), strict=True
    ):
        out.append((k1, n1, k2, n2, confidence))
    rng.shuffle(out)
    return out


@pytest.mark.parametrize(("k1", "n1", "k2", "n2", "confidence"), _pairs_of_runs(5, 300))
def test_independent_interval_and_z_test_match_statsmodels(
    k1: int, n1: int, k2: int, n2: int, confidence: float
) -> None:
    low, high = newcombe_interval(k1, n1, k2, n2, confidence) or (math.nan, math.nan)
    sm_low, sm_high = confint_proportions_2indep(
        k1, n1, k2, n2, method="newcomb", compare="diff", alpha=1 - confidence
    )
    assert low == close(float(sm_low)) and high == close(float(sm_high))
    z, p = two_proportions_z_test(k1, n1, k2, n2) or (math.nan, math.nan)
    pooled = (k1 + k2) / (n1 + n2)
    if 0 < pooled < 1:
        sm_z, sm_p = proportions_ztest([k1, k2], [n1, n2])
        assert z == close(float(sm_z))
        assert p == pytest.approx(float(sm_p), rel=1e-9, abs=1e-15)
    else:
        assert (z, p) == (0.0, 1.0)


def test_independent_edges() -> None:
    # Both runs passed everything: statsmodels divides 0 by 0; equal rates are no evidence of change.
    assert two_proportions_z_test(50, 50, 80, 80) == (0.0, 1.0)
    assert two_proportions_z_test(0, 50, 0, 80) == (0.0, 1.0)
    assert two_proportions_z_test(1, 1, 0, 1) is not None
    assert two_proportions_z_test(0, 0, 3, 5) is None and newcombe_interval(3, 5, 0, 0) is None
    # The tail keeps its digits (1 - cdf would round to 0 long before this).
    _, p = two_proportions_z_test(0, 20_000, 20_000, 20_000) or (0.0, 0.0)
    assert p == pytest.approx(float(proportions_ztest([0, 20_000], [20_000, 20_000])[1]), rel=1e-9)


# ---- runs ------------------------------------------------------------------------------------------------

UUID = "2eaf2d8d-d649-4335-8148-9535a7ca73c2"


def run(run_id: str, passed: int, failed: int, errored: int = 0, **fields: Any) -> EvalRun:
    counts = {"total": passed + failed + errored, "passed": passed, "failed": failed, "errored": errored}
    return EvalRun.model_validate(
        {"id": run_id, "eval_id": "eval_1", "status": "completed", "result_counts": counts, **fields}
    )


def test_run_rates_use_the_summary_policy() -> None:
    s = summarize(
        run(
            "evalrun_1",
            200,
            40,
            10,
            per_testing_criteria_results=[
                {"testing_criteria": f"exact-{UUID}", "passed": 200, "failed": 50},
                {"testing_criteria": "tone", "passed": 0, "failed": 0},
            ],
        )
    )
    rates = run_rates(s, 0.95)
    assert rates.overall.rate == s.pass_rate == 0.8 and rates.overall.n == 250  # errored count as not passed
    assert rates.criterion(f"exact-{UUID}").estimate.rate == s.criterion("exact").pass_rate
    assert rates.criterion("tone").estimate.rate is None and rates.criterion("tone").estimate.low is None
    assert (round(rates.overall.low or 0, 4), round(rates.overall.high or 0, 4)) == (0.746, 0.8449)
    json.dumps(rates.to_xcom())
    with pytest.raises(KeyError):
        rates.criterion("exact")  # names go through RunSummary.criterion, which explains a miss


def test_run_rates_agree_with_the_summary_on_random_counts() -> None:
    rng = random.Random(6)
    for _ in range(200):
        p, f, e, sk = (rng.randint(0, 50) for _ in range(4))
        s = summarize(
            run(
                "evalrun_r",
                p,
                f,
                e,
                per_testing_criteria_results=[{"testing_criteria": "c", "passed": p, "failed": f}],
            )
        )
        s = s.model_copy(update={"counts": s.counts.model_copy(update={"skipped": sk})})
        rates = run_rates(s)
        assert (
            rates.overall.rate == s.pass_rate and rates.criteria[0].estimate.rate == s.criteria[0].pass_rate
        )


def items(outcomes: str, criterion: str = f"exact-{UUID}") -> list[OutputItem]:
    """One item per character: p pass, f fail, e errored."""
    out = []
    for i, kind in enumerate(outcomes):
        body: dict[str, Any] = {
            "id": f"oi_{i}",
            "datasource_item_id": i,
            "status": "pass" if kind == "p" else "fail",
        }
        if kind == "e":
            body["sample"] = {"error": {"code": "server_error", "message": "x"}}
        else:
            body["results"] = [{"name": criterion, "passed": kind == "p"}]
        out.append(OutputItem.model_validate(body))
    return out


def criteria_of(outcomes: str) -> list[dict[str, Any]]:
    return [
        {"testing_criteria": f"exact-{UUID}", "passed": outcomes.count("p"), "failed": outcomes.count("f")}
    ]


def summary_of(run_id: str, outcomes: str) -> Any:
    return summarize(
        run(
            run_id,
            outcomes.count("p"),
            outcomes.count("f"),
            outcomes.count("e"),
            per_testing_criteria_results=criteria_of(outcomes),
        )
    )


#: The documented example (docs/statistics.md): 200 items, 12 regress, 3 improve.
BASELINE = "p" * 158 + "p" * 12 + "f" * 3 + "f" * 27
CANDIDATE = "p" * 158 + "f" * 6 + "e" * 6 + "p" * 3 + "f" * 27


def test_the_documented_paired_example() -> None:
    baseline, candidate = summary_of("evalrun_base", BASELINE), summary_of("evalrun_cand", CANDIDATE)
    pairing = pair_items(
        items(BASELINE), items(CANDIDATE), baseline_run_id="evalrun_base", candidate_run_id="evalrun_cand"
    )
    assert pairing.overall == PairedCounts(both_passed=158, pass_to_fail=12, fail_to_pass=3, both_failed=27)
    c = compare_runs(candidate, baseline, pairing)
    assert c.paired and c.test == MCNEMAR_EXACT and c.reason == "paired by datasource_item_id (200 items)"
    o = c.overall
    assert (o.candidate.rate, o.baseline.rate) == (0.805, 0.85)
    assert o.difference == pytest.approx(-0.045) and o.regression == pytest.approx(0.045)
    assert (o.pass_to_fail, o.fail_to_pass) == (12, 3)
    assert o.p_value == pytest.approx(0.03515625, rel=1e-12)  # 2 * (1 + 15 + 105 + 455) / 2**15
    assert o.interval_method == NEWCOMBE_PAIRED
    assert (round(o.low or 0, 4), round(o.high or 0, 4)) == (-0.0863, -0.0058)
    # The errored items have no grade: left out of the criterion, and said so.
    exact = c.criterion("exact")
    assert (
        exact is not None
        and exact.test == MCNEMAR_EXACT
        and exact.reason.endswith("; 6 items graded by it in one run only left out")
    )
    assert (exact.pass_to_fail, exact.fail_to_pass) == (6, 3)
    assert exact.p_value == pytest.approx(260 / 512, rel=1e-12)
    # The same two runs compared as if unpaired: the same drop is far from significant.
    unpaired = compare_runs(candidate, baseline)
    assert not unpaired.paired and unpaired.test == TWO_PROPORTIONS_Z
    assert unpaired.reason == "output items were not paired; compared from result counts"
    assert unpaired.overall.p_value == pytest.approx(0.2336, abs=5e-5)
    assert unpaired.overall.interval_method == NEWCOMBE_INDEPENDENT
    assert (round(unpaired.overall.low or 0, 4), round(unpaired.overall.high or 0, 4)) == (-0.1191, 0.0294)
    text = json.dumps(c.to_xcom())
    assert "oi_" not in text and json.loads(text)["test"] == MCNEMAR_EXACT


def test_runs_over_different_datasets_use_the_independent_test_and_say_why() -> None:
    baseline, candidate = summary_of("evalrun_base", "ppppf"), summary_of("evalrun_cand", "pppf")
    pairing = pair_items(items("ppppf"), items("pppf"))
    c = compare_runs(candidate, baseline, pairing)
    assert not c.paired and c.test == TWO_PROPORTIONS_Z
    assert (
        c.reason
        == "runs have different datasets: 1 item unmatched (1 missing from the candidate, 0 missing from the baseline)"
    )
    assert (c.matched, c.missing_in_candidate, c.missing_in_baseline) == (4, 1, 0)
    wider = compare_runs(
        summary_of("evalrun_cand", "ppppp"),
        baseline,
        pair_items(items("ppppf"), items("pppp") + items("ppppp")[4:]),
    )
    assert wider.reason.startswith("paired")  # item 4 is in both: same dataset
    apart = pair_items(items("ppppf"), [*items("ppp"), *items("pppppp")[5:]])
    assert compare_runs(summary_of("evalrun_cand", "pppp"), baseline, apart).reason == (
        "runs have different datasets: 3 items unmatched (2 missing from the candidate, 1 missing from the baseline)"
    )
    assert c.criterion("exact") is not None and c.criterion("exact").test == TWO_PROPORTIONS_Z  # type: ignore[union-attr]


def test_items_without_ids_use_the_independent_test_and_say_why() -> None:
    unnamed = [OutputItem.model_validate({"id": "oi_x", "status": "pass"})]
    pairing = pair_items(unnamed, items("p"), baseline_run_id="evalrun_base")
    c = compare_runs(summary_of("evalrun_cand", "p"), summary_of("evalrun_base", "p"), pairing)
    assert (
        c.test == TWO_PROPORTIONS_Z
        and c.reason == "no datasource_item_id on output item oi_x of run evalrun_base"
    )
    assert c.matched is None


def test_a_pairing_of_other_runs_is_refused() -> None:
    pairing = pair_items(
        items("pf"), items("pp"), baseline_run_id="evalrun_cand", candidate_run_id="evalrun_base"
    )
    with pytest.raises(
        ValueError,
        match="the pairing's baseline is run evalrun_cand, but the baseline summary is run evalrun_base",
    ):
        compare_runs(summary_of("evalrun_cand", "pp"), summary_of("evalrun_base", "pf"), pairing)


def test_a_run_without_results_is_not_tested() -> None:
    c = compare_runs(summary_of("evalrun_cand", ""), summary_of("evalrun_base", "ppf"))
    assert c.test == NO_TEST and c.overall.reason == "the candidate run has no results"
    assert c.overall.p_value is None and c.overall.difference is None and c.overall.regression is None
    json.dumps(c.to_xcom())
    assert compare_paired("x", PairedCounts(), "r", 0.95).test == NO_TEST


def test_criteria_are_matched_by_name_and_the_rest_listed() -> None:
    old = summarize(
        run(
            "evalrun_base",
            3,
            1,
            per_testing_criteria_results=[
                {"testing_criteria": f"exact-{UUID}", "passed": 3, "failed": 1},
                {"testing_criteria": "old-only", "passed": 1, "failed": 0},
            ],
        )
    )
    new = summarize(
        run(
            "evalrun_cand",
            2,
            2,
            per_testing_criteria_results=[
                {"testing_criteria": "exact-0b1c2d3e-aaaa-bbbb-cccc-1234567890ab", "passed": 2, "failed": 2},
                {"testing_criteria": "new-only", "passed": 1, "failed": 0},
            ],
        )
    )
    c = compare_runs(new, old)
    assert [x.name for x in c.criteria] == ["exact"]
    assert c.criteria_only_in_candidate == ("new-only",) and c.criteria_only_in_baseline == ("old-only",)


def test_the_api_layer_never_imports_scipy_or_numpy() -> None:
    code = (
        "import sys, airflow_provider_aoai_evals\n"
        "import airflow_provider_aoai_evals.api.stats, airflow_provider_aoai_evals.api.pairing\n"
        "import airflow_provider_aoai_evals.api.summary, airflow_provider_aoai_evals.api.gates\n"
        "import airflow_provider_aoai_evals.api.client\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in {'scipy', 'numpy', 'statsmodels', 'pandas'})\n"
        "airflow = sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.'))\n"
        "assert not heavy and not airflow, (heavy, airflow)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

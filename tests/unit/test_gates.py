"""Gate verdicts at the edges: exact thresholds, no data, unknown criteria, errored items, baselines."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_aoai_evals.api.errors import EvalsConfigError
from airflow_provider_aoai_evals.api.gates import Thresholds, evaluate
from airflow_provider_aoai_evals.api.models import EvalRun
from airflow_provider_aoai_evals.api.summary import RunSummary, summarize

U1 = "2eaf2d8d-d649-4335-8148-9535a7ca73c2"
U2 = "0b1c2d3e-aaaa-bbbb-cccc-1234567890ab"


def summary(
    passed: int = 0,
    failed: int = 0,
    errored: int = 0,
    criteria: dict[str, tuple[int, int]] | None = None,
    **kw: Any,
) -> RunSummary:
    fields: dict[str, Any] = {
        "id": kw.pop("id", "evalrun_now"),
        "eval_id": "eval_1",
        "status": kw.pop("status", "completed"),
        "result_counts": {
            "total": passed + failed + errored,
            "passed": passed,
            "failed": failed,
            "errored": errored,
        },
        "per_testing_criteria_results": [
            {"testing_criteria": f"{name}-{U1}", "passed": p, "failed": f}
            for name, (p, f) in (criteria or {}).items()
        ]
        or None,
        **kw,
    }
    return summarize(EvalRun.model_validate(fields))


def test_rate_exactly_at_threshold_passes() -> None:
    s = summary(passed=7, failed=3, criteria={"exact": (2, 1)})
    verdict = evaluate(
        s, Thresholds(min_pass_rate=0.7, min_criterion_pass_rates={"exact": 2 / 3}, max_errored_rate=0.0)
    )
    assert verdict.passed, verdict.message()
    assert not evaluate(s, Thresholds(min_pass_rate=0.7000001)).passed


def test_errored_items_count_against_the_pass_rate() -> None:
    s = summary(passed=8, failed=0, errored=2)
    verdict = evaluate(s, Thresholds(min_pass_rate=0.9, max_errored_rate=0.1))
    assert not verdict.passed
    assert [(c.name, c.value) for c in verdict.failures] == [("pass_rate", 0.8), ("errored_rate", 0.2)]
    assert (
        "pass rate 80.0% < 90.0%" in verdict.message() and "errored rate 20.0% > 10.0%" in verdict.message()
    )
    assert evaluate(s, Thresholds(max_errored_rate=0.19)).passed is False
    assert evaluate(s, Thresholds(max_errored_rate=0.2)).passed


def test_no_data_fails_overall_thresholds_saying_so() -> None:
    s = summary()
    verdict = evaluate(s, Thresholds(min_pass_rate=0.0))
    assert not verdict.passed and "the run has no results" in verdict.message()
    assert not evaluate(s, Thresholds(max_errored_rate=1.0)).passed


def test_no_per_criterion_data_fails_only_criterion_thresholds() -> None:
    s = summary(passed=5, failed=0)  # results, but no per-criterion breakdown
    assert evaluate(s, Thresholds(min_pass_rate=0.9)).passed
    with pytest.raises(EvalsConfigError, match="criteria are: none"):
        evaluate(s, Thresholds(min_criterion_pass_rates={"exact": 0.5}))
    graded_by_nobody = summary(passed=5, criteria={"exact": (0, 0)})
    verdict = evaluate(
        graded_by_nobody, Thresholds(min_pass_rate=0.9, min_criterion_pass_rates={"exact": 0.5})
    )
    assert [c.name for c in verdict.failures] == [
        "criterion:exact"
    ] and "no item was graded" in verdict.message()


def test_unknown_criterion_lists_names() -> None:
    s = summary(passed=1, criteria={"exact": (1, 0), "tone": (1, 0)})
    with pytest.raises(
        EvalsConfigError, match="'toxicity' is not in run evalrun_now; its criteria are: exact, tone"
    ):
        evaluate(s, Thresholds(min_criterion_pass_rates={"toxicity": 0.5}))


def test_every_failing_criterion_is_listed() -> None:
    s = summary(passed=1, failed=9, criteria={"exact": (1, 9), "tone": (3, 7)})
    verdict = evaluate(s, Thresholds(min_pass_rate=0.5, min_criterion_pass_rates={"exact": 0.5, "tone": 0.3}))
    assert [c.name for c in verdict.failures] == ["pass_rate", "criterion:exact"]
    message = verdict.message()
    assert (
        "criterion 'exact' pass rate 10.0% < 50.0%" in message
        and "ok   criterion 'tone' pass rate 30.0% >= 30.0%" in message
    )


def test_unfinished_or_failed_run_fails_the_gate() -> None:
    verdict = evaluate(summary(passed=10, status="failed"), Thresholds(min_pass_rate=0.1))
    assert not verdict.passed and "run status is 'failed'" in verdict.message()


@pytest.mark.parametrize(
    ("now", "before", "tolerance", "passed"),
    [
        ((80, 20), (85, 15), 0.05, True),  # exactly five points down: within
        ((79, 21), (85, 15), 0.05, False),  # six points down
        ((95, 5), (85, 15), 0.0, True),  # better than the baseline
        ((85, 15), (85, 15), 0.0, True),  # equal
    ],
)
def test_regression_against_baseline(
    now: tuple[int, int], before: tuple[int, int], tolerance: float, passed: bool
) -> None:
    current = summary(passed=now[0], failed=now[1], criteria={"exact": now})
    baseline = summary(passed=before[0], failed=before[1], criteria={"exact": before}, id="evalrun_base")
    verdict = evaluate(current, Thresholds(max_regression=tolerance), baseline)
    assert verdict.passed is passed, verdict.message()
    assert verdict.baseline_run_id == "evalrun_base"
    assert f"vs baseline {before[0] / 100:.1%}" in verdict.message()  # both runs' rates side by side


def test_regression_needs_a_baseline_and_handles_empty_ones() -> None:
    current = summary(passed=5, failed=5)
    with pytest.raises(EvalsConfigError) as info:
        evaluate(current, Thresholds(max_regression=0.1))
    assert info.value.parameter == "baseline_run_id"
    empty_baseline = summary(id="evalrun_base")
    assert evaluate(current, Thresholds(max_regression=0.1), empty_baseline).passed
    assert not evaluate(summary(), Thresholds(max_regression=0.1), current).passed


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"min_pass_rate": 1.5}, "min_pass_rate"),
        ({"min_pass_rate": True}, "min_pass_rate"),
        ({"max_errored_rate": -0.1}, "max_errored_rate"),
        ({"max_regression": "5"}, "max_regression"),
        ({"min_criterion_pass_rates": {"exact": 2}}, "min_criterion_pass_rates['exact']"),
        ({"min_criterion_pass_rates": ["exact"]}, "min_criterion_pass_rates"),
    ],
)
def test_thresholds_are_validated(kwargs: dict[str, Any], parameter: str) -> None:
    with pytest.raises(EvalsConfigError) as info:
        Thresholds(**kwargs)
    assert info.value.parameter == parameter


def test_criterion_by_exact_id_and_second_uuid() -> None:
    s = summarize(
        EvalRun.model_validate(
            {
                "id": "evalrun_1",
                "status": "completed",
                "result_counts": {"total": 2, "passed": 1, "failed": 1, "errored": 0},
                "per_testing_criteria_results": [
                    {"testing_criteria": f"exact-{U1}", "passed": 1, "failed": 0},
                    {"testing_criteria": f"exact-{U2}", "passed": 0, "failed": 1},
                ],
            }
        )
    )
    assert evaluate(s, Thresholds(min_criterion_pass_rates={f"exact-{U1}": 1.0})).passed
    with pytest.raises(EvalsConfigError, match="ambiguous"):
        evaluate(s, Thresholds(min_criterion_pass_rates={"exact": 0.5}))

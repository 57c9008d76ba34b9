"""The pass-rate policy on plain runs: every rate is computed here and only here."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_aoai_evals.api.errors import EvalsConfigError
from airflow_provider_aoai_evals.api.models import EvalRun
from airflow_provider_aoai_evals.api.summary import criterion_name, summarize

UUID = "2eaf2d8d-d649-4335-8148-9535a7ca73c2"
UUID2 = "0b1c2d3e-aaaa-bbbb-cccc-1234567890ab"


def run(**fields: Any) -> EvalRun:
    return EvalRun.model_validate({"id": "evalrun_1", "eval_id": "eval_1", "status": "completed", **fields})


def test_errored_items_count_as_not_passed_and_skipped_are_left_out() -> None:
    s = summarize(run(result_counts={"total": 10, "passed": 6, "failed": 2, "errored": 1, "skipped": 1}))
    assert s.counts.executed == 9 and s.counts.skipped == 1
    assert s.pass_rate == pytest.approx(6 / 9) and s.errored_rate == pytest.approx(1 / 9)


@pytest.mark.parametrize(
    "counts", [None, {"total": 0, "passed": 0, "failed": 0, "errored": 0}, {"total": 5, "skipped": 5}]
)
def test_no_executed_items_means_no_rate(counts: dict[str, int] | None) -> None:
    s = summarize(run(result_counts=counts, per_testing_criteria_results=None))
    assert s.pass_rate is None and s.errored_rate is None and not s.has_results and s.criteria == []


def test_per_criterion_rates_and_names() -> None:
    s = summarize(
        run(
            result_counts={"total": 4, "passed": 3, "failed": 1, "errored": 0},
            per_testing_criteria_results=[
                {"testing_criteria": f"exact-label-{UUID}", "passed": 3, "failed": 1},
                {"testing_criteria": f"tone-{UUID2}", "passed": 0, "failed": 0},
                {"testing_criteria": "legacy", "passed": 2, "failed": 2},
            ],
        )
    )
    exact = s.criterion("exact-label")
    assert exact.pass_rate == 0.75 and exact.id == f"exact-label-{UUID}"
    assert s.criterion(f"exact-label-{UUID}") == exact  # the exact id works too
    assert s.criterion("tone").pass_rate is None  # nothing graded: no division by zero
    assert s.criterion("legacy").pass_rate == 0.5


def test_unknown_criterion_lists_the_names_the_run_has() -> None:
    s = summarize(
        run(per_testing_criteria_results=[{"testing_criteria": f"exact-{UUID}", "passed": 1, "failed": 0}])
    )
    with pytest.raises(EvalsConfigError, match="'toxicity' is not in run evalrun_1; its criteria are: exact"):
        s.criterion("toxicity")


def test_duplicate_criterion_names_are_ambiguous() -> None:
    s = summarize(
        run(
            per_testing_criteria_results=[
                {"testing_criteria": f"exact-{UUID}", "passed": 1, "failed": 0},
                {"testing_criteria": f"exact-{UUID2}", "passed": 0, "failed": 1},
            ]
        )
    )
    with pytest.raises(EvalsConfigError, match="ambiguous"):
        s.criterion("exact")
    assert s.criterion(f"exact-{UUID2}").pass_rate == 0.0


def test_usage_totals_and_no_data_source() -> None:
    s = summarize(
        run(
            per_model_usage=[
                {
                    "model_name": "gpt-4o",
                    "invocation_count": 2,
                    "prompt_tokens": 10,
                    "completion_tokens": 5,
                    "total_tokens": 15,
                    "cached_tokens": 1,
                },
                {
                    "model_name": "o3-mini",
                    "invocation_count": 1,
                    "prompt_tokens": 4,
                    "completion_tokens": 4,
                    "total_tokens": 8,
                    "cached_tokens": 0,
                },
            ],
            data_source={
                "type": "jsonl",
                "source": {"type": "file_content", "content": [{"item": {"pii": "SECRET-ROW"}}]},
            },
            error={"code": "x", "message": "m"},
        )
    )
    assert (
        s.usage.total_tokens == 23
        and s.usage.invocation_count == 3
        and set(s.usage.per_model) == {"gpt-4o", "o3-mini"}
    )
    assert "SECRET-ROW" not in str(s.to_xcom()) and "data_source" not in s.to_xcom()
    assert (s.error_code, s.error_message) == ("x", "m")


@pytest.mark.parametrize(
    ("api_id", "name"),
    [
        (f"a-b-c-{UUID}", "a-b-c"),
        ("plain", "plain"),
        (f"-{UUID}", f"-{UUID}"),
        ("x-not-a-uuid", "x-not-a-uuid"),
    ],
)
def test_criterion_name(api_id: str, name: str) -> None:
    assert criterion_name(api_id) == name


def test_progress_line() -> None:
    s = summarize(
        run(
            status="in_progress",
            result_counts={"total": 10, "passed": 3, "failed": 1, "errored": 0, "skipped": 2},
        )
    )
    assert s.progress_line() == (
        "eval run evalrun_1: in_progress, 4/10 items graded (3 passed, 1 failed, 0 errored, 2 skipped), pass rate 75.0%"
    )

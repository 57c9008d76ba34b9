"""The wait policy's end of a wait: when it cancels the run, the token budget, and the deferral's margin."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_aoai_evals.api.errors import EvalsConfigError
from airflow_provider_aoai_evals.api.models import EvalRun
from airflow_provider_aoai_evals.api.waiting import (
    DEFERRAL_SLACK_SECONDS,
    CancelOutcome,
    Verdict,
    WaitPolicy,
    check_flag,
    check_token_budget,
    deferral_margin,
    total_tokens,
)


def run(status: str, *tokens: int) -> EvalRun:
    usage: list[dict[str, Any]] = [{"model_name": f"m{i}", "total_tokens": t} for i, t in enumerate(tokens)]
    return EvalRun.model_validate(
        {"id": "evalrun_1", "eval_id": "eval_1", "status": status, "per_model_usage": usage}
    )


def policy(**kw: Any) -> WaitPolicy:
    kw.setdefault("poll_interval", 1.0)
    kw.setdefault("deadline", 100.0)
    kw.setdefault("success_statuses", ("completed",))
    return WaitPolicy(**kw)


def test_timeout_cancels_only_when_asked() -> None:
    assert policy().before_poll(100.0).verdict is Verdict.TIMED_OUT
    assert policy().before_poll(100.0).cancel is False
    ending = policy(cancel_on_timeout=True).before_poll(100.0)
    assert ending.verdict is Verdict.TIMED_OUT and ending.cancel is True
    assert policy(cancel_on_timeout=True).before_poll(99.0).over is False
    # A deadline Airflow keeps (a poking sensor, a lost deferral) ends the same way.
    assert policy(deadline=None, cancel_on_timeout=True).timed_out().cancel is True
    assert policy(deadline=None).timed_out().cancel is False


def test_tokens_are_summed_over_models() -> None:
    assert total_tokens(run("in_progress", 300, 450)) == 750
    assert total_tokens(EvalRun.model_validate({"id": "r", "per_model_usage": None})) == 0
    assert total_tokens(EvalRun.model_validate({"id": "r", "per_model_usage": [{"model_name": "m"}]})) == 0


def test_a_run_still_going_over_budget_is_to_be_canceled() -> None:
    wait = policy(max_total_tokens=700)
    assert wait.observe(run("in_progress", 300, 400), 1.0).verdict is Verdict.WAIT  # at the budget: fine
    decision = wait.observe(run("in_progress", 300, 401), 2.0)
    assert decision.verdict is Verdict.OVER_BUDGET and decision.over
    assert decision.cancel is True and decision.tokens_used == 701


@pytest.mark.parametrize("status", ["completed", "failed", "canceled"])
def test_a_run_that_finished_over_budget_fails_with_nothing_to_cancel(status: str) -> None:
    decision = policy(max_total_tokens=10).observe(run(status, 11), 1.0)
    assert decision.verdict is Verdict.OVER_BUDGET and decision.cancel is False and decision.tokens_used == 11


def test_no_budget_means_no_budget() -> None:
    assert policy().observe(run("completed", 10**12), 1.0).verdict is Verdict.DONE


@pytest.mark.parametrize("bad", [True, False, 0, -5, 1.5, 1000.0, "1000", [1000]])
def test_budget_must_be_a_positive_int(bad: object) -> None:
    with pytest.raises(EvalsConfigError) as info:
        check_token_budget(bad)
    assert info.value.parameter == "max_total_tokens" and repr(bad) in str(info.value)


def test_budget_accepts_none_and_positive_ints() -> None:
    assert check_token_budget(None) is None and check_token_budget(1) == 1


@pytest.mark.parametrize("bad", [None, 1, 0, "false", "True"])
def test_flags_must_be_bools(bad: object) -> None:
    with pytest.raises(EvalsConfigError) as info:
        check_flag("cancel_on_timeout", bad)
    assert info.value.parameter == "cancel_on_timeout"


def test_the_deferral_waits_for_the_cancel_an_adoption_and_a_loaded_loop() -> None:
    assert deferral_margin(cancel_timeout=30, adoption_seconds=30) == 60 + DEFERRAL_SLACK_SECONDS == 120


def test_cancel_outcomes_say_what_happened() -> None:
    assert CancelOutcome.answered("canceled").canceled is True
    ended = CancelOutcome.answered("completed")
    assert ended.canceled is False and "already ended 'completed'" in ended.describe()
    failed = CancelOutcome.failed("HTTP 403")
    assert (
        failed.canceled is False
        and "HTTP 403" in failed.describe()
        and "may still be running" in failed.describe()
    )
    assert failed.to_event() == {"canceled": False, "cancel_status": None, "cancel_error": "HTTP 403"}

"""Quality gates: thresholds and regression checks over run summaries.

The check and the branch operators both call ``evaluate``; it reads rates only from ``RunSummary`` (the
pass-rate policy in ``summary.py``) and never computes a rate itself. A verdict lists every failing
check with its value and threshold, so one message says everything that is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_aoai_evals.api.errors import EvalsConfigError
from airflow_provider_aoai_evals.api.models import RunStatus
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

    def __post_init__(self) -> None:
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
class Check:
    name: str
    value: float | None
    threshold: float
    passed: bool
    detail: str

    def line(self) -> str:
        mark = "ok  " if self.passed else "FAIL"
        return f"{mark} {self.detail}"


@dataclass(frozen=True)
class Verdict:
    run_id: str
    passed: bool
    checks: list[Check]
    baseline_run_id: str | None = None

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def message(self) -> str:
        head = f"eval run {self.run_id} {'passed' if self.passed else 'failed'} its quality gate"
        if self.baseline_run_id:
            head += f" (baseline {self.baseline_run_id})"
        return head + ":\n" + "\n".join("  " + c.line() for c in self.checks)

    def to_xcom(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "passed": self.passed,
            "baseline_run_id": self.baseline_run_id,
            "checks": [
                {
                    "name": c.name,
                    "value": c.value,
                    "threshold": c.threshold,
                    "passed": c.passed,
                    "detail": c.detail,
                }
                for c in self.checks
            ],
        }


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _at_least(name: str, value: float | None, threshold: float, what: str, no_data: str) -> Check:
    if value is None:
        return Check(name, None, threshold, False, f"{what}: {no_data} (needs >= {_pct(threshold)})")
    ok = value + EPSILON >= threshold
    return Check(name, value, threshold, ok, f"{what} {_pct(value)} {'>=' if ok else '<'} {_pct(threshold)}")


def evaluate(summary: RunSummary, thresholds: Thresholds, baseline: RunSummary | None = None) -> Verdict:
    """Every threshold and regression check on ``summary``; a rate equal to its threshold passes."""
    checks: list[Check] = []
    if summary.status != RunStatus.COMPLETED:
        checks.append(Check("status", None, 0.0, False, f"run status is {summary.status!r}, not 'completed'"))
    no_results = "the run has no results (no item was graded)"
    if thresholds.min_pass_rate is not None:
        checks.append(
            _at_least("pass_rate", summary.pass_rate, thresholds.min_pass_rate, "pass rate", no_results)
        )
    if thresholds.max_errored_rate is not None:
        limit = thresholds.max_errored_rate
        if summary.errored_rate is None:
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
        checks.append(
            _at_least(
                f"criterion:{criterion.name}",
                criterion.pass_rate,
                threshold,
                f"criterion {criterion.name!r} pass rate",
                "no item was graded by it",
            )
        )
    if thresholds.max_regression is not None:
        if baseline is None:
            raise EvalsConfigError("baseline_run_id", "a regression check needs a baseline run")
        checks.extend(_regressions(summary, baseline, thresholds.max_regression))
    return Verdict(
        run_id=summary.run_id,
        passed=all(c.passed for c in checks),
        checks=checks,
        baseline_run_id=baseline.run_id if baseline else None,
    )


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
            side = "this run" if now is None else "the baseline"
            checks.append(
                Check(
                    name,
                    now,
                    tolerance,
                    now is not None,
                    f"{what}: {side} has no results; regression not measured",
                )
            )
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

"""The statistics of pass rates, as everything that decides on them imports it: a run's rates with their
intervals here, the formulas from ``proportions`` and the run comparison from ``comparison``.

Gates, branches, the compare operator and the UI import from this module, so that where a formula lives
can change without their imports changing. ``run_rates`` is the one piece defined here: it applies the
Wilson interval to a run summary (``summary.py``, whose counts define every rate). docs/statistics.md
describes the methods and has worked examples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airflow_provider_aoai_evals.api.comparison import (
    Comparison,
    RateComparison,
    compare_independent,
    compare_paired,
    compare_runs,
)
from airflow_provider_aoai_evals.api.proportions import (
    DEFAULT_CONFIDENCE,
    MCNEMAR_EXACT,
    NEWCOMBE_INDEPENDENT,
    NEWCOMBE_PAIRED,
    NO_TEST,
    TWO_PROPORTIONS_Z,
    WILSON,
    RateEstimate,
    check_confidence,
    estimate_rate,
    mcnemar_exact_p,
    newcombe_interval,
    newcombe_paired_interval,
    two_proportions_z_test,
    wilson_interval,
    z_value,
)
from airflow_provider_aoai_evals.api.summary import RunSummary

__all__ = [
    "DEFAULT_CONFIDENCE",
    "MCNEMAR_EXACT",
    "NEWCOMBE_INDEPENDENT",
    "NEWCOMBE_PAIRED",
    "NO_TEST",
    "TWO_PROPORTIONS_Z",
    "WILSON",
    "Comparison",
    "CriterionEstimate",
    "RateComparison",
    "RateEstimate",
    "RunRates",
    "check_confidence",
    "compare_independent",
    "compare_paired",
    "compare_runs",
    "estimate_rate",
    "mcnemar_exact_p",
    "newcombe_interval",
    "newcombe_paired_interval",
    "run_rates",
    "two_proportions_z_test",
    "wilson_interval",
    "z_value",
]


@dataclass(frozen=True)
class CriterionEstimate:
    name: str
    id: str
    estimate: RateEstimate

    def to_xcom(self) -> dict[str, Any]:
        return {"name": self.name, "id": self.id, **self.estimate.to_xcom()}


@dataclass(frozen=True)
class RunRates:
    """A run's pass rates with their intervals: overall and per criterion, as the summary defines them."""

    run_id: str
    confidence: float
    overall: RateEstimate
    criteria: tuple[CriterionEstimate, ...]

    def criterion(self, criterion_id: str) -> CriterionEstimate:
        """By exact id. Resolve a user's name with ``RunSummary.criterion`` first: it explains unknown and
        ambiguous names, and this does not repeat that."""
        for c in self.criteria:
            if c.id == criterion_id:
                return c
        raise KeyError(criterion_id)

    def to_xcom(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "confidence": self.confidence,
            "overall": self.overall.to_xcom(),
            "criteria": [c.to_xcom() for c in self.criteria],
        }


def run_rates(summary: RunSummary, confidence: float = DEFAULT_CONFIDENCE) -> RunRates:
    """Intervals around the summary's own rates: the numerators and denominators are the summary's
    (``counts.executed``, ``CriterionSummary.graded``), so errored items count as not passed and skipped
    ones are left out exactly as in ``summary.py``."""
    return RunRates(
        run_id=summary.run_id,
        confidence=check_confidence(confidence),
        overall=estimate_rate(summary.counts.passed, summary.counts.executed, confidence),
        criteria=tuple(
            CriterionEstimate(c.name, c.id, estimate_rate(c.passed, c.graded, confidence))
            for c in summary.criteria
        ),
    )

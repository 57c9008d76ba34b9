"""The run summary and the pass-rate policy: the one place where rates are computed.

Sensors return this summary as XCom, triggers put it in their event, gates and branches read their rates
from it, and docs quote these definitions. Nothing else divides passed by anything.

Policy (see docs/pass-rates.md):

* overall pass rate = passed / (passed + failed + errored): an errored item did not pass. Azure's
  ``skipped`` items were not executed, so they are left out of the rate and reported beside it;
* errored rate = errored / (passed + failed + errored);
* per-criterion pass rate = passed / (passed + failed) from ``per_testing_criteria_results``;
* with no executed items a rate is ``None`` (never a division by zero); a gate on it fails saying so.

The API names a criterion ``<name>-<uuid>``; users write the name they gave, so lookups match the name
(or the exact id).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from airflow_provider_aoai_evals.api.errors import EvalsConfigError
from airflow_provider_aoai_evals.api.models import EvalRun

_UUID_SUFFIX = re.compile(
    r"^(?P<name>.+)-[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
)


def ratio(numerator: int, denominator: int) -> float | None:
    """``numerator / denominator``, or None when there is nothing to divide by."""
    return numerator / denominator if denominator > 0 else None


def criterion_name(testing_criteria_id: str) -> str:
    """``"exact-label-2eaf2d8d-d649-4335-8148-9535a7ca73c2"`` -> ``"exact-label"``; other ids unchanged."""
    match = _UUID_SUFFIX.match(testing_criteria_id)
    return match.group("name") if match else testing_criteria_id


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Counts(_Frozen):
    total: int = 0
    passed: int = 0
    failed: int = 0
    errored: int = 0
    skipped: int = 0

    @property
    def executed(self) -> int:
        return self.passed + self.failed + self.errored


class CriterionSummary(_Frozen):
    name: str
    id: str
    passed: int
    failed: int
    pass_rate: float | None

    @property
    def graded(self) -> int:
        """The denominator of ``pass_rate``: the items this criterion passed or failed."""
        return self.passed + self.failed


class Usage(_Frozen):
    invocation_count: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    per_model: dict[str, dict[str, int]] = Field(default_factory=dict)


class RunSummary(_Frozen):
    """What a DAG needs to know about a run: small, JSON-ready, and free of the data source's contents."""

    eval_id: str | None
    run_id: str
    name: str | None = None
    model: str | None = None
    status: str
    report_url: str | None = None
    created_at: int | None = None
    counts: Counts
    pass_rate: float | None
    errored_rate: float | None
    criteria: list[CriterionSummary]
    usage: Usage
    error_code: str | None = None
    error_message: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)

    @property
    def has_results(self) -> bool:
        return self.counts.executed > 0

    def criterion(self, name_or_id: str) -> CriterionSummary:
        """The criterion the user means by ``name_or_id``; an unknown name lists the ones the run has."""
        exact = [c for c in self.criteria if c.id == name_or_id]
        matches = exact or [c for c in self.criteria if c.name == name_or_id]
        if len(matches) == 1:
            return matches[0]
        known = ", ".join(sorted({c.name for c in self.criteria})) or "none"
        if not matches:
            raise EvalsConfigError(
                "min_criterion_pass_rates",
                f"criterion {name_or_id!r} is not in run {self.run_id}; its criteria are: {known}",
            )
        ids = ", ".join(c.id for c in matches)
        raise EvalsConfigError(
            "min_criterion_pass_rates",
            f"criterion name {name_or_id!r} is ambiguous in run {self.run_id}: {ids}",
        )

    def progress_line(self) -> str:
        """One line a person can follow while waiting, like a progress bar's label."""
        c = self.counts
        done = f"{c.executed}/{c.total}" if c.total else f"{c.executed}"
        line = f"eval run {self.run_id}: {self.status}, {done} items graded ({c.passed} passed, {c.failed} failed, {c.errored} errored"
        if c.skipped:
            line += f", {c.skipped} skipped"
        line += ")"
        if self.pass_rate is not None:
            line += f", pass rate {self.pass_rate:.1%}"
        return line

    def to_xcom(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def summarize(run: EvalRun) -> RunSummary:
    """Apply the pass-rate policy to a run."""
    rc = run.result_counts
    counts = Counts(
        total=rc.total if rc else 0,
        passed=rc.passed if rc else 0,
        failed=rc.failed if rc else 0,
        errored=rc.errored if rc else 0,
        skipped=(rc.skipped or 0) if rc else 0,
    )
    criteria = [
        CriterionSummary(
            name=criterion_name(r.testing_criteria),
            id=r.testing_criteria,
            passed=r.passed,
            failed=r.failed,
            pass_rate=ratio(r.passed, r.passed + r.failed),
        )
        for r in run.per_testing_criteria_results or []
    ]
    per_model: dict[str, dict[str, int]] = {}
    totals = dict.fromkeys(
        ("invocation_count", "prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens"), 0
    )
    for usage in run.per_model_usage or []:
        row = {key: int(getattr(usage, key) or 0) for key in totals}
        per_model[usage.model_name or "unknown"] = row
        for key, value in row.items():
            totals[key] += value
    return RunSummary(
        eval_id=run.eval_id,
        run_id=run.id,
        name=run.name,
        model=run.model,
        status=run.status,
        report_url=run.report_url,
        created_at=run.created_at,
        counts=counts,
        pass_rate=ratio(counts.passed, counts.executed),
        errored_rate=ratio(counts.errored, counts.executed),
        criteria=criteria,
        usage=Usage(**totals, per_model=per_model),
        error_code=run.error.code if run.error else None,
        error_message=run.error.message if run.error else None,
        metadata=dict(run.metadata or {}),
    )

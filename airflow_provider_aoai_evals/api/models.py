"""Pydantic models of the Evals API objects, parsed leniently.

The service does not always follow its own spec: it sends ``null`` for fields the spec calls required,
Azure adds ``result_counts.skipped``, run status is a free string, and new fields appear without notice.
A parse failure would fail a task on a run that is fine, so every model keeps unknown fields, every field
that the service has been seen to omit or null is optional, and status is a plain string.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, model_validator

log = logging.getLogger(__name__)


class RunStatus:
    """Known run statuses. The API field is a free string; these are the values the contract names."""

    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"

    WAITING = frozenset({QUEUED, IN_PROGRESS})
    TERMINAL = frozenset({COMPLETED, FAILED, CANCELED})


_unknown_statuses_logged: set[str] = set()


def is_terminal(status: str | None) -> bool:
    """Whether a run status is final. An unknown status is *not* terminal (keep waiting) and is logged once."""
    if status in RunStatus.TERMINAL:
        return True
    if status not in RunStatus.WAITING and status not in _unknown_statuses_logged:
        _unknown_statuses_logged.add(str(status))
        log.warning("Eval run status %r is not one this provider knows; treating it as not finished", status)
    return False


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True, protected_namespaces=())


#: A count of items or tokens. Negative counts are refused, not clamped: a run reporting
#: ``passed: 10, failed: -5`` of 5 items had a pass rate of 2.0 and passed every gate.
Count = Annotated[int, Field(ge=0)]


class ResultCounts(_Lenient):
    total: Count = 0
    errored: Count = 0
    failed: Count = 0
    passed: Count = 0
    #: Azure only: items the service did not execute.
    skipped: Count | None = None

    @model_validator(mode="after")
    def _executed_within_total(self) -> ResultCounts:
        """More executed items than the run holds is a broken answer, not a rate to report. A total of 0
        is left alone, since that is also what an answer without ``total`` parses to."""
        executed = self.passed + self.failed + self.errored
        if self.total and executed > self.total:
            raise ValueError(f"passed + failed + errored ({executed}) is more than total ({self.total})")
        return self


class PerModelUsage(_Lenient):
    model_name: str | None = None
    invocation_count: Count = 0
    prompt_tokens: Count = 0
    completion_tokens: Count = 0
    total_tokens: Count = 0
    cached_tokens: Count = 0


class PerTestingCriteriaResult(_Lenient):
    #: ``<name>-<uuid>`` as the API names it.
    testing_criteria: str
    passed: Count = 0
    failed: Count = 0


class APIErrorInfo(_Lenient):
    code: str | None = None
    message: str | None = None


class Eval(_Lenient):
    object: str = "eval"
    id: str
    name: str | None = None
    data_source_config: dict[str, Any] | None = None
    testing_criteria: list[dict[str, Any]] = Field(default_factory=list)
    created_at: int | None = None
    metadata: dict[str, str] | None = None


class EvalRun(_Lenient):
    object: str = "eval.run"
    id: str
    eval_id: str | None = None
    status: str = "unknown"
    model: str | None = None
    name: str | None = None
    created_at: int | None = None
    report_url: str | None = None
    result_counts: ResultCounts | None = None
    per_model_usage: list[PerModelUsage] | None = None
    per_testing_criteria_results: list[PerTestingCriteriaResult] | None = None
    error: APIErrorInfo | None = None
    #: Inline ``file_content`` data sources come back in every GET; keep them out of reprs and logs.
    data_source: dict[str, Any] | None = Field(default=None, repr=False)
    metadata: dict[str, str] | None = None

    @property
    def is_terminal(self) -> bool:
        return is_terminal(self.status)


class OutputItemResult(_Lenient):
    name: str | None = None
    type: str | None = None
    score: float | None = None
    passed: bool | None = None
    sample: dict[str, Any] | None = None


class OutputItem(_Lenient):
    object: str = "eval.run.output_item"
    id: str
    run_id: str | None = None
    eval_id: str | None = None
    created_at: int | None = None
    status: str | None = None
    datasource_item_id: int | None = None
    datasource_item: dict[str, Any] | None = None
    results: list[OutputItemResult] = Field(default_factory=list)
    sample: dict[str, Any] | None = None


class FileObject(_Lenient):
    object: str = "file"
    id: str
    bytes: int | None = None
    filename: str | None = None
    purpose: str | None = None
    status: str | None = None
    created_at: int | None = None


class DeletedObject(_Lenient):
    """Delete responses differ by flavor (``run_id`` vs Azure's ``eval_run_id``); keep them all."""

    object: str | None = None
    deleted: bool = False
    eval_id: str | None = None
    run_id: str | None = None
    eval_run_id: str | None = None


T = TypeVar("T", bound=BaseModel)


class Page(_Lenient, Generic[T]):
    object: str = "list"
    #: Required: a body without it (``{}`` from a proxy) is not an empty page, and reading it as one would
    #: make a create's lookup miss the run it is looking for and post a second one.
    data: list[T]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False

    def next_cursor(self) -> str | None:
        """The ``after`` value for the next page, or None when this is the last one (as the SDK does)."""
        if not self.has_more or not self.data:
            return None
        last = self.data[-1]
        return str(getattr(last, "id", None) or self.last_id)

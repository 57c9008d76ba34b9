"""The "Eval run" tab of a task instance: what the provider's operators left in XCom, completed from the API.

The XComs come first (they need only read access to the DAG): the run operator's ``run_id``/``eval_id``
and summary, the gate's ``verdict``, the compare operator's return value. The figures of a comparison are
the compare operator's own when it ran; the flipped items (and, without a compare XCom, the counts and
p-value) come from pairing the two runs through the API, which needs read access to the connection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from airflow_provider_aoai_evals.api.summary import RunSummary
from airflow_provider_aoai_evals.ui import airflow_data, evals_data
from airflow_provider_aoai_evals.ui.airflow_data import TaskInstanceRef
from airflow_provider_aoai_evals.ui.page_errors import PAGE_ERRORS, failure, message


@dataclass
class TaskView:
    ti: TaskInstanceRef
    conn_id: str
    eval_id: str | None = None
    run_id: str | None = None
    baseline_run_id: str | None = None
    summary: RunSummary | None = None
    verdict: dict[str, Any] | None = None
    verdict_outcome: str | None = None
    #: The comparison's overall figures (compare operator's XCom, or the evidence gate's comparison).
    comparison: dict[str, Any] | None = None
    comparison_lines: list[str] = field(default_factory=list)
    flips: evals_data.FlipReport | None = None
    may_read_connection: bool = False
    #: Why something is not shown (no permission, nothing in XCom, the API failed): title -> message dict.
    errors: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return self.run_id is None and self.verdict is None and self.comparison is None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _dict(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def task_view(ti: TaskInstanceRef, conn_id: str, user: Any) -> TaskView:
    view = TaskView(ti, conn_id)
    xcoms = airflow_data.task_instance_xcoms(ti)
    returned = _dict(xcoms.get("return_value"))
    compare = (
        returned if returned and "candidate_run_id" in returned and "baseline_run_id" in returned else None
    )
    summary_xcom = returned if returned and "counts" in returned and "run_id" in returned else None
    verdict = _dict(xcoms.get("verdict"))
    rendered = (
        airflow_data.rendered_fields(ti) if not (xcoms.get("eval_id") or compare or summary_xcom) else {}
    )

    view.eval_id = (
        _str(xcoms.get("eval_id"))
        or _str((compare or {}).get("eval_id"))
        or _str((summary_xcom or {}).get("eval_id"))
        or _str(rendered.get("eval_id"))
    )
    view.run_id = (
        _str(xcoms.get("run_id"))
        or _str((compare or {}).get("candidate_run_id"))
        or _str((verdict or {}).get("run_id"))
        or _str((summary_xcom or {}).get("run_id"))
        or _str(rendered.get("run_id"))
    )
    if verdict is not None:
        view.verdict = verdict
        view.verdict_outcome = airflow_data.verdict_outcome(verdict)
    evidence = _dict((verdict or {}).get("comparison"))
    source = compare or evidence
    if source is not None:
        view.comparison = _dict(source.get("overall"))
        view.comparison_lines = [str(line) for line in source.get("summary") or [] if isinstance(line, str)]
        view.baseline_run_id = _str(source.get("baseline_run_id"))
    view.baseline_run_id = view.baseline_run_id or _str((verdict or {}).get("baseline_run_id"))
    if summary_xcom is not None:
        try:
            view.summary = RunSummary.model_validate(summary_xcom)
        except ValidationError:
            view.notes.append("The task's return value is not a run summary of this provider's version.")

    if view.empty:
        return view
    view.may_read_connection = airflow_data.may_read_connection(user, conn_id)
    if not view.may_read_connection:
        view.errors.append(
            message(
                "No access to the connection",
                f"You may not read connection {conn_id!r}, so the run's summary and flipped items are not "
                "read from the API. Figures from XCom are shown.",
            )
        )
        return view
    if not view.eval_id:
        view.notes.append("The task left no eval id in XCom or its rendered fields; the API is not asked.")
        return view
    try:
        if view.summary is None and view.run_id:
            view.summary = evals_data.run_summary(conn_id, view.eval_id, view.run_id)
        if view.run_id and view.baseline_run_id:
            view.flips = evals_data.flips(conn_id, view.eval_id, view.baseline_run_id, view.run_id)
    except PAGE_ERRORS as exc:
        view.errors.append(failure(exc)[1])
    return view

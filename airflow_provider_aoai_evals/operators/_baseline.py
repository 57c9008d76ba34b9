"""Which run a run is judged against: a given run id, or ``"previous"``, the latest completed run before it.

The gates and the comparison operator both take ``baseline_run_id`` in the same form, so the lookup and
its errors live here once.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from airflow_provider_aoai_evals.api.client import EvalsClient
from airflow_provider_aoai_evals.api.errors import EvalsConfigError, EvalsNotFoundError
from airflow_provider_aoai_evals.api.models import EvalRun, RunStatus

#: ``baseline_run_id`` value meaning "the latest completed run of the same eval before this one".
PREVIOUS = "previous"
#: How many earlier runs are scanned for a baseline.
BASELINE_SCAN_LIMIT = 500


class _Logs(Protocol):
    """What is used of a logger: a task's logger (Airflow's or the standard library's) will do."""

    def info(self, event: Any, /, *args: Any, **kwargs: Any) -> Any: ...


def resolve_baseline(
    client: EvalsClient,
    eval_id: str,
    run: EvalRun,
    baseline_run_id: str,
    *,
    same_model: bool = False,
    metadata_key: str | None = None,
    allow_missing: bool = False,
    log: _Logs | None = None,
) -> EvalRun | None:
    """The baseline run of ``run`` (of eval ``eval_id``), or None when there is none and ``allow_missing`` is set.

    Raises EvalsConfigError naming ``baseline_run_id`` when the run is missing, is ``run`` itself, or
    belongs to another eval: comparing with any of those would give a verdict about the wrong thing.
    """
    if baseline_run_id != PREVIOUS:
        if baseline_run_id == run.id:
            raise EvalsConfigError("baseline_run_id", f"is run {run.id} itself; name an earlier run")
        try:
            found: EvalRun | None = client.get_run(eval_id, baseline_run_id)
        except EvalsNotFoundError:
            if allow_missing:
                return None
            raise EvalsConfigError(
                "baseline_run_id", f"baseline run {baseline_run_id} of eval {eval_id} does not exist"
            ) from None
        assert found is not None
        if found.eval_id and found.eval_id != eval_id:
            raise EvalsConfigError(
                "baseline_run_id",
                f"run {found.id} belongs to eval {found.eval_id}, not {eval_id}: runs of different evals "
                "grade different things and cannot be compared",
            )
        return found
    found = previous_completed(
        client.list_runs(eval_id, status=RunStatus.COMPLETED, order="desc"),
        run,
        same_model=same_model,
        metadata_key=metadata_key,
    )
    if found is None:
        if allow_missing:
            return None
        scope = []
        if same_model:
            scope.append(f"model {run.model!r}")
        if metadata_key:
            value = (run.metadata or {}).get(metadata_key)
            scope.append(f"metadata {metadata_key}={value!r}")
        where = f" with {' and '.join(scope)}" if scope else ""
        raise EvalsConfigError(
            "baseline_run_id",
            f"no completed run of eval {eval_id} before run {run.id}{where} to compare with "
            "(set allow_missing_baseline=True to skip the regression check then)",
        )
    if log is not None:
        log.info("Baseline: run %s (%s, created %s)", found.id, found.model, found.created_at)
    return found


def previous_completed(
    runs: Iterable[EvalRun], run: EvalRun, *, same_model: bool, metadata_key: str | None
) -> EvalRun | None:
    """The newest completed run created before ``run`` that matches the filters (bounded scan)."""
    wanted = (run.metadata or {}).get(metadata_key) if metadata_key else None
    for index, candidate in enumerate(runs):
        if index >= BASELINE_SCAN_LIMIT:
            return None
        if candidate.id == run.id or candidate.status != RunStatus.COMPLETED:
            continue
        if (
            run.created_at is not None
            and candidate.created_at is not None
            and candidate.created_at > run.created_at
        ):
            continue  # a later run is not a baseline for this one
        if same_model and candidate.model != run.model:
            continue
        if metadata_key and (candidate.metadata or {}).get(metadata_key) != wanted:
            continue
        return candidate
    return None

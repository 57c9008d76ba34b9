"""The lineage of a task that read one existing eval run: the compare, gate and export operators.

Each reads the run's results (and the compare and gate operators a baseline's too), describes the run in
the ``aoaiEvalsRun`` facet and names it as the external run; only what they wrote and learned differs.
Building that common part once keeps their lineage alike, so a consumer joins their events the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from airflow_provider_aoai_evals.hooks.evals import EvalsHook
from airflow_provider_aoai_evals.operators import _lineage as lineage


def run_lineage(
    hook: EvalsHook,
    eval_id: str,
    run_id: str,
    observed: lineage.ObservedRun | None,
    *,
    baseline_run_id: str | None = None,
    outputs: Sequence[lineage.DatasetRef] = (),
    facet: Mapping[str, Any] | None = None,
) -> lineage.LineageReport | None:
    """Inputs: the run's results, then the baseline's; ``outputs`` as given; the run's facet fields, then
    ``facet``'s. None when the hook's connection cannot be read (see ``_lineage.namespace_of``)."""
    namespace = lineage.namespace_of(hook)
    if namespace is None:
        return None
    inputs = [lineage.run_dataset(namespace, eval_id, run_id)]
    if baseline_run_id:
        inputs.append(lineage.run_dataset(namespace, eval_id, baseline_run_id))
    fields = lineage.run_facet_fields(observed, eval_id, run_id)
    fields.update(facet or {})
    return lineage.LineageReport(
        api_namespace=namespace,
        inputs=inputs,
        outputs=list(outputs),
        facet=fields,
        external_run_id=run_id,
    )

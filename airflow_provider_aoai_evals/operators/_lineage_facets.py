"""The ``aoaiEvalsRun`` OpenLineage run facet.

Imported only by ``_lineage.to_operator_lineage``, after the OpenLineage provider was found: this module
needs the OpenLineage client at import time, the rest of the package never does.
"""

from __future__ import annotations

from typing import Any, ClassVar

from airflow.providers.common.compat.openlineage.facet import RunFacet
from attrs import define, field

#: The facet's JSON schema is ``docs/schemas/AoaiEvalsRunFacet.json`` in the source distribution. The project
#: has no public address yet, so this names the file without inventing a host for it; swap in the
#: published URL once there is one.
SCHEMA_URL = "urn:airflow-provider-aoai-evals:docs/schemas/AoaiEvalsRunFacet.json#/$defs/AoaiEvalsRunFacet"


@define(kw_only=True)
class EvalRunFacet(RunFacet):
    """An eval run as one task saw it: ids, status, report URL, counts, pass rates and, by task kind,
    the data source it read, the export it wrote or the gate's verdict.

    Holds no secret and no ``data_source`` rows by construction (see ``_lineage.run_facet_fields``); the
    OpenLineage provider's redactor still masks what Airflow's secrets masker knows everywhere except the
    ids, status and numbers listed in ``_additional_skip_redact``, which are never secrets and must reach
    consumers unaltered to join on.
    """

    evalId: str  # OpenLineage facets use camelCase names
    runId: str | None = None
    status: str | None = None
    reportUrl: str | None = None
    model: str | None = None
    counts: dict[str, int] | None = None
    passRate: float | None = None
    erroredRate: float | None = None
    criteria: list[dict[str, Any]] = field(factory=list)
    dataSource: dict[str, Any] | None = None
    export: dict[str, Any] | None = None
    verdict: dict[str, Any] | None = None

    _additional_skip_redact: ClassVar[list[str]] = [
        "evalId",
        "runId",
        "status",
        "counts",
        "passRate",
        "erroredRate",
    ]

    @staticmethod
    def _get_schema() -> str:
        return SCHEMA_URL

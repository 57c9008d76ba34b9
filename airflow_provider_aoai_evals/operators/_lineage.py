"""OpenLineage for the eval-run operators: which datasets a task read and wrote, and what it learned.

The OpenLineage provider is optional (the ``openlineage`` extra), so nothing here imports it at module
import time: ``to_operator_lineage`` imports it when the listener asks, and answers None without it.
Operators describe their lineage with the plain ``LineageReport`` below; turning that into OpenLineage
objects happens in one place, so the four operators cannot drift apart in naming or redaction.

Naming (README, "Lineage"):

* The Evals API is one data source per endpoint: namespace ``openai://<host>[:port]`` or
  ``azure-openai://<host>[:port]``, from the connection's API root. Only the host and a non-default port
  are used: never the key, user info, path or query.
* In it, a run's results are ``evals/<eval_id>/runs/<run_id>`` and an uploaded file is ``files/<file_id>``
  (the REST paths, so a name can be read back as a URL).
* Object storage follows OpenLineage's naming spec: ``file`` + absolute path, ``s3://<bucket>`` + key,
  ``gs://<bucket>`` + key, ``abfss://<container>@<account>.dfs.core.windows.net`` + path for Azure (any of
  adlfs' ``abfs``/``abfss``/``az`` paths), otherwise ``<protocol>://<bucket>`` + key.

Never reported: secrets (the redactor of the OpenLineage provider also masks what Airflow's secrets masker
knows) and ``data_source`` contents: inline ``file_content`` rows are neither a dataset nor a facet field.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow.providers.common.compat.sdk import AirflowNotFoundException, ObjectStoragePath

from airflow_provider_aoai_evals.api.errors import EvalsError

if TYPE_CHECKING:
    from airflow_provider_aoai_evals.api.settings import ClientSettings
    from airflow_provider_aoai_evals.hooks.evals import EvalsHook

log = logging.getLogger(__name__)

#: Key of this provider's run facet in an event's ``run.facets``.
RUN_FACET_NAME = "aoaiEvalsRun"
#: Key of the standard facet that names the run in the Evals API (OpenLineage's ``externalQuery``).
EXTERNAL_RUN_FACET_NAME = "externalQuery"

_AZURE_PROTOCOLS = frozenset({"abfs", "abfss", "az", "adl"})
_DEFAULT_PORTS = {"https": 443, "http": 80}


@dataclass(frozen=True)
class DatasetRef:
    """A dataset as OpenLineage names it, plus what an output's statistics facet may say about it."""

    namespace: str
    name: str
    row_count: int | None = None
    size_bytes: int | None = None


@dataclass(frozen=True)
class ObservedRun:
    """What a task last learned about an eval run.

    Kept on the operator by whichever method learned it (``execute`` or, after a deferral,
    ``execute_complete`` on a new operator instance), so the lineage methods never rely on state that only
    ``execute`` sets (apache/airflow#34270).
    """

    eval_id: str
    run_id: str
    #: ``RunSummary.to_xcom()``: already free of ``data_source``.
    summary: Mapping[str, Any] | None = None
    #: The status when there is no summary (a trigger's timeout or error event).
    status: str | None = None

    @classmethod
    def from_event(cls, eval_id: str, run_id: str, event: Mapping[str, Any] | None) -> ObservedRun:
        event = event or {}
        summary = event.get("summary")
        status = event.get("run_status")
        return cls(
            eval_id=str(event.get("eval_id") or eval_id),
            run_id=str(event.get("run_id") or run_id),
            summary=summary if isinstance(summary, Mapping) else None,
            status=status if isinstance(status, str) else None,
        )


@dataclass
class LineageReport:
    """One task's lineage in plain data: what ``to_operator_lineage`` turns into an ``OperatorLineage``."""

    api_namespace: str
    inputs: list[DatasetRef] = field(default_factory=list)
    outputs: list[DatasetRef] = field(default_factory=list)
    #: The fields of the ``aoaiEvalsRun`` facet (see ``_lineage_facets.EvalRunFacet``); None: no facet.
    facet: dict[str, Any] | None = None
    #: The Evals run this task worked on, for the standard ``externalQuery`` facet.
    external_run_id: str | None = None


# -- naming ------------------------------------------------------------------------------------------------


def api_namespace(settings: ClientSettings) -> str:
    """``openai://api.openai.com``, ``azure-openai://myres.openai.azure.com``, ``openai://127.0.0.1:8080``."""
    parts = urlsplit(settings.api_root)
    scheme = "azure-openai" if settings.flavor == "azure" else "openai"
    host = (parts.hostname or "").lower()  # hostname, unlike netloc, never holds user:password@
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    if port is not None and port != _DEFAULT_PORTS.get(parts.scheme):
        host = f"{host}:{port}"
    return f"{scheme}://{host}"


def namespace_of(hook: EvalsHook) -> str | None:
    """The hook's API namespace; None when its connection cannot be read (the task then failed for that
    reason already, and lineage has nothing to name)."""
    try:
        return api_namespace(hook.get_settings())
    except (EvalsError, AirflowNotFoundException) as exc:
        log.warning("No lineage: connection %s is not usable: %s", hook.conn_id, exc)
        return None


def run_dataset(namespace: str, eval_id: str, run_id: str, *, row_count: int | None = None) -> DatasetRef:
    return DatasetRef(namespace, f"evals/{eval_id}/runs/{run_id}", row_count=row_count)


def file_dataset(namespace: str, file_id: str) -> DatasetRef:
    return DatasetRef(namespace, f"files/{file_id}")


def _without_userinfo(netloc: str) -> str:
    return netloc.rpartition("@")[2]


def storage_dataset(
    path: ObjectStoragePath, *, row_count: int | None = None, size_bytes: int | None = None
) -> DatasetRef:
    """An object-storage path named as OpenLineage's naming spec asks, whatever its filesystem."""
    protocol = (path.protocol or "file").lower()
    key = path.key
    if protocol in ("file", "local"):
        return DatasetRef("file", "/" + key, row_count, size_bytes)
    bucket = _without_userinfo(path.bucket)
    if protocol in ("s3", "s3a", "s3n"):
        namespace = f"s3://{bucket}"
    elif protocol in ("gs", "gcs"):
        namespace = f"gs://{bucket}"
    elif protocol in _AZURE_PROTOCOLS:
        account = _azure_account(path)
        namespace = f"abfss://{bucket}@{account}.dfs.core.windows.net" if account else f"abfss://{bucket}"
    else:
        namespace = f"{protocol}://{bucket}" if bucket else protocol
    return DatasetRef(namespace, key, row_count, size_bytes)


def _azure_account(path: ObjectStoragePath) -> str | None:
    """The storage account: from the URL (``container@account.dfs.core.windows.net``) or, for
    ``abfs://container/...`` with a connection, from the filesystem that connection built."""
    options = getattr(path, "storage_options", None) or {}
    account = options.get("account_name")
    if not account:
        try:
            account = getattr(path.fs, "account_name", None)
        except Exception:  # lineage must never fail a task; without an account the namespace is coarser
            log.debug("No storage account for %s", path, exc_info=True)
            account = None
    return str(account) if account else None


# -- facet fields --------------------------------------------------------------------------------------------


def run_facet_fields(run: ObservedRun | None, eval_id: str, run_id: str | None) -> dict[str, Any]:
    """The run part of the facet, from the run summary: ids, status, report URL, counts and pass rates.

    Picked field by field rather than copied, so that neither the run's metadata nor anything added to the
    summary later reaches lineage by accident.
    """
    summary: Mapping[str, Any] = (run.summary if run else None) or {}
    fields: dict[str, Any] = {
        "evalId": run.eval_id if run else eval_id,
        "runId": run.run_id if run else run_id,
        "status": summary.get("status") or (run.status if run else None),
        "reportUrl": summary.get("report_url"),
        "model": summary.get("model"),
    }
    counts = summary.get("counts")
    if isinstance(counts, Mapping):
        fields["counts"] = {
            key: int(counts.get(key) or 0) for key in ("total", "passed", "failed", "errored", "skipped")
        }
    if summary:
        fields["passRate"] = summary.get("pass_rate")
        fields["erroredRate"] = summary.get("errored_rate")
        fields["criteria"] = [
            {
                "name": c.get("name"),
                "passRate": c.get("pass_rate"),
                "passed": c.get("passed"),
                "failed": c.get("failed"),
            }
            for c in summary.get("criteria") or []
            if isinstance(c, Mapping)
        ]
    return fields


def data_source_fields(data_source: Any, uploaded_file_id: str | None) -> dict[str, Any]:
    """What kind of data source a run read, and the file it names: never its rows."""
    if isinstance(data_source, ObjectStoragePath):
        return {"type": "jsonl", "sourceType": "file_id", "fileId": uploaded_file_id, "uploaded": True}
    if not isinstance(data_source, Mapping):
        return {}
    source = data_source.get("source")
    source_type = source.get("type") if isinstance(source, Mapping) else None
    fields: dict[str, Any] = {"type": data_source.get("type"), "sourceType": source_type}
    if source_type == "file_id" and isinstance(source, Mapping):
        fields["fileId"] = source.get("id")
    elif source_type == "file_content" and uploaded_file_id:  # rows uploaded for being large
        fields.update(fileId=uploaded_file_id, uploaded=True)
    return fields


def verdict_fields(verdict: Mapping[str, Any]) -> dict[str, Any]:
    """A gate's verdict (``Verdict.to_xcom()``): whether it passed, against which baseline, each check."""
    return {
        "passed": bool(verdict.get("passed")),
        "baselineRunId": verdict.get("baseline_run_id"),
        "checks": [
            {
                "name": c.get("name"),
                "value": c.get("value"),
                "threshold": c.get("threshold"),
                "passed": c.get("passed"),
            }
            for c in verdict.get("checks") or []
            if isinstance(c, Mapping)
        ],
    }


def uploaded_file_id(data_source: Mapping[str, Any]) -> str | None:
    """The file id of a ``{"type": ..., "source": {"type": "file_id", "id": ...}}`` data source."""
    source = data_source.get("source")
    if isinstance(source, Mapping) and source.get("type") == "file_id":
        file_id = source.get("id")
        return str(file_id) if file_id else None
    return None


# -- OpenLineage objects (imported only here, only when asked) -----------------------------------------------


def to_operator_lineage(build: Callable[[], LineageReport | None]) -> Any:
    """The ``OperatorLineage`` of the report ``build`` returns; None when the OpenLineage provider is not
    installed (``build`` is then not called: no connection is read for lineage nobody collects)."""
    try:
        from airflow.providers.openlineage.extractors import OperatorLineage
    except ImportError:
        return None
    report = build()
    if report is None:
        return None
    from airflow.providers.common.compat.openlineage.facet import (
        ExternalQueryRunFacet,
        InputDataset,
        OutputDataset,
        OutputStatisticsOutputDatasetFacet,
    )

    from airflow_provider_aoai_evals.operators._lineage_facets import EvalRunFacet

    outputs = []
    for ref in dedupe(report.outputs):
        facets: dict[str, Any] = {}
        if ref.row_count is not None or ref.size_bytes is not None:
            facets["outputStatistics"] = OutputStatisticsOutputDatasetFacet(
                rowCount=ref.row_count, size=ref.size_bytes
            )
        outputs.append(OutputDataset(namespace=ref.namespace, name=ref.name, outputFacets=facets))
    run_facets: dict[str, Any] = {}
    if report.facet is not None:
        run_facets[RUN_FACET_NAME] = EvalRunFacet(**report.facet)
    if report.external_run_id:
        run_facets[EXTERNAL_RUN_FACET_NAME] = ExternalQueryRunFacet(
            externalQueryId=report.external_run_id, source=report.api_namespace
        )
    return OperatorLineage(
        inputs=[InputDataset(namespace=ref.namespace, name=ref.name) for ref in dedupe(report.inputs)],
        outputs=outputs,
        run_facets=run_facets,
    )


def dedupe(refs: Sequence[DatasetRef]) -> list[DatasetRef]:
    """The same dataset once (a baseline that is the run itself, a file named twice)."""
    seen: set[tuple[str, str]] = set()
    out = []
    for ref in refs:
        if (ref.namespace, ref.name) not in seen:
            seen.add((ref.namespace, ref.name))
            out.append(ref)
    return out

"""Operators that start, fetch and cancel eval runs, and create evals.

``CreateEvalRunOperator`` never starts a duplicate run: a later try of the same task instance finds the run
an earlier try started and reattaches to it while it is still going (``operators._reattach``), and the
client resolves an ambiguous create by looking the run's idempotency key up. How the run operators wait is
in ``operators._waits_for_runs``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from airflow.providers.common.compat.sdk import BaseOperator, Context, ObjectStoragePath
from pydantic import BaseModel

from airflow_provider_aoai_evals.api.client import EvalsClient
from airflow_provider_aoai_evals.api.errors import EvalsConfigError, EvalsError
from airflow_provider_aoai_evals.api.models import Eval, RunStatus
from airflow_provider_aoai_evals.api.operations import validate_data_source, with_idempotency_key
from airflow_provider_aoai_evals.api.summary import summarize
from airflow_provider_aoai_evals.api.validation import validate_id, validate_metadata
from airflow_provider_aoai_evals.hooks.evals import EvalsHook
from airflow_provider_aoai_evals.links import EvalRunReportLink, publish_report_url
from airflow_provider_aoai_evals.operators import _dataset_upload as uploads
from airflow_provider_aoai_evals.operators import _lineage as lineage
from airflow_provider_aoai_evals.operators._lineage import ObservedRun
from airflow_provider_aoai_evals.operators._reattach import (
    STATE_RUN_ID_KEY,
    earlier_run,
    idempotency_base,
    idempotency_key,
    remember_run,
)
from airflow_provider_aoai_evals.operators._waits_for_runs import DEFAULT_WAIT_TIMEOUT, WaitsForRuns
from airflow_provider_aoai_evals.templating import EvalPlaceholderSafeTemplates, TemplatedIds

# Names that moved to the modules above stay importable from here.
__all__ = [
    "DEFAULT_WAIT_TIMEOUT",
    "IF_EXISTS_CHOICES",
    "STATE_RUN_ID_KEY",
    "CancelEvalRunOperator",
    "CreateEvalOperator",
    "CreateEvalRunOperator",
    "GetEvalRunOperator",
    "criteria_match",
    "idempotency_base",
]

IF_EXISTS_CHOICES = ("create", "reuse")


def _plain_data_source(data_source: Any) -> Any:
    if isinstance(data_source, BaseModel):
        return data_source.model_dump(mode="json", exclude_none=True)
    return data_source


class CreateEvalRunOperator(TemplatedIds, EvalPlaceholderSafeTemplates, WaitsForRuns):
    """Start an eval run, optionally wait for it, and return its summary; never start a duplicate.

    :param eval_id: the eval (templated).
    :param data_source: the run's data source (templated): a dict or a pydantic model of any source the API
        accepts (``jsonl`` with ``file_content`` or ``file_id``, ``completions``, ``responses``), checked before
        any request; or an ``ObjectStoragePath`` to a JSONL dataset, uploaded through the Files API (purpose
        ``evals``) and referenced by file id, so large datasets are not sent inline. The service's own
        ``{{item.x}}``/``{{sample.x}}`` placeholders are left as they are.
    :param inline_upload_threshold: inline ``file_content`` rows over this many bytes as JSONL are uploaded
        through the Files API and named by file id, since every poll downloads the data source (1 MiB; 0: never).
    :param name: the run's name (templated).
    :param metadata: up to 15 of your own keys (templated); the 16th holds the idempotency key.
    :param wait_for_completion: wait for the run and return its summary (default), or return at once.
    :param deferrable: wait in the triggerer (default: Airflow's ``[operators] default_deferrable``).
    :param poll_interval: seconds between polls (default 30).
    :param timeout: how long to wait for the run (seconds or timedelta; default 7 days).
    :param success_statuses: terminal statuses that succeed (default only ``completed``).
    :param reuse_finished_run: when a later try finds that an earlier try's run already completed, return it
        instead of starting a new run (default False: a cleared task asks for a new run). Failed or canceled
        runs are never reused; queued or running ones are always reattached to.
    :param cancel_on_kill: cancel the run when the task is killed (deferred waits: Airflow 3.3+ only).
    :param cancel_on_timeout: cancel the run when the wait times out, deferred or polling (default True: this
        task started the run); the task then fails, without retry, saying whether it was canceled.
    :param max_total_tokens: fail once the run has used more tokens than this (``per_model_usage`` summed, on
        every poll), cancelling it if it is still going; no retry. None (default): no budget.

    XCom: ``run_id``, ``eval_id`` and ``report_url`` are pushed before waiting; the return value is the run
    summary (see docs/pass-rates.md).
    """

    template_fields: Sequence[str] = ("eval_id", "data_source", "name", "metadata")
    templated_ids = ("eval_id",)
    template_fields_renderers: ClassVar[dict[str, str]] = {"data_source": "json", "metadata": "json"}
    operator_extra_links = (EvalRunReportLink(),)
    ui_color = "#c9e4ff"

    def __init__(
        self,
        *,
        eval_id: str,
        data_source: Mapping[str, Any] | BaseModel | ObjectStoragePath,
        name: str | None = None,
        metadata: Mapping[str, str] | None = None,
        wait_for_completion: bool = True,
        reuse_finished_run: bool = False,
        inline_upload_threshold: int = uploads.DEFAULT_INLINE_UPLOAD_THRESHOLD,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.inline_upload_threshold = uploads.check_threshold(inline_upload_threshold)
        self.eval_id = eval_id
        self.data_source = data_source
        self.name = name
        self.metadata = metadata
        self.wait_for_completion = wait_for_completion
        self.reuse_finished_run = reuse_finished_run
        #: The Files API file an ObjectStoragePath was uploaded as (lineage; kept across a deferral).
        self._uploaded_file_id: str | None = None

    def _checked_input(self) -> tuple[Any, dict[str, str]]:
        """Everything the request needs, validated before any request, with the parameter named."""
        self.check_rendered_ids()
        if not self.eval_id:
            raise EvalsConfigError("eval_id", "is required")
        validate_id("eval_id", self.eval_id)
        metadata = validate_metadata("metadata", dict(self.metadata) if self.metadata else None)
        with_idempotency_key(metadata, "room-check")  # fails naming `metadata` when 16 keys leave no room
        data_source = _plain_data_source(self.data_source)
        if isinstance(data_source, ObjectStoragePath):
            if not data_source.exists():
                raise EvalsConfigError("data_source", f"{data_source} does not exist")
        else:
            validate_data_source(data_source)
        return data_source, metadata

    def execute(self, context: Context) -> Any:
        data_source, metadata = self._checked_input()
        client = self.hook.get_conn()
        base = idempotency_base(context)
        run = earlier_run(
            client,
            context,
            eval_id=self.eval_id,
            base=base,
            reuse_finished_run=self.reuse_finished_run,
            log=self.log,
        )
        if run is None:
            if isinstance(data_source, ObjectStoragePath):
                data_source = uploads.upload_path(client, data_source, self.log)
            else:
                data_source, self._uploaded_file_id = uploads.upload_large_inline_rows(
                    client,
                    data_source,
                    threshold=self.inline_upload_threshold,
                    filename=f"{self.task_id}.jsonl",
                    log=self.log,
                )
            key = idempotency_key(context, base)
            run = client.create_run(
                self.eval_id, data_source=data_source, name=self.name, metadata=metadata, idempotency_key=key
            )
            self.log.info("Started eval run %s of eval %s: %s", run.id, self.eval_id, run.report_url)
            remember_run(context, run.id)
        self._active = (self.eval_id, run.id)
        self._observed = ObservedRun(self.eval_id, run.id, summarize(run).to_xcom())
        if isinstance(self.data_source, ObjectStoragePath) and run.data_source:
            self._uploaded_file_id = lineage.uploaded_file_id(run.data_source)
        ti = context["ti"]
        ti.xcom_push(key="run_id", value=run.id)
        ti.xcom_push(key="eval_id", value=self.eval_id)
        publish_report_url(context, run.report_url)
        if not self.wait_for_completion:
            return summarize(run).to_xcom()
        return self._wait(context, run)

    # -- lineage -------------------------------------------------------------------------------------------

    def _resume_kwargs(self) -> dict[str, Any]:
        return {"uploaded_file_id": self._uploaded_file_id} if self._uploaded_file_id else {}

    def execute_complete(
        self,
        context: Context,
        event: dict[str, Any] | None = None,
        eval_id: str = "",
        run_id: str = "",
        uploaded_file_id: str | None = None,
    ) -> dict[str, Any]:
        self._uploaded_file_id = uploaded_file_id
        return super().execute_complete(context, event, eval_id=eval_id, run_id=run_id)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Input: the dataset the run read (the object-storage path uploaded, or the Files API file named);
        output: the run's results. Facets: the run as last seen and the kind of data source, never its rows.

        Also called for a failed task; reads only template fields and what ``execute`` or, after a deferral,
        ``execute_complete`` recorded. None without the OpenLineage provider.
        """
        return lineage.to_operator_lineage(self._lineage_report)

    def _lineage_report(self) -> lineage.LineageReport | None:
        namespace = lineage.namespace_of(self.hook)
        if namespace is None:
            return None
        data_source = _plain_data_source(self.data_source)
        inputs: list[lineage.DatasetRef] = []
        if isinstance(data_source, ObjectStoragePath):
            inputs.append(lineage.storage_dataset(data_source))
        elif isinstance(data_source, Mapping) and (
            file_id := lineage.uploaded_file_id(data_source) or self._uploaded_file_id
        ):
            inputs.append(lineage.file_dataset(namespace, file_id))
        observed = self._observed
        outputs = []
        if observed is not None:
            total = ((observed.summary or {}).get("counts") or {}).get("total")
            outputs.append(lineage.run_dataset(namespace, observed.eval_id, observed.run_id, row_count=total))
        facet = lineage.run_facet_fields(observed, str(self.eval_id), None)
        if isinstance(data_source, ObjectStoragePath) and observed and not self._uploaded_file_id:
            self._uploaded_file_id = self._file_id_of(observed)
        facet["dataSource"] = lineage.data_source_fields(data_source, self._uploaded_file_id)
        return lineage.LineageReport(
            api_namespace=namespace,
            inputs=inputs,
            outputs=outputs,
            facet=facet,
            external_run_id=observed.run_id if observed else None,
        )

    def _file_id_of(self, observed: ObservedRun) -> str | None:
        """The uploaded file's id, from the run itself, when the resumed instance was not told it.

        A deferral passes it to ``execute_complete``, but ``dag.test()`` (and so ``airflow dags test``)
        resumes with the trigger's event alone and drops the ``defer(kwargs=...)``. One GET, made only
        when lineage is collected.
        """
        try:
            run = self.hook.get_conn().get_run(observed.eval_id, observed.run_id)
        except EvalsError as exc:
            self.log.warning("No file id for lineage: eval run %s: %s", observed.run_id, exc)
            return None
        return lineage.uploaded_file_id(run.data_source) if run.data_source else None


class GetEvalRunOperator(TemplatedIds, BaseOperator):
    """Fetch a run: its summary (default) or, with ``full_run=True``, the whole run object.

    Either way the run's ``data_source`` is left out: inline rows would otherwise land in XCom.
    """

    template_fields: Sequence[str] = ("eval_id", "run_id")
    templated_ids = ("eval_id", "run_id")
    operator_extra_links = (EvalRunReportLink(),)

    def __init__(
        self,
        *,
        eval_id: str,
        run_id: str,
        full_run: bool = False,
        conn_id: str = EvalsHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.eval_id = eval_id
        self.run_id = run_id
        self.full_run = full_run
        self.conn_id = conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        self.check_rendered_ids()
        validate_id("eval_id", self.eval_id)
        validate_id("run_id", self.run_id)
        run = EvalsHook(self.conn_id).get_conn().get_run(self.eval_id, self.run_id)
        publish_report_url(context, run.report_url)
        self.log.info("%s", summarize(run).progress_line())
        if self.full_run:
            return run.model_dump(mode="json", exclude={"data_source"})
        return summarize(run).to_xcom()


class CancelEvalRunOperator(TemplatedIds, WaitsForRuns):
    """Cancel a run. A run that already finished is not an error: it is logged and its final state returned.

    :param wait_for_cancellation: wait until the run reports ``canceled`` (or another terminal status).
    """

    template_fields: Sequence[str] = ("eval_id", "run_id")
    templated_ids = ("eval_id", "run_id")
    operator_extra_links = (EvalRunReportLink(),)

    def __init__(
        self, *, eval_id: str, run_id: str, wait_for_cancellation: bool = False, **kwargs: Any
    ) -> None:
        kwargs.setdefault("success_statuses", sorted(RunStatus.TERMINAL))
        kwargs.setdefault("cancel_on_kill", False)
        super().__init__(**kwargs)
        self.eval_id = eval_id
        self.run_id = run_id
        self.wait_for_cancellation = wait_for_cancellation

    def execute(self, context: Context) -> Any:
        self.check_rendered_ids()
        validate_id("eval_id", self.eval_id)
        validate_id("run_id", self.run_id)
        client = self.hook.get_conn()
        run = client.get_run(self.eval_id, self.run_id)
        publish_report_url(context, run.report_url)
        if run.is_terminal:
            self.log.info("Eval run %s already finished (%s); nothing to cancel", run.id, run.status)
            return summarize(run).to_xcom()
        run = client.cancel_run(self.eval_id, self.run_id)
        self.log.info("Asked to cancel eval run %s; it is now %s", run.id, run.status)
        if not self.wait_for_cancellation:
            return summarize(run).to_xcom()
        return self._wait(context, run)


class CreateEvalOperator(EvalPlaceholderSafeTemplates, BaseOperator):
    """Create an eval, or with ``if_exists="reuse"`` return the existing eval of the same name.

    Reuse is refused, with the candidates listed, when several evals have that name or when the existing
    one's testing criteria differ from the ones given. Returns the eval id.
    """

    template_fields: Sequence[str] = ("name", "data_source_config", "testing_criteria", "metadata")
    template_fields_renderers: ClassVar[dict[str, str]] = {
        "data_source_config": "json",
        "testing_criteria": "json",
        "metadata": "json",
    }

    def __init__(
        self,
        *,
        name: str,
        data_source_config: Mapping[str, Any],
        testing_criteria: Sequence[Mapping[str, Any]],
        metadata: Mapping[str, str] | None = None,
        if_exists: str = "create",
        conn_id: str = EvalsHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if if_exists not in IF_EXISTS_CHOICES:
            raise EvalsConfigError("if_exists", f"must be one of {IF_EXISTS_CHOICES}, got {if_exists!r}")
        self.name = name
        self.data_source_config = data_source_config
        self.testing_criteria = testing_criteria
        self.metadata = metadata
        self.if_exists = if_exists
        self.conn_id = conn_id

    def execute(self, context: Context) -> str:
        if not self.name:
            raise EvalsConfigError("name", "is required")
        client = EvalsHook(self.conn_id).get_conn()
        if self.if_exists == "reuse":
            existing = self._existing(client)
            if existing is not None:
                self.log.info("Reusing eval %s named %r", existing.id, self.name)
                return existing.id
        created = client.create_eval(
            name=self.name,
            data_source_config=self.data_source_config,
            testing_criteria=list(self.testing_criteria),
            metadata=self.metadata,
        )
        self.log.info("Created eval %s named %r", created.id, self.name)
        return created.id

    def _existing(self, client: EvalsClient) -> Eval | None:
        same_name = [e for e in client.list_evals(order="desc") if e.name == self.name]
        if not same_name:
            return None
        if len(same_name) > 1:
            ids = ", ".join(e.id for e in same_name)
            raise EvalsConfigError(
                "name", f"{len(same_name)} evals are named {self.name!r} ({ids}); cannot pick one"
            )
        found = same_name[0]
        if not criteria_match(self.testing_criteria, found.testing_criteria):
            raise EvalsConfigError(
                "testing_criteria",
                f"eval {found.id} named {self.name!r} has different testing criteria: "
                f"{[c.get('name') for c in found.testing_criteria]} vs {[c.get('name') for c in self.testing_criteria]}",
            )
        return found


def criteria_match(wanted: Sequence[Mapping[str, Any]], existing: Sequence[Mapping[str, Any]]) -> bool:
    """The existing criteria hold what was asked for (the service adds ids and defaults, so compare what the
    user wrote, in order)."""
    if len(wanted) != len(existing):
        return False
    return all(
        all(have.get(key) == value for key, value in want.items() if key != "id")
        for want, have in zip(wanted, existing, strict=True)
    )

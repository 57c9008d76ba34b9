"""Each API operation as data: the prepared request, its JSON body and how to parse the answer.

Both transports execute these ``Call`` objects, so argument checks, bodies, query parameters and result
models are written once, and the sync and async clients differ only in how bytes travel.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, Generic, TypeVar

from pydantic import BaseModel

from airflow_provider_aoai_evals.api.errors import (
    EvalsAPIError,
    EvalsConfigError,
    EvalsConnectionError,
    EvalsServerError,
)
from airflow_provider_aoai_evals.api.models import DeletedObject, Eval, EvalRun, FileObject, OutputItem, Page
from airflow_provider_aoai_evals.api.multipart import MultipartUpload
from airflow_provider_aoai_evals.api.raw_items import RawItemPage, parse_raw_item_page
from airflow_provider_aoai_evals.api.routes import Operation, PreparedRequest, prepare
from airflow_provider_aoai_evals.api.settings import ClientSettings
from airflow_provider_aoai_evals.api.validation import METADATA_MAX_KEYS, validate_id, validate_metadata

R = TypeVar("R")
M = TypeVar("M", bound=BaseModel)

#: The metadata key under which ``create_run`` records its idempotency key.
IDEMPOTENCY_METADATA_KEY = "airflow_idempotency_key"
#: How far back (seconds before the first attempt) a lookup by idempotency key looks, for clock skew.
LOOKUP_CLOCK_SKEW = 120.0
#: At most this many runs are scanned when looking a run up by its key (newest first).
LOOKUP_MAX_RUNS = 1000

RUN_STATUS_FILTERS = ("queued", "in_progress", "completed", "canceled", "failed")
OUTPUT_ITEM_STATUS_FILTERS = ("pass", "fail")
DATA_SOURCE_TYPES = ("jsonl", "completions", "responses")
MAX_PAGE_SIZE = 100


@dataclass(frozen=True)
class Call(Generic[R]):
    request: PreparedRequest
    body: dict[str, Any] | None
    #: Builds the result from the response body (JSON bytes).
    parse: Callable[[bytes], R]
    #: A streamed multipart body instead of JSON (file uploads).
    upload: MultipartUpload | None = None


# Cached: each Call keeps its parser, and a trigger keeps its Call for the whole wait; one bound method per
# model instead of one per Call.
@functools.cache
def _model(model: type[M]) -> Callable[[bytes], M]:
    return model.model_validate_json


@functools.cache
def _page(model: type[M]) -> Callable[[bytes], Page[M]]:
    return Page[model].model_validate_json  # type: ignore[valid-type]


class Operations:
    """Builds the ``Call`` for each operation against one endpoint's settings."""

    def __init__(self, settings: ClientSettings) -> None:
        self.settings = settings
        self._last_get_run: tuple[tuple[str, str], Call[EvalRun]] | None = None

    def _prepare(
        self, operation: Operation, query: Mapping[str, str | int | None] | None = None, **ids: str
    ) -> PreparedRequest:
        return prepare(
            self.settings.flavor,
            operation,
            api_version=self.settings.api_version,
            query=dict(query or {}),
            **ids,
        )

    # -- evals ---------------------------------------------------------------------------------------------

    def create_eval(
        self,
        *,
        name: str | None,
        data_source_config: Mapping[str, Any],
        testing_criteria: Sequence[Mapping[str, Any]],
        metadata: Mapping[str, str] | None = None,
    ) -> Call[Eval]:
        if not isinstance(data_source_config, Mapping) or "type" not in data_source_config:
            raise EvalsConfigError("data_source_config", "must be a dict with a 'type' (custom, logs, ...)")
        if not isinstance(testing_criteria, list) or not testing_criteria:
            raise EvalsConfigError("testing_criteria", "must be a non-empty list of graders")
        body: dict[str, Any] = {
            "data_source_config": dict(data_source_config),
            "testing_criteria": testing_criteria,
        }
        if name is not None:
            body["name"] = name
        if metadata is not None:
            body["metadata"] = validate_metadata("metadata", dict(metadata))
        return Call(self._prepare(Operation.CREATE_EVAL), body, _model(Eval))

    def list_evals(
        self, *, after: str | None, limit: int, order: str, order_by: str = "created_at"
    ) -> Call[Page[Eval]]:
        if order_by not in ("created_at", "updated_at"):
            raise EvalsConfigError("order_by", f"{order_by!r} must be 'created_at' or 'updated_at'")
        query = {**_page_query(after, limit, order), "order_by": order_by}
        return Call(self._prepare(Operation.LIST_EVALS, query), None, _page(Eval))

    def get_eval(self, eval_id: str) -> Call[Eval]:
        return Call(self._prepare(Operation.GET_EVAL, eval_id=eval_id), None, _model(Eval))

    def update_eval(
        self, eval_id: str, *, name: str | None = None, metadata: Mapping[str, str] | None = None
    ) -> Call[Eval]:
        body: dict[str, Any] = {}
        if name is not None:
            body["name"] = name
        if metadata is not None:
            body["metadata"] = validate_metadata("metadata", dict(metadata))
        return Call(self._prepare(Operation.UPDATE_EVAL, eval_id=eval_id), body, _model(Eval))

    def delete_eval(self, eval_id: str) -> Call[DeletedObject]:
        return Call(self._prepare(Operation.DELETE_EVAL, eval_id=eval_id), None, _model(DeletedObject))

    # -- runs ----------------------------------------------------------------------------------------------

    def create_run(
        self,
        eval_id: str,
        *,
        data_source: Mapping[str, Any],
        name: str | None = None,
        metadata: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> Call[EvalRun]:
        validate_data_source(data_source)
        meta = validate_metadata("metadata", dict(metadata) if metadata is not None else None)
        if idempotency_key is not None:
            meta = with_idempotency_key(meta, idempotency_key)
        body: dict[str, Any] = {"data_source": _plain(data_source)}
        if name is not None:
            body["name"] = name
        if meta:
            body["metadata"] = meta
        return Call(self._prepare(Operation.CREATE_RUN, eval_id=eval_id), body, _model(EvalRun))

    def list_runs(
        self, eval_id: str, *, after: str | None, limit: int, order: str, status: str | None = None
    ) -> Call[Page[EvalRun]]:
        if status is not None and status not in RUN_STATUS_FILTERS:
            raise EvalsConfigError("status", f"{status!r} must be one of {', '.join(RUN_STATUS_FILTERS)}")
        query = {**_page_query(after, limit, order), "status": status}
        return Call(self._prepare(Operation.LIST_RUNS, query, eval_id=eval_id), None, _page(EvalRun))

    def get_run(self, eval_id: str, run_id: str) -> Call[EvalRun]:
        """Kept for the next call with the same ids: a trigger or sensor asks for the same run every poll,
        and a ``Call`` is immutable, so its ids need validating and its route preparing only once."""
        ids = (eval_id, run_id)
        if self._last_get_run is not None and self._last_get_run[0] == ids:
            return self._last_get_run[1]
        call = Call(self._prepare(Operation.GET_RUN, eval_id=eval_id, run_id=run_id), None, _model(EvalRun))
        self._last_get_run = (ids, call)
        return call

    def cancel_run(self, eval_id: str, run_id: str, operation: Operation) -> Call[EvalRun]:
        return Call(self._prepare(operation, eval_id=eval_id, run_id=run_id), None, _model(EvalRun))

    def delete_run(self, eval_id: str, run_id: str) -> Call[DeletedObject]:
        req = self._prepare(Operation.DELETE_RUN, eval_id=eval_id, run_id=run_id)
        return Call(req, None, _model(DeletedObject))

    # -- output items --------------------------------------------------------------------------------------

    def list_output_items(
        self,
        eval_id: str,
        run_id: str,
        *,
        after: str | None,
        limit: int,
        order: str,
        status: str | None = None,
    ) -> Call[Page[OutputItem]]:
        return Call(
            self._list_output_items(eval_id, run_id, after, limit, order, status), None, _page(OutputItem)
        )

    def list_raw_output_items(
        self, eval_id: str, run_id: str, after: str | None, limit: int, status: str | None
    ) -> Call[RawItemPage]:
        """Oldest first, answered as items kept in their original bytes (see ``raw_items``)."""
        req = self._list_output_items(eval_id, run_id, after, limit, "asc", status)
        return Call(req, None, parse_raw_item_page)

    def _list_output_items(
        self, eval_id: str, run_id: str, after: str | None, limit: int, order: str, status: str | None
    ) -> PreparedRequest:
        if status is not None and status not in OUTPUT_ITEM_STATUS_FILTERS:
            hint = " (the API calls failing items 'fail')" if status == "failed" else ""
            raise EvalsConfigError("status", f"{status!r} must be 'pass' or 'fail'{hint}")
        query = {**_page_query(after, limit, order), "status": status}
        return self._prepare(Operation.LIST_OUTPUT_ITEMS, query, eval_id=eval_id, run_id=run_id)

    def upload_file(
        self, open_stream: Callable[[], BinaryIO], *, filename: str, size: int, purpose: str = "evals"
    ) -> Call[FileObject]:
        if not filename or "/" in filename:
            raise EvalsConfigError("filename", f"{filename!r} must be a plain file name")
        if size < 0:
            raise EvalsConfigError("size", "must not be negative")
        upload = MultipartUpload(
            open=open_stream, filename=filename, size=size, fields=(("purpose", purpose),)
        )
        return Call(self._prepare(Operation.UPLOAD_FILE), None, _model(FileObject), upload)

    def get_output_item(self, eval_id: str, run_id: str, output_item_id: str) -> Call[OutputItem]:
        req = self._prepare(
            Operation.GET_OUTPUT_ITEM, eval_id=eval_id, run_id=run_id, output_item_id=output_item_id
        )
        return Call(req, None, _model(OutputItem))


def _page_query(after: str | None, limit: int, order: str) -> dict[str, str | int | None]:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE_SIZE:
        raise EvalsConfigError("limit", f"must be an integer from 1 to {MAX_PAGE_SIZE}, got {limit!r}")
    if order not in ("asc", "desc"):
        raise EvalsConfigError("order", f"{order!r} must be 'asc' or 'desc'")
    if after is not None:
        validate_id("after", after)
    return {"after": after, "limit": limit, "order": order}


def _plain(value: Any) -> Any:
    """Typed models (ours or the openai SDK's) become plain JSON-ready dicts."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_none=True)
    return dict(value)


def validate_data_source(data_source: Any) -> None:
    """The shape checks the API would make, made before sending, with the parameter named."""
    if isinstance(data_source, BaseModel):
        data_source = data_source.model_dump(mode="json", exclude_none=True)
    if not isinstance(data_source, Mapping):
        raise EvalsConfigError("data_source", f"must be a dict, got {type(data_source).__name__}")
    kind = data_source.get("type")
    if kind not in DATA_SOURCE_TYPES:
        raise EvalsConfigError("data_source", f"type {kind!r} must be one of {', '.join(DATA_SOURCE_TYPES)}")
    source = data_source.get("source")
    if kind == "jsonl":
        if not isinstance(source, Mapping):
            raise EvalsConfigError("data_source", "a jsonl data source needs a 'source' dict")
        if source.get("type") == "file_content":
            content = source.get("content")
            if not isinstance(content, list) or not all(
                isinstance(r, Mapping) and "item" in r for r in content
            ):
                raise EvalsConfigError(
                    "data_source", "file_content 'content' must be a list of {'item': {...}} rows"
                )
        elif source.get("type") == "file_id":
            if not source.get("id"):
                raise EvalsConfigError("data_source", "a file_id source needs an 'id'")
        else:
            raise EvalsConfigError("data_source", "jsonl 'source.type' must be 'file_content' or 'file_id'")
    elif source is not None and not isinstance(source, Mapping):
        raise EvalsConfigError("data_source", f"'source' of a {kind} data source must be a dict")


def with_idempotency_key(metadata: dict[str, str], key: str) -> dict[str, str]:
    """The metadata with the idempotency key added; fails naming ``metadata`` when no room is left."""
    if not key or len(key) > 512:
        raise EvalsConfigError("idempotency_key", "must be a non-empty string of at most 512 characters")
    if metadata.get(IDEMPOTENCY_METADATA_KEY) not in (None, key):
        raise EvalsConfigError(
            "metadata", f"{IDEMPOTENCY_METADATA_KEY!r} is reserved for the idempotency key"
        )
    if IDEMPOTENCY_METADATA_KEY not in metadata and len(metadata) >= METADATA_MAX_KEYS:
        raise EvalsConfigError(
            "metadata",
            f"has {len(metadata)} keys; the API allows {METADATA_MAX_KEYS} and one is needed for the "
            f"idempotency key {IDEMPOTENCY_METADATA_KEY!r}: drop a key",
        )
    return {**metadata, IDEMPOTENCY_METADATA_KEY: key}


def is_ambiguous(exc: BaseException) -> bool:
    """Whether a failed create may nevertheless have created the object on the server."""
    if isinstance(exc, EvalsConnectionError):
        return exc.request_sent
    return isinstance(exc, EvalsServerError)


def retryable_without_key(retryable: Callable[[BaseException], bool]) -> Callable[[BaseException], bool]:
    """For a create with no idempotency key: retry only failures that surely created nothing."""

    def check(exc: BaseException) -> bool:
        return retryable(exc) and isinstance(exc, EvalsAPIError) and not is_ambiguous(exc)

    return check


def matches_key(run: EvalRun, key: str) -> bool:
    return bool(run.metadata) and run.metadata.get(IDEMPOTENCY_METADATA_KEY) == key  # type: ignore[union-attr]


def too_old(run: EvalRun, since: float) -> bool:
    return run.created_at is not None and run.created_at < since - LOOKUP_CLOCK_SKEW

"""Datasets sent through the Files API and named by file id: object-storage files, and large inline rows.

An ``ObjectStoragePath`` is streamed up as it is, so a large dataset never passes through memory or the
create request. Inline rows are uploaded only above a size. Why: the API returns a run's whole data source with every GET of that run, so a run created with 50 MB of
inline ``file_content`` rows makes every poll (thousands at once in a triggerer) download and parse those
50 MB for as long as it runs. Uploaded once as a JSONL file (purpose ``evals``), the same rows cost the
polls a few bytes. Below the threshold an upload would only add a request, so small sources stay inline.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from airflow.providers.common.compat.sdk import ObjectStoragePath

from airflow_provider_aoai_evals.api.client import EvalsClient
from airflow_provider_aoai_evals.api.errors import EvalsConfigError


class _Log(Protocol):
    """The task's logger (Airflow's own type differs between 3.1 and 3.3)."""

    def info(self, msg: Any, /, *args: Any, **kwargs: Any) -> Any: ...


#: 1 MiB of JSONL: the point from which the data source outweighs the rest of a run's GET many times over.
DEFAULT_INLINE_UPLOAD_THRESHOLD = 1024 * 1024


def check_threshold(value: Any) -> int:
    """The threshold in bytes, or an error naming the parameter (``0`` keeps every source inline)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise EvalsConfigError(
            "inline_upload_threshold", f"must be a whole number of bytes, 0 or more (0: never), got {value!r}"
        )
    return value


def inline_rows(data_source: Any) -> Sequence[Any] | None:
    """The rows of a ``{"source": {"type": "file_content", "content": [...]}}`` source, else None.

    Every data source type that takes inline rows (``jsonl``, ``completions``, ``responses``) takes a
    ``file_id`` source in their place, so the type itself does not matter.
    """
    if not isinstance(data_source, Mapping):
        return None
    source = data_source.get("source")
    if not isinstance(source, Mapping) or source.get("type") != "file_content":
        return None
    content = source.get("content")
    return content if isinstance(content, Sequence) and not isinstance(content, str | bytes) else None


def as_jsonl(rows: Sequence[Any]) -> bytes:
    """One row per line, as the Files API takes an eval dataset (each row keeps its ``item``/``sample``)."""
    buffer = io.BytesIO()
    for row in rows:
        buffer.write(json.dumps(row, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
        buffer.write(b"\n")
    return buffer.getvalue()


def with_file_id(data_source: Mapping[str, Any], file_id: str) -> dict[str, Any]:
    """``data_source`` with its inline rows replaced by the uploaded file; every other key kept."""
    return {**data_source, "source": {"type": "file_id", "id": file_id}}


def upload_path(client: EvalsClient, path: ObjectStoragePath, log: _Log) -> dict[str, Any]:
    """A ``jsonl`` data source naming ``path``'s file, streamed up (opened again for each attempt)."""
    size = int(path.stat().st_size)
    log.info("Uploading %s (%d bytes) through the Files API", path, size)
    uploaded = client.upload_file(lambda: path.open("rb"), filename=path.name, size=size, purpose="evals")
    log.info("Uploaded %s as file %s", path, uploaded.id)
    return {"type": "jsonl", "source": {"type": "file_id", "id": uploaded.id}}


def upload_large_inline_rows(
    client: EvalsClient, data_source: Any, *, threshold: int, filename: str, log: _Log
) -> tuple[Any, str | None]:
    """``data_source`` and None, or, when its inline rows pass ``threshold`` bytes (``0``: never), the same
    source naming those rows uploaded as ``filename``, and that file's id."""
    rows = inline_rows(data_source)
    if rows is None or not threshold:
        return data_source, None
    body = as_jsonl(rows)
    if len(body) <= threshold:
        return data_source, None
    log.info(
        "The data source's %d inline rows are %d bytes as JSONL, above inline_upload_threshold (%d): "
        "uploading them through the Files API so that polls of the run do not download them again",
        len(rows),
        len(body),
        threshold,
    )
    uploaded = client.upload_file(
        lambda: io.BytesIO(body), filename=filename, size=len(body), purpose="evals"
    )
    log.info("Uploaded the inline rows as file %s; the run names it by file id", uploaded.id)
    return with_file_id(data_source, uploaded.id), uploaded.id

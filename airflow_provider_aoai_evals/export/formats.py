"""How output items become bytes: JSON Lines (one item per line, as the API sent it) or CSV (one row per
grader result, for spreadsheets and SQL loaders).

Encoders work a page at a time, so an export holds one page of encoded text at most, never the run. They
take items as :class:`~airflow_provider_aoai_evals.api.raw_items.RawItem`: JSON Lines copies the API's
bytes without building a model; CSV and XCom records build what they need from them.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any, Protocol

from airflow_provider_aoai_evals.api.models import OutputItem, OutputItemResult
from airflow_provider_aoai_evals.api.raw_items import RawItem

#: Formats the export operator accepts.
EXPORT_FORMATS = ("jsonl", "csv")

#: CSV header, in order. One row per grader result; an item without results (an errored sample) still gets
#: one row with the grader columns empty, so every item appears in the file.
CSV_COLUMNS = (
    "output_item_id",
    "datasource_item_id",
    "created_at",
    "status",
    "grader",
    "grader_type",
    "score",
    "passed",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cached_tokens",
    "error",
)


class Encoder(Protocol):
    """Turns pages of items into bytes of one format."""

    name: str
    #: The file's media type, for stores that record one.
    content_type: str

    def header(self) -> bytes:
        """Bytes written once at the start of the file (empty for JSONL)."""
        ...

    def encode(self, items: Sequence[RawItem]) -> bytes:
        """The bytes of a page of items."""
        ...

    def records(self, item: RawItem) -> list[dict[str, Any]]:
        """The item as JSON-serializable dicts, for XCom (one for JSONL, one per row for CSV)."""
        ...


class JsonlEncoder:
    """One JSON object per line, exactly the bytes the API sent for the item (unknown fields included,
    nothing added; line breaks between tokens removed so that each item is one line)."""

    name = "jsonl"
    content_type = "application/x-ndjson"

    def header(self) -> bytes:
        return b""

    def encode(self, items: Sequence[RawItem]) -> bytes:
        if not items:
            return b""
        return b"\n".join([item.raw for item in items]) + b"\n"

    def records(self, item: RawItem) -> list[dict[str, Any]]:
        return [item.as_dict()]


def csv_rows(item: OutputItem) -> list[dict[str, Any]]:
    """The CSV rows of one item as dicts keyed by :data:`CSV_COLUMNS` (values keep their JSON types)."""
    sample: dict[str, Any] = item.sample or {}
    raw_usage = sample.get("usage")
    usage: dict[str, Any] = raw_usage if isinstance(raw_usage, dict) else {}
    error = sample.get("error")
    error_text = None
    if isinstance(error, dict):
        error_text = error.get("message") or error.get("code")
    elif error:
        error_text = str(error)
    common = {
        "output_item_id": item.id,
        "datasource_item_id": item.datasource_item_id,
        "created_at": item.created_at,
        "status": item.status,
        "model": sample.get("model"),
        "prompt_tokens": usage.get("prompt_tokens"),
        "completion_tokens": usage.get("completion_tokens"),
        "total_tokens": usage.get("total_tokens"),
        "cached_tokens": usage.get("cached_tokens"),
        "error": error_text,
    }
    results: list[OutputItemResult | None] = list(item.results) or [None]
    return [
        {
            **common,
            "grader": result.name if result else None,
            "grader_type": result.type if result else None,
            "score": result.score if result else None,
            "passed": result.passed if result else None,
        }
        for result in results
    ]


def _cell(value: Any) -> Any:
    """CSV cell text: empty for null, lowercase booleans (as JSON writes them), numbers and text as is."""
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return value


class CsvEncoder:
    """Flattened: one row per grader result, with the item's status, model and token usage beside it."""

    name = "csv"
    content_type = "text/csv"

    def _write(self, rows: list[list[Any]]) -> bytes:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(rows)
        return buffer.getvalue().encode()

    def header(self) -> bytes:
        return self._write([list(CSV_COLUMNS)])

    def encode(self, items: Sequence[RawItem]) -> bytes:
        rows = [
            [_cell(row[column]) for column in CSV_COLUMNS] for item in items for row in csv_rows(item.model())
        ]
        return self._write(rows) if rows else b""

    def records(self, item: RawItem) -> list[dict[str, Any]]:
        return [{column: row[column] for column in CSV_COLUMNS} for row in csv_rows(item.model())]


def encoder_for(name: str) -> Encoder:
    """The encoder of a format name (already validated by the caller)."""
    return CsvEncoder() if name == "csv" else JsonlEncoder()

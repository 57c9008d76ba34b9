"""Checks of request bodies (evals, runs, uploads) with the real API's limits, messages and error codes.

The fake refuses what the service refuses, so a client that sends a bad body fails against the fake the
same way it would in production rather than only there. Every check runs before the store's lock is
taken: a refused request changes nothing.
"""

from __future__ import annotations

import json
import re
from typing import Any

from airflow_provider_aoai_evals.testing.errors import ApiError, invalid_type, invalid_value, missing

#: The provider's id rule (api.validation), repeated because the fake imports nothing of the provider.
_EVAL_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,255}$")
_RUN_SOURCES = {
    "jsonl": {"file_content", "file_id"},
    "completions": {"file_content", "file_id", "stored_completions"},
    "responses": {"file_content", "file_id", "responses"},
}


def validate_eval_id(eval_id: Any) -> None:
    """For seeded evals only: through the API the service picks the id."""
    if eval_id is not None and (not isinstance(eval_id, str) or not _EVAL_ID_PATTERN.match(eval_id)):
        raise ApiError(400, f"{eval_id!r} is not a valid eval id.", param="id", code="invalid_value")


def validate_name(body: dict[str, Any]) -> str | None:
    name = body.get("name")
    if name is not None and not isinstance(name, str):
        raise invalid_type("name", "a string")
    return name


def validate_metadata(metadata: Any, param: str = "metadata") -> dict[str, str] | None:
    """Mirror the real API's metadata limits so clients that write idempotency keys hit them here too."""
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise invalid_type(param, f"an object, but got {type(metadata).__name__} instead")
    if len(metadata) > 16:
        raise ApiError(
            400,
            f"Invalid '{param}': too many properties. Expected an object with at most 16 properties, but got "
            f"an object with {len(metadata)} properties instead.",
            param=param,
            code="object_above_max_properties",
        )
    for key, value in metadata.items():
        if len(key) > 64:
            raise ApiError(
                400,
                f"Invalid '{param}': string too long. Expected a key with maximum length 64, but got a key "
                f"with length {len(key)} instead.",
                param=f"{param}.{key[:64]}",
                code="string_above_max_length",
            )
        if not isinstance(value, str):
            raise invalid_type(f"{param}.{key}", f"a string, but got {type(value).__name__} instead")
        if len(value) > 512:
            raise ApiError(
                400,
                f"Invalid '{param}.{key}': string too long. Expected a string with maximum length 512, but got "
                f"a string with length {len(value)} instead.",
                param=f"{param}.{key}",
                code="string_above_max_length",
            )
    return dict(metadata)


def _required(value: Any, param: str, kind: type, expected: str) -> Any:
    if value is None:
        raise missing(param)
    if not isinstance(value, kind):
        raise invalid_type(param, expected)
    return value


def validate_data_source(raw: Any) -> dict[str, Any]:
    """Accept the three run data source types and the source kinds each allows, as the real API does."""
    data_source: dict[str, Any] = _required(raw, "data_source", dict, "an object")
    ds_type = data_source.get("type")
    if ds_type not in _RUN_SOURCES:
        raise invalid_value(ds_type, "'jsonl', 'completions', and 'responses'", "data_source.type")
    allowed = _RUN_SOURCES[ds_type]
    source = data_source.get("source")
    if source is None:
        raise missing("data_source.source")
    if not isinstance(source, dict) or source.get("type") not in allowed:
        got = source.get("type") if isinstance(source, dict) else source
        raise invalid_value(got, ", ".join(f"'{s}'" for s in sorted(allowed)), "data_source.source.type")
    if source["type"] == "file_content":
        content = source.get("content")
        if not isinstance(content, list):
            raise missing("data_source.source.content")
        for i, row in enumerate(content):
            if not isinstance(row, dict) or not isinstance(row.get("item"), dict):
                raise ApiError(
                    400,
                    f"Invalid 'data_source.source.content[{i}]': each row needs an 'item' object.",
                    param=f"data_source.source.content[{i}].item",
                    code="invalid_value",
                )
    elif source["type"] == "file_id" and not isinstance(source.get("id"), str):
        raise missing("data_source.source.id")
    return data_source


def validate_eval_body(body: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    config = body.get("data_source_config")
    if config is None:
        raise missing("data_source_config")
    if not isinstance(config, dict) or config.get("type") not in {"custom", "logs", "stored_completions"}:
        got = config.get("type") if isinstance(config, dict) else config
        raise invalid_value(got, "'custom', 'logs', and 'stored_completions'", "data_source_config.type")
    if config["type"] == "custom" and not isinstance(config.get("item_schema"), dict):
        raise missing("data_source_config.item_schema")
    criteria: list[Any] = _required(body.get("testing_criteria"), "testing_criteria", list, "an array")
    for i, crit in enumerate(criteria):
        if not isinstance(crit, dict) or not crit.get("type") or not crit.get("name"):
            raise ApiError(
                400,
                f"Invalid 'testing_criteria[{i}]': each criterion needs a 'type' and a 'name'.",
                param=f"testing_criteria[{i}]",
                code="invalid_value",
            )
    return config, criteria


def response_data_source_config(config: dict[str, Any]) -> dict[str, Any]:
    """Turn a create-eval data_source_config into the shape the API returns (a derived JSON schema)."""
    ds_type = config.get("type")
    if ds_type == "custom":
        properties: dict[str, Any] = {"item": config.get("item_schema") or {"type": "object"}}
        required = ["item"]
        if config.get("include_sample_schema"):
            properties["sample"] = {"type": "object"}
            required.append("sample")
        return {
            "type": "custom",
            "schema": {"type": "object", "properties": properties, "required": required},
        }
    out: dict[str, Any] = {"type": ds_type}
    if config.get("metadata") is not None:
        out["metadata"] = config["metadata"]
    out["schema"] = config.get("schema") or {
        "type": "object",
        "properties": {"item": {"type": "object"}, "sample": {"type": "object"}},
        "required": ["item", "sample"],
    }
    return out


def parse_upload_rows(filename: str, purpose: str, content: bytes) -> list[Any]:
    """The rows of an uploaded JSONL file; each non-empty line must be a JSON object with an ``item``."""
    if purpose != "evals":
        raise ApiError(400, f"Invalid purpose {purpose!r} for this fake: use 'evals'.", param="purpose")
    rows: list[Any] = []
    for number, line in enumerate(content.decode("utf-8", "replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise ApiError(400, f"Invalid JSON on line {number} of {filename}.", param="file") from None
        if not isinstance(row, dict) or "item" not in row:
            raise ApiError(400, f"Line {number} of {filename} has no 'item' object.", param="file")
        rows.append(row)
    return rows

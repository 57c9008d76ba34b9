"""Request bodies with working defaults, for evals and runs a test seeds without going through the API.

``FakeEvalsServer.add_eval``/``add_run`` and the control routes build these and hand them to the same
store methods the API routes use, so a seeded eval or run is checked exactly like a created one.
"""

from __future__ import annotations

from typing import Any

DEFAULT_TESTING_CRITERIA: list[dict[str, Any]] = [
    {
        "type": "string_check",
        "name": "exact match",
        "input": "{{sample.output_text}}",
        "reference": "{{item.ground_truth}}",
        "operation": "eq",
    }
]
DEFAULT_DATA_SOURCE_CONFIG: dict[str, Any] = {
    "type": "custom",
    "item_schema": {
        "type": "object",
        "properties": {"input": {"type": "string"}, "ground_truth": {"type": "string"}},
        "required": ["input", "ground_truth"],
    },
    "include_sample_schema": True,
}


def eval_body(
    name: str | None = None,
    testing_criteria: list[dict[str, Any]] | None = None,
    data_source_config: dict[str, Any] | None = None,
    metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A create-eval request body with working defaults, for seeding evals without writing graders."""
    body: dict[str, Any] = {
        "name": name if name is not None else "Fake eval",
        "data_source_config": data_source_config
        if data_source_config is not None
        else DEFAULT_DATA_SOURCE_CONFIG,
        "testing_criteria": testing_criteria if testing_criteria is not None else DEFAULT_TESTING_CRITERIA,
    }
    if metadata is not None:
        body["metadata"] = metadata
    return body


def run_body(
    name: str | None = None, metadata: dict[str, str] | None = None, data_source: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A create-run body; the default data source is a file id so seeded runs echo a small object."""
    body: dict[str, Any] = {
        "data_source": data_source
        if data_source is not None
        else {"type": "jsonl", "source": {"type": "file_id", "id": "file-fake0000000000000000000000"}},
    }
    if name is not None:
        body["name"] = name
    if metadata is not None:
        body["metadata"] = metadata
    return body

"""Helpers shared by the fake server's own tests (a unique module name, importable from any mode)."""

from __future__ import annotations

from typing import Any

import requests

from airflow_provider_aoai_evals.testing import FakeEvalsServer, RunScript

API_KEY = "sk-test-0123456789"
FAST = RunScript(queued_seconds=0.0, in_progress_seconds=0.0)


class Api:
    """A thin requests wrapper that sends what a well-behaved client of each flavor sends."""

    def __init__(self, server: FakeEvalsServer) -> None:
        self.server = server
        self.session = requests.Session()
        self.headers: dict[str, str] = {}
        if server.flavor == "azure":
            self.headers = {"api-key": server.api_key, "aoai-evals": "preview"}
        else:
            self.headers = {"Authorization": f"Bearer {server.api_key}"}

    def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        return self.session.request(
            method,
            self.server.api_root + path,
            json=json,
            params=params,
            headers=self.headers if headers is None else headers,
            timeout=30,
        )

    def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.call(method, path, **kwargs)
        assert response.status_code in (200, 201), response.text
        return response.json()

    def create_eval(self, **extra: Any) -> Any:
        body = {
            "name": "headlines",
            "data_source_config": {
                "type": "custom",
                "item_schema": {"type": "object"},
                "include_sample_schema": True,
            },
            "testing_criteria": [
                {
                    "type": "string_check",
                    "name": "exact",
                    "input": "{{sample.output_text}}",
                    "reference": "{{item.ground_truth}}",
                    "operation": "eq",
                },
                {
                    "type": "string_check",
                    "name": "loose",
                    "input": "{{sample.output_text}}",
                    "reference": "{{item.ground_truth}}",
                    "operation": "ilike",
                },
            ],
        }
        body.update(extra)
        return self.ok("POST", "/evals", json=body)

    def create_run(self, eval_id: str, rows: int = 6, **extra: Any) -> Any:
        return self.ok(
            "POST", f"/evals/{eval_id}/runs", json={"name": "r", "data_source": jsonl(rows), **extra}
        )


def jsonl(rows: int) -> dict[str, Any]:
    topics = ["Technology", "Markets", "World", "Business", "Sports"]
    return {
        "type": "jsonl",
        "source": {
            "type": "file_content",
            "content": [
                {"item": {"input": f"headline {i}", "ground_truth": topics[i % 5]}} for i in range(rows)
            ],
        },
    }

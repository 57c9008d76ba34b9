"""The connection guide's http example: both forms it shows are the same connection (no ``scheme`` extra
is needed when the host starts with ``http://``), in docs/connections.md and in the README's copy."""

from __future__ import annotations

import re
import shlex

import pytest

from airflow_provider_aoai_evals.hooks.evals import EvalsHook

from .markdown import REPO, code_block

pytestmark = pytest.mark.compat


@pytest.mark.parametrize(
    ("document", "heading"),
    [
        ("docs/connections.md", "## How host, schema and port combine"),
        ("README.md", "### How host, schema and port combine"),
    ],
)
def test_http_host_needs_no_scheme_extra(
    monkeypatch: pytest.MonkeyPatch, document: str, heading: str
) -> None:
    block = code_block(REPO / document, heading, language="bash")
    values = [
        shlex.split(line)[1].split("=", 1)[1] for line in block.splitlines() if line.startswith("export ")
    ]
    assert len(values) == 2 and values[0].startswith("{") and values[1].startswith("aoai-evals://")
    assert "scheme" not in values[0] and re.search(r"[?&]scheme=http\b", values[1])
    roots = []
    for index, value in enumerate(values):
        monkeypatch.setenv(f"AIRFLOW_CONN_AOAI_DOC_{index}", value)
        roots.append(EvalsHook(f"aoai_doc_{index}").get_settings().api_root)
    assert roots == ["http://127.0.0.1:8080/v1"] * 2

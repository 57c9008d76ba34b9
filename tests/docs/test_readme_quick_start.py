"""The README's quick-start DAG, exactly as the README shows it, on its first night against FakeEvalsServer.

The block is copied into a DAG file untouched and run with ``airflow dags test`` in a child process, as a
new user would run it. What the test provides is what a user provides: a connection (an ``AIRFLOW_CONN_*``
JSON variable, pointing at the fake), the Airflow Variable the export destination names, and an eval under
the id the DAG names (seeded in the fake with the graders its gate checks). No earlier run exists, so the
gate has no baseline: the night must still succeed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_aoai_evals.operators.quality_gate import _QualityGate
from airflow_provider_aoai_evals.testing import FakeEvalsServer, RunScript
from tests.dags.conftest import load_dagbag

from .markdown import REPO, code_block

KEY = "sk-readme-quick-start"
pytestmark = pytest.mark.compat


@pytest.fixture
def server() -> Iterator[FakeEvalsServer]:
    with FakeEvalsServer(api_key=KEY) as srv:
        # Runs finish at once (the DAG's own poll interval is 30 s); one item in ten fails, so the gate's
        # 0.9 / 0.85 thresholds are met with something to export.
        srv.default_script = RunScript(queued_seconds=0, in_progress_seconds=0, fail_every=10)
        yield srv


def seed_evals(server: FakeEvalsServer, dag: Any) -> None:
    """The evals the DAG names, each with the graders its gates check (string checks, as a new eval has)."""
    criteria: dict[str, set[str]] = {}
    for task in dag.tasks:
        eval_id = getattr(task, "eval_id", None)
        if isinstance(eval_id, str) and "{{" not in eval_id:
            names = criteria.setdefault(eval_id, set())
            if isinstance(task, _QualityGate):
                names.update(task.thresholds.min_criterion_pass_rates)
    assert criteria, "the quick start names no eval id"
    for eval_id, names in criteria.items():
        graders = [
            {
                "type": "string_check",
                "name": n,
                "input": "{{sample.output_text}}",
                "reference": "{{item.label}}",
                "operation": "eq",
            }
            for n in sorted(names) or ["exact match"]
        ]
        server.add_eval(name="from the dashboard", testing_criteria=graders, eval_id=eval_id)


def test_quick_start_dag_succeeds_on_its_first_night(server: FakeEvalsServer, tmp_path: Path) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    (dags / "readme_quick_start.py").write_text(code_block(REPO / "README.md", "## Quick start DAG"))
    [dag] = load_dagbag(dags).dags.values()
    seed_evals(server, dag)
    exports = tmp_path / "exports"

    env = {k: v for k, v in os.environ.items() if k != "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"}
    env.update(
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),  # the default bundle, as for a user's own dags folder
        AIRFLOW__LOGGING__LOGGING_LEVEL="INFO",
        AIRFLOW_CONN_AOAI_EVALS_DEFAULT=json.dumps(
            {"conn_type": "aoai_evals", "host": server.base_url, "password": KEY}
        ),
        AIRFLOW_VAR_EVAL_EXPORT_ROOT=f"file://{exports}",
    )
    done = subprocess.run(
        [sys.executable, "-m", "airflow", "dags", "test", dag.dag_id],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-6000:]

    [created] = [r for r in server.requests if r.method == "POST" and r.api_path.endswith("/runs")]
    assert created.status == 201
    assert "No baseline run found; regression not checked" in log
    [exported] = list(exports.rglob("*.jsonl"))
    items = [json.loads(line) for line in exported.read_text().splitlines()]
    assert items and {item["status"] for item in items} == {"fail"}
    assert exported.stem.startswith("evalrun_")  # named after the run, as the README's template says


def test_the_docs_site_shows_the_same_quick_start() -> None:
    """docs/index.md repeats the README's quick start for the documentation site; one copy must not drift."""
    readme = code_block(REPO / "README.md", "## Quick start DAG")
    assert code_block(REPO / "docs" / "index.md", "## Quick start DAG") == readme

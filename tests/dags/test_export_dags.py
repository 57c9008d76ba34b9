"""ExportEvalRunOutputItemsOperator end to end through ``dag.test()`` against FakeEvalsServer, exporting
to a local path templated with ``ds`` and the run id."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_aoai_evals.testing import FakeEvalsServer, RunScript
from tests.support import served_as_default_connection

from .conftest import HERE, load_dagbag, xcom_value

KEY = "sk-export-dag-key"
pytestmark = pytest.mark.compat


@pytest.fixture(scope="module")
def dagbag() -> Any:
    return load_dagbag(HERE / "dag_files")


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEvalsServer]:
    with served_as_default_connection(monkeypatch, KEY) as srv:
        yield srv


def run_dag(dagbag: Any, dag_id: str, server: FakeEvalsServer, n: int, out_dir: Path) -> tuple[str, Any, str]:
    eval_id = server.add_eval(name="e")["id"]
    run_id = server.add_run(eval_id, RunScript(queued_seconds=0, in_progress_seconds=0, output_items=n))["id"]
    dag_run = dagbag.get_dag(dag_id).test(
        run_conf={"eval_id": eval_id, "run_id": run_id, "out_dir": str(out_dir)}
    )
    [ti] = dag_run.get_task_instances()
    return str(ti.state), xcom_value(dag_run, "export"), run_id


def test_export_to_a_templated_local_path(dagbag: Any, server: FakeEvalsServer, tmp_path: Path) -> None:
    state, result, run_id = run_dag(dagbag, "export_items_local", server, 250, tmp_path)
    assert state == "success"
    [day] = [p.name for p in tmp_path.iterdir()]  # {{ ds }}: the logical date of the test run
    out = tmp_path / day / f"{run_id}.jsonl"
    assert len(day) == 10 and day[4] == "-" and out.exists()
    ids = {json.loads(line)["id"] for line in out.read_text().splitlines()}
    assert len(ids) == 250 == result["count"]
    assert result["path"].endswith(f"{day}/{run_id}.jsonl") and result["format"] == "jsonl"
    assert result["bytes"] == out.stat().st_size


def test_export_failures_as_csv(dagbag: Any, server: FakeEvalsServer, tmp_path: Path) -> None:
    state, result, _ = run_dag(dagbag, "export_items_csv_failures", server, 30, tmp_path)
    assert state == "success"
    [out] = list(tmp_path.rglob("failures.csv"))
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 10 == result["count"] and {r["status"] for r in rows} == {"fail"}


def test_xcom_mode_and_its_limit(dagbag: Any, server: FakeEvalsServer, tmp_path: Path) -> None:
    state, result, _ = run_dag(dagbag, "export_items_xcom", server, 8, tmp_path)
    assert state == "success" and result["count"] == 8 and len(result["items"]) == 8
    state, result, _ = run_dag(dagbag, "export_items_xcom", server, 40, tmp_path)
    assert state == "failed" and result is None

"""OpenLineage of the four eval-run operators, method by method, against FakeEvalsServer.

The events Airflow's listener emits for whole DAG runs are checked in tests/dags/test_lineage_dags.py; here
each operator's ``get_openlineage_facets_on_complete`` is called directly, including on a fresh instance
that only ran ``execute_complete`` (what Airflow does after a deferral, apache/airflow#34270).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from airflow_provider_aoai_evals.api.auth import ApiKeyAuth
from airflow_provider_aoai_evals.api.settings import ClientSettings
from airflow_provider_aoai_evals.api.summary import summarize
from airflow_provider_aoai_evals.exceptions import EvalRunError
from airflow_provider_aoai_evals.hooks.evals import EvalsHook
from airflow_provider_aoai_evals.operators import _lineage as lineage
from airflow_provider_aoai_evals.operators.eval_run import CreateEvalRunOperator
from airflow_provider_aoai_evals.operators.output_items import ExportEvalRunOutputItemsOperator
from airflow_provider_aoai_evals.operators.quality_gate import (
    EvalGateFailed,
    EvalRunBranchOperator,
    EvalRunCheckOperator,
)
from airflow_provider_aoai_evals.testing import FakeEvalsServer, RunScript
from tests.support import connection_json, served_as_default_connection

KEY = "sk-lineage-unit-canary-5be1c0"
ROW_MARKER = "row-marker-never-in-lineage-91ad"
ROWS = {
    "type": "jsonl",
    "source": {"type": "file_content", "content": [{"item": {"q": ROW_MARKER, "label": "a"}}]},
}
SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "schemas" / "AoaiEvalsRunFacet.json"
OPENLINEAGE_MODULES = ("openlineage", "airflow.providers.openlineage")
pytestmark = pytest.mark.compat


class FakeTI:
    """The few task-instance attributes the operators use outside a DAG run."""

    dag_id, task_id, run_id, map_index, try_number = "lineage_unit", "task", "manual__1", -1, 1

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def context(ti: FakeTI | None = None) -> Any:
    """A task context outside a DAG run: only what the operators read."""
    return {"ti": ti or FakeTI()}


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEvalsServer]:
    with served_as_default_connection(monkeypatch, KEY) as srv:
        yield srv


@pytest.fixture
def finished(server: FakeEvalsServer) -> tuple[str, str]:
    """A completed run of nine items, six passing: (eval_id, run_id)."""
    eval_id = str(server.add_eval(name="lineage")["id"])
    run = server.add_run(eval_id, RunScript(queued_seconds=0, in_progress_seconds=0, output_items=9))
    return eval_id, str(run["id"])


def namespace(server: FakeEvalsServer) -> str:
    return "openai://" + server.base_url.split("://", 1)[1].split("/", 1)[0]


def as_json(operator_lineage: Any) -> dict[str, Any]:
    """An OperatorLineage as the JSON an event would carry it in."""
    from openlineage.client.serde import Serde

    return {
        "inputs": [Serde.to_dict(d) for d in operator_lineage.inputs],
        "outputs": [Serde.to_dict(d) for d in operator_lineage.outputs],
        "run_facets": {k: Serde.to_dict(v) for k, v in operator_lineage.run_facets.items()},
    }


def names(datasets: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(d["namespace"], d["name"]) for d in datasets]


def success_event(eval_id: str, run_id: str) -> dict[str, Any]:
    """The event EvalRunTrigger yields for a completed run."""
    run = EvalsHook().get_conn().get_run(eval_id, run_id)
    return {
        "status": "success",
        "eval_id": eval_id,
        "run_id": run_id,
        "message": "finished",
        "run_status": run.status,
        "summary": summarize(run).to_xcom(),
    }


def assert_facet_matches_schema(facet: dict[str, Any]) -> None:
    import jsonschema

    body = json.loads(SCHEMA.read_text())["$defs"]["AoaiEvalsRunFacet"]["allOf"][1]
    jsonschema.validate({k: v for k, v in facet.items() if not k.startswith("_")}, body)
    assert facet["_schemaURL"].endswith("docs/schemas/AoaiEvalsRunFacet.json#/$defs/AoaiEvalsRunFacet")


# -- naming --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flavor", "url", "expected"),
    [
        ("openai", None, "openai://api.openai.com"),
        ("openai", "https://api.openai.com:443/v1", "openai://api.openai.com"),
        ("openai", "http://127.0.0.1:8080/v1", "openai://127.0.0.1:8080"),
        ("openai", "http://[::1]:8080/v1", "openai://[::1]:8080"),
        ("azure", "https://MyRes.openai.azure.com", "azure-openai://myres.openai.azure.com"),
        (
            "azure",
            "https://myres.openai.azure.com:8443/openai/v1",
            "azure-openai://myres.openai.azure.com:8443",
        ),
    ],
)
def test_api_namespace_is_scheme_host_and_port_only(flavor: str, url: str | None, expected: str) -> None:
    settings = ClientSettings.build(flavor=flavor, base_url=url, auth=ApiKeyAuth(KEY))
    assert lineage.api_namespace(settings) == expected


@pytest.mark.parametrize(
    ("url", "namespace_", "name"),
    [
        ("file:///data/evals/rows.jsonl", "file", "/data/evals/rows.jsonl"),
        ("/data/evals/rows.jsonl", "file", "/data/evals/rows.jsonl"),
        ("s3://bucket/evals/2025-01-01/x.jsonl", "s3://bucket", "evals/2025-01-01/x.jsonl"),
        ("gs://bucket/x.csv", "gs://bucket", "x.csv"),
        ("abfs://container/evals/x.jsonl", "abfss://container", "evals/x.jsonl"),
        ("az://container/evals/x.jsonl", "abfss://container", "evals/x.jsonl"),
    ],
)
def test_storage_dataset_follows_openlineage_naming(url: str, namespace_: str, name: str) -> None:
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    path = ObjectStoragePath(url)
    with mock.patch.object(type(path), "fs", new_callable=mock.PropertyMock, side_effect=RuntimeError):
        ref = lineage.storage_dataset(path)  # no filesystem (and no account) to be had: the coarser name
    assert (ref.namespace, ref.name) == (namespace_, name)


def test_azure_storage_dataset_names_the_account_from_the_filesystem() -> None:
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    path = ObjectStoragePath("abfs://container/evals/x.jsonl")
    fs = mock.Mock(account_name="acct")
    with mock.patch.object(type(path), "fs", new_callable=mock.PropertyMock, return_value=fs):
        ref = lineage.storage_dataset(path, row_count=3, size_bytes=10)
    assert ref == lineage.DatasetRef("abfss://container@acct.dfs.core.windows.net", "evals/x.jsonl", 3, 10)


# -- CreateEvalRunOperator -----------------------------------------------------------------------------------


def test_create_inline_rows_reports_the_run_and_never_the_rows(server: FakeEvalsServer) -> None:
    server.default_script = RunScript(queued_seconds=0, in_progress_seconds=0)
    eval_id = str(server.add_eval(name="lineage")["id"])
    ti = FakeTI()
    task = CreateEvalRunOperator(task_id="create", eval_id=eval_id, data_source=ROWS, metadata={"k": "v1"})
    summary = task.execute(context(ti))
    got = as_json(task.get_openlineage_facets_on_complete(None))
    text = json.dumps(got)
    assert ROW_MARKER not in text and KEY not in text and "v1" not in text  # rows, key, user metadata
    assert got["inputs"] == []  # inline rows are no dataset
    assert names(got["outputs"]) == [(namespace(server), f"evals/{eval_id}/runs/{summary['run_id']}")]
    assert got["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] == 1
    facet = got["run_facets"]["aoaiEvalsRun"]
    assert facet["evalId"] == eval_id and facet["runId"] == summary["run_id"]
    assert facet["status"] == "completed" and facet["reportUrl"] == summary["report_url"]
    assert facet["passRate"] == summary["pass_rate"] and facet["counts"]["total"] == 1
    assert facet["dataSource"] == {"type": "jsonl", "sourceType": "file_content"}
    assert got["run_facets"]["externalQuery"]["externalQueryId"] == summary["run_id"]
    assert_facet_matches_schema(facet)


def test_create_from_file_id_names_the_file(server: FakeEvalsServer) -> None:
    server.default_script = RunScript(queued_seconds=0, in_progress_seconds=0)
    eval_id = str(server.add_eval(name="lineage")["id"])
    source = {"type": "jsonl", "source": {"type": "file_id", "id": "file-abc123"}}
    task = CreateEvalRunOperator(task_id="create", eval_id=eval_id, data_source=source)
    task.execute(context())
    got = as_json(task.get_openlineage_facets_on_complete(None))
    assert names(got["inputs"]) == [(namespace(server), "files/file-abc123")]
    assert got["run_facets"]["aoaiEvalsRun"]["dataSource"]["fileId"] == "file-abc123"


def test_create_after_deferral_restores_ids_in_execute_complete(
    server: FakeEvalsServer, finished: tuple[str, str], tmp_path: Path
) -> None:
    """A deferred task resumes on a new operator instance that never ran ``execute``."""
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    eval_id, run_id = finished
    dataset = tmp_path / "rows.jsonl"
    dataset.write_text('{"item": {"a": 1}}\n')
    resumed = CreateEvalRunOperator(
        task_id="create", eval_id=eval_id, data_source=ObjectStoragePath(f"file://{dataset}")
    )
    resumed.execute_complete(
        {}, success_event(eval_id, run_id), eval_id=eval_id, run_id=run_id, uploaded_file_id="file-up1"
    )
    got = as_json(resumed.get_openlineage_facets_on_complete(None))
    assert names(got["inputs"]) == [("file", str(dataset))]
    assert names(got["outputs"]) == [(namespace(server), f"evals/{eval_id}/runs/{run_id}")]
    facet = got["run_facets"]["aoaiEvalsRun"]
    assert (facet["evalId"], facet["runId"], facet["status"]) == (eval_id, run_id, "completed")
    assert facet["passRate"] == pytest.approx(6 / 9)
    assert facet["criteria"] and facet["criteria"][0]["passRate"] == pytest.approx(6 / 9)
    assert facet["dataSource"] == {
        "type": "jsonl",
        "sourceType": "file_id",
        "fileId": "file-up1",
        "uploaded": True,
    }


def test_failed_run_after_deferral_is_still_named(server: FakeEvalsServer) -> None:
    eval_id = str(server.add_eval(name="lineage")["id"])
    script = RunScript(
        queued_seconds=0, in_progress_seconds=0, final_status="failed", error={"code": "x", "message": "m"}
    )
    run_id = str(server.add_run(eval_id, script)["id"])
    event = {**success_event(eval_id, run_id), "status": "failure"}
    resumed = CreateEvalRunOperator(task_id="create", eval_id=eval_id, data_source=ROWS)
    with pytest.raises(EvalRunError):
        resumed.execute_complete({}, event, eval_id=eval_id, run_id=run_id)
    facet = as_json(resumed.get_openlineage_facets_on_complete(None))["run_facets"]["aoaiEvalsRun"]
    assert (facet["runId"], facet["status"]) == (run_id, "failed")


def test_timeout_event_without_summary_keeps_ids_and_status(server: FakeEvalsServer) -> None:
    event = {
        "status": "timeout",
        "eval_id": "eval_1",
        "run_id": "evalrun_1",
        "message": "late",
        "run_status": "in_progress",
    }
    resumed = CreateEvalRunOperator(task_id="create", eval_id="eval_1", data_source=ROWS)
    with pytest.raises(Exception, match="late"):
        resumed.execute_complete({}, event, eval_id="eval_1", run_id="evalrun_1")
    got = as_json(resumed.get_openlineage_facets_on_complete(None))
    facet = got["run_facets"]["aoaiEvalsRun"]
    assert (facet["runId"], facet["status"]) == ("evalrun_1", "in_progress") and "passRate" not in facet
    assert names(got["outputs"]) == [(namespace(server), "evals/eval_1/runs/evalrun_1")]


# -- ExportEvalRunOutputItemsOperator ------------------------------------------------------------------------


def test_export_reports_run_in_and_file_out_with_statistics(
    server: FakeEvalsServer, finished: tuple[str, str], tmp_path: Path
) -> None:
    eval_id, run_id = finished
    out = tmp_path / "fails.jsonl"
    task = ExportEvalRunOutputItemsOperator(
        task_id="export", eval_id=eval_id, run_id=run_id, destination=str(out), status="fail"
    )
    result = task.execute({})
    got = as_json(task.get_openlineage_facets_on_complete(None))
    assert names(got["inputs"]) == [(namespace(server), f"evals/{eval_id}/runs/{run_id}")]
    assert names(got["outputs"]) == [("file", str(out))]
    stats = got["outputs"][0]["outputFacets"]["outputStatistics"]
    assert (stats["rowCount"], stats["size"]) == (3, out.stat().st_size) == (result["count"], result["bytes"])
    facet = got["run_facets"]["aoaiEvalsRun"]
    assert facet["export"] == {
        "statusFilter": "fail",
        "format": "jsonl",
        "count": 3,
        "byStatus": {"fail": 3},
        "bytes": result["bytes"],
    }
    assert facet["passRate"] == pytest.approx(6 / 9)
    assert_facet_matches_schema(facet)


def test_export_to_xcom_has_no_output_dataset(server: FakeEvalsServer, finished: tuple[str, str]) -> None:
    eval_id, run_id = finished
    task = ExportEvalRunOutputItemsOperator(
        task_id="export", eval_id=eval_id, run_id=run_id, max_xcom_items=20
    )
    task.execute({})
    got = as_json(task.get_openlineage_facets_on_complete(None))
    assert got["outputs"] == [] and got["run_facets"]["aoaiEvalsRun"]["export"]["count"] == 9


def test_failed_export_reports_no_output(
    server: FakeEvalsServer, finished: tuple[str, str], tmp_path: Path
) -> None:
    eval_id, run_id = finished
    task = ExportEvalRunOutputItemsOperator(
        task_id="export", eval_id=eval_id, run_id=run_id, destination=str(tmp_path / "x.jsonl")
    )
    with (
        mock.patch.object(task, "_check_count", side_effect=RuntimeError("after the write")),
        pytest.raises(RuntimeError),
    ):
        task.execute({})
    got = as_json(task.get_openlineage_facets_on_complete(None))
    assert (
        got["outputs"] == [] and len(got["inputs"]) == 1 and "export" not in got["run_facets"]["aoaiEvalsRun"]
    )


# -- EvalRunCheckOperator / EvalRunBranchOperator ------------------------------------------------------------


def test_failing_check_reports_its_verdict_and_baseline(server: FakeEvalsServer) -> None:
    eval_id = str(server.add_eval(name="lineage")["id"])
    baseline = str(
        server.add_run(eval_id, RunScript(queued_seconds=0, in_progress_seconds=0, fail_every=0))["id"]
    )
    run_id = str(
        server.add_run(eval_id, RunScript(queued_seconds=0, in_progress_seconds=0, fail_every=2))["id"]
    )
    task = EvalRunCheckOperator(
        task_id="gate",
        eval_id=eval_id,
        run_id=run_id,
        min_pass_rate=0.9,
        baseline_run_id=baseline,
        max_regression=0.05,
    )
    with pytest.raises(EvalGateFailed):
        task.execute(context())
    got = as_json(task.get_openlineage_facets_on_complete(None))  # what the FAIL event carries
    ns = namespace(server)
    assert names(got["inputs"]) == [
        (ns, f"evals/{eval_id}/runs/{run_id}"),
        (ns, f"evals/{eval_id}/runs/{baseline}"),
    ]
    verdict = got["run_facets"]["aoaiEvalsRun"]["verdict"]
    assert verdict["passed"] is False and verdict["baselineRunId"] == baseline
    failing = {c["name"] for c in verdict["checks"] if not c["passed"]}
    assert "pass_rate" in failing and "regression:pass_rate" in failing
    assert all(set(c) == {"name", "value", "threshold", "passed"} for c in verdict["checks"])
    assert_facet_matches_schema(got["run_facets"]["aoaiEvalsRun"])


def test_branch_reports_passing_verdict(server: FakeEvalsServer, finished: tuple[str, str]) -> None:
    eval_id, run_id = finished
    task = EvalRunBranchOperator(
        task_id="branch",
        eval_id=eval_id,
        run_id=run_id,
        min_criterion_pass_rates={"exact match": 0.5},
        follow_task_ids_if_true="a",
        follow_task_ids_if_false="b",
    )
    assert task.choose_branch(context()) == "a"
    facet = as_json(task.get_openlineage_facets_on_complete(None))["run_facets"]["aoaiEvalsRun"]
    assert facet["verdict"]["passed"] is True and facet["runId"] == run_id
    assert facet["verdict"]["checks"] == [
        {"name": "criterion:exact match", "value": pytest.approx(6 / 9), "threshold": 0.5, "passed": True}
    ]


def test_unusable_connection_gives_no_lineage_instead_of_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_AOAI_EVALS_DEFAULT", json.dumps({"conn_type": "aoai_evals", "host": "ftp://x"})
    )
    task = EvalRunCheckOperator(task_id="gate", eval_id="eval_1", run_id="evalrun_1", min_pass_rate=0.5)
    assert task.get_openlineage_facets_on_complete(None) is None


# -- without the OpenLineage provider ----------------------------------------------------------------------


def test_without_openlineage_the_methods_return_none(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m.startswith(OPENLINEAGE_MODULES[1])]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, OPENLINEAGE_MODULES[1], None)  # `import` of it now raises ImportError
    with mock.patch.object(lineage, "namespace_of", side_effect=AssertionError("no connection read")):
        tasks: list[Any] = [
            CreateEvalRunOperator(task_id="a", eval_id="eval_1", data_source=ROWS),
            ExportEvalRunOutputItemsOperator(task_id="b", eval_id="eval_1", run_id="evalrun_1"),
            EvalRunCheckOperator(task_id="c", eval_id="eval_1", run_id="evalrun_1", min_pass_rate=0.5),
            EvalRunBranchOperator(
                task_id="d",
                eval_id="eval_1",
                run_id="evalrun_1",
                min_pass_rate=0.5,
                follow_task_ids_if_true="x",
                follow_task_ids_if_false="y",
            ),
        ]
        assert [t.get_openlineage_facets_on_complete(None) for t in tasks] == [None] * 4


BLOCKED_RUN = textwrap.dedent(
    """
    import importlib.abc, importlib.metadata, json, sys
    import importlib_metadata

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "openlineage" or name.startswith("airflow.providers.openlineage"):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked by the test)")
            return None

    sys.meta_path.insert(0, Block())

    # Not installed also means no distribution metadata: Airflow's provider discovery must not see it.
    def hiding(distributions):
        def visible(**kwargs):
            for dist in distributions(**kwargs):
                if "openlineage" not in (dist.metadata["Name"] or "").lower():
                    yield dist
        return visible

    for module in (importlib.metadata, importlib_metadata):
        module.distributions = hiding(module.distributions)
    from airflow_provider_aoai_evals.operators.eval_run import CreateEvalRunOperator
    from airflow_provider_aoai_evals.operators.output_items import ExportEvalRunOutputItemsOperator
    from airflow_provider_aoai_evals.operators.quality_gate import EvalRunBranchOperator, EvalRunCheckOperator

    eval_id, run_id = sys.argv[1], sys.argv[2]
    export = ExportEvalRunOutputItemsOperator(task_id="export", eval_id=eval_id, run_id=run_id)
    result = export.execute({})
    loaded = sorted(m for m in sys.modules if m.split(".")[0] == "openlineage" or "providers.openlineage" in m)
    print(json.dumps({"count": result["count"], "lineage": export.get_openlineage_facets_on_complete(None),
                      "loaded": loaded}))
    """
)


def test_operators_import_and_run_with_openlineage_blocked(
    server: FakeEvalsServer, finished: tuple[str, str]
) -> None:
    """A fresh interpreter where ``import openlineage`` fails, as on an install without the extra."""
    env = {**os.environ, "AIRFLOW_CONN_AOAI_EVALS_DEFAULT": connection_json(server)}
    proc = subprocess.run(
        [sys.executable, "-c", BLOCKED_RUN, *finished],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {"count": 9, "lineage": None, "loaded": []}

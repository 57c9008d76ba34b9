"""OpenLineage events of whole DAG runs: ``airflow dags test`` with the OpenLineage provider's file transport.

Each DAG runs in a fresh ``airflow dags test`` process, as a user would run it: the provider reads its
``[openlineage]`` configuration once per process (cached), so a transport set inside this pytest process
would depend on test order. The listener then emits START/COMPLETE events for every task into a JSON
Lines file, and the tests read that file back: the datasets and run facets of the COMPLETE events, and the
absence of the connection's key and of the rows of the data sources anywhere in it.

Both DAGs contain a deferred ``CreateEvalRunOperator``: its COMPLETE event comes from the operator instance
that resumed after the deferral (apache/airflow#34270).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_aoai_evals.api.auth import ApiKeyAuth
from airflow_provider_aoai_evals.api.client import EvalsClient
from airflow_provider_aoai_evals.api.models import EvalRun
from airflow_provider_aoai_evals.api.settings import ClientSettings
from airflow_provider_aoai_evals.testing import FakeEvalsServer, RunScript
from tests.support import connection_json

#: A distinctive API key: if any part of it reached an event, the whole-file search below finds it.
CANARY_KEY = "sk-canary-lineage-7f3e2a9c41d8-must-never-leave-the-connection"
ROW_MARKER = "lineage-row-marker-0c55e1"
#: A row of the nightly example DAG's inline data source.
NIGHTLY_ROW = "Chipmaker unveils faster GPU"
SCHEMA = Path(__file__).resolve().parents[2] / "docs" / "schemas" / "AoaiEvalsRunFacet.json"

pytestmark = [pytest.mark.compat, pytest.mark.integration, pytest.mark.timeout(300)]


@dataclass
class DagTestRun:
    """One ``airflow dags test`` and the OpenLineage events it emitted."""

    text: str
    events: list[dict[str, Any]]
    states: dict[str, str]

    def of(self, task_id: str, event_type: str = "COMPLETE") -> list[dict[str, Any]]:
        return [
            e
            for e in self.events
            if e["eventType"] == event_type and e["job"]["name"].rsplit(".", 1)[-1] == task_id
        ]

    def complete(self, task_id: str) -> dict[str, Any]:
        [event] = self.of(task_id)
        return event


def task_states(dag_id: str) -> dict[str, str]:
    """The task states of the newest run of ``dag_id``, from the metadata DB the subprocess wrote."""
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        run_id = session.scalars(
            select(DagRun.run_id).where(DagRun.dag_id == dag_id).order_by(DagRun.id.desc()).limit(1)
        ).one()
        tis = session.scalars(
            select(TaskInstance).where(TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id)
        ).all()
        return {ti.task_id: str(ti.state) for ti in tis}


def airflow_dags_test(
    server: FakeEvalsServer, dag_id: str, bundle: str, folder: Path, env: dict[str, str], conf: dict[str, Any]
) -> DagTestRun:
    events_file = folder / "openlineage-events.jsonl"
    run_env = {
        **os.environ,
        **env,
        "AIRFLOW_CONN_AOAI_EVALS_DEFAULT": connection_json(server),
        # The provider's own option (provider 2.x reads [openlineage] transport; a file transport with
        # append=True writes one JSON event per line into one file).
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(events_file), "append": True}
        ),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "aoai-evals-tests",
        "AIRFLOW__OPENLINEAGE__DISABLED": "False",
    }
    for name in ("OPENLINEAGE_DISABLED", "OPENLINEAGE_URL", "OPENLINEAGE_CONFIG"):
        run_env.pop(name, None)  # the client's own variables would override the transport above
    proc = subprocess.run(
        [sys.executable, "-m", "airflow", "dags", "test", dag_id, "-B", bundle, "-c", json.dumps(conf)],
        env=run_env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    assert events_file.exists(), f"no OpenLineage events were written:\n{proc.stderr[-3000:]}"
    text = events_file.read_text()
    events = [json.loads(line) for line in text.splitlines() if line.strip()]
    return DagTestRun(text=text, events=events, states=task_states(dag_id))


def names(datasets: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(d["namespace"], d["name"]) for d in datasets]


def facet_of(event: dict[str, Any]) -> dict[str, Any]:
    import jsonschema

    facet: dict[str, Any] = event["run"]["facets"]["aoaiEvalsRun"]
    body = json.loads(SCHEMA.read_text())["$defs"]["AoaiEvalsRunFacet"]["allOf"][1]
    jsonschema.validate({k: v for k, v in facet.items() if not k.startswith("_")}, body)
    return facet


def run_dataset(server: FakeEvalsServer, eval_id: str, run_id: str) -> tuple[str, str]:
    host = server.base_url.split("://", 1)[1].split("/", 1)[0]
    return (f"openai://{host}", f"evals/{eval_id}/runs/{run_id}")


def client(server: FakeEvalsServer) -> EvalsClient:
    return EvalsClient(
        ClientSettings.build(flavor="openai", base_url=server.base_url, auth=ApiKeyAuth(CANARY_KEY))
    )


def the_run(server: FakeEvalsServer) -> EvalRun:
    """The one run of the one eval on ``server``."""
    [evaluation] = list(client(server).list_evals())
    [run] = list(client(server).list_runs(evaluation.id))
    return run


def assert_nothing_secret(run: DagTestRun, *contents: str) -> None:
    assert CANARY_KEY not in run.text
    assert CANARY_KEY[:16] not in run.text  # not even a prefix of it
    for content in contents:
        assert content not in run.text


def assert_deferred(run: DagTestRun, task_id: str) -> None:
    """A deferred task starts twice (before the deferral and when it resumes) and completes once."""
    assert len(run.of(task_id, "START")) == 2
    assert len(run.of(task_id)) == 1


# -- the nightly example DAG ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nightly(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DagTestRun, FakeEvalsServer, Path]]:
    folder = tmp_path_factory.mktemp("lineage-nightly")
    with FakeEvalsServer(flavor="openai", api_key=CANARY_KEY) as server:
        server.default_script = RunScript(queued_seconds=0.3, in_progress_seconds=0.6)
        env = {
            "AOAI_EVALS_EXAMPLE_POLL_INTERVAL": "0.3",
            "AIRFLOW_VAR_AOAI_EVALS_EXPORT_ROOT": f"file://{folder / 'exports'}",
        }
        run = airflow_dags_test(server, "example_nightly_eval", "provider_examples", folder, env, {})
        yield run, server, folder


def test_nightly_run_eval_reports_its_run_after_the_deferral(nightly: Any) -> None:
    run, server, _ = nightly
    assert run.states["run_eval"] == "success"
    assert_deferred(run, "run_eval")
    created = the_run(server)
    eval_id = str(created.eval_id)
    event = run.complete("run_eval")
    assert event["inputs"] == []  # inline file_content rows are not a dataset
    assert names(event["outputs"]) == [run_dataset(server, eval_id, created.id)]
    assert event["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] == 9
    facet = facet_of(event)
    assert (facet["evalId"], facet["runId"], facet["status"]) == (eval_id, created.id, "completed")
    assert facet["reportUrl"] == created.report_url
    assert facet["passRate"] == pytest.approx(6 / 9) and facet["erroredRate"] == 0
    assert facet["counts"] == {"total": 9, "passed": 6, "failed": 3, "errored": 0, "skipped": 0}
    assert [(c["name"], c["passRate"]) for c in facet["criteria"]] == [("exact-label", pytest.approx(6 / 9))]
    assert facet["dataSource"] == {"type": "jsonl", "sourceType": "file_content"}
    external = event["run"]["facets"]["externalQuery"]
    assert external["externalQueryId"] == created.id and external["source"] == run_dataset(server, "", "")[0]


def test_nightly_export_reads_the_run_and_writes_the_file(nightly: Any) -> None:
    run, server, folder = nightly
    created = the_run(server)
    event = run.complete("export_failures")
    assert names(event["inputs"]) == [run_dataset(server, str(created.eval_id), created.id)]
    [(namespace, name)] = names(event["outputs"])
    assert (
        namespace == "file" and name.startswith(str(folder / "exports")) and name.endswith("/failures.jsonl")
    )
    assert Path(name).is_file()
    stats = event["outputs"][0]["outputFacets"]["outputStatistics"]
    assert (stats["rowCount"], stats["size"]) == (3, Path(name).stat().st_size)
    facet = facet_of(event)
    assert facet["export"]["statusFilter"] == "fail" and facet["export"]["count"] == 3
    assert facet["runId"] == created.id and facet["passRate"] == pytest.approx(6 / 9)


def test_nightly_branch_reports_the_verdict(nightly: Any) -> None:
    run, server, _ = nightly
    created = the_run(server)
    assert run.states["promote"] == "success" and run.states["alert"] == "skipped"
    event = run.complete("quality_gate")
    assert names(event["inputs"]) == [run_dataset(server, str(created.eval_id), created.id)]
    assert event["outputs"] == []
    verdict = facet_of(event)["verdict"]
    assert verdict["passed"] is True and verdict.get("baselineRunId") is None  # first night: no baseline
    assert {c["name"]: c["passed"] for c in verdict["checks"]} == {
        "pass_rate": True,
        "errored_rate": True,
        "criterion:exact-label": True,
    }


def test_nightly_events_hold_no_key_and_no_rows(nightly: Any) -> None:
    run, _, _ = nightly
    assert {e["eventType"] for e in run.events} == {"START", "COMPLETE"}
    assert_nothing_secret(run, NIGHTLY_ROW)


# -- all four operators, an uploaded dataset and a Files API source ------------------------------------------


@pytest.fixture(scope="module")
def all_operators(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[DagTestRun, FakeEvalsServer, Path, str]]:
    from tests.dags.dag_files.lineage_dags import DATASET

    folder = tmp_path_factory.mktemp("lineage-all")
    DATASET.parent.mkdir(parents=True, exist_ok=True)
    DATASET.write_text(
        "".join(json.dumps({"item": {"q": f"{ROW_MARKER}-{i}", "label": "a"}}) + "\n" for i in range(12))
    )
    with FakeEvalsServer(flavor="openai", api_key=CANARY_KEY) as server:
        server.default_script = RunScript(queued_seconds=0.3, in_progress_seconds=0.6)
        eval_id = str(server.add_eval(name="lineage")["id"])
        conf = {"eval_id": eval_id, "file_id": "file-preuploaded01", "export_root": f"file://{folder}"}
        run = airflow_dags_test(server, "lineage_all_operators", "provider_test_dags", folder, {}, conf)
        yield run, server, folder, eval_id


def runs_by_task(server: FakeEvalsServer, eval_id: str) -> dict[str, str]:
    """Task id -> the id of the run it started (from the idempotency key in the run's metadata)."""
    return {
        (r.metadata or {})["airflow_idempotency_key"].split("/")[1]: r.id
        for r in client(server).list_runs(eval_id)
    }


def test_all_operators_ran_as_expected(all_operators: Any) -> None:
    run, _, _, _ = all_operators
    assert run.states == {
        "run_from_storage": "success",
        "run_from_file": "success",
        "export": "success",
        "check": "success",
        "branch": "success",
        "promote": "skipped",
        "hold": "success",
    }


def test_uploaded_dataset_is_the_input_and_its_file_id_survives_the_deferral(all_operators: Any) -> None:
    run, server, _, eval_id = all_operators
    from tests.dags.dag_files.lineage_dags import DATASET

    assert_deferred(run, "run_from_storage")
    [uploaded] = server.files
    created = runs_by_task(server, eval_id)["run_from_storage"]
    event = run.complete("run_from_storage")
    assert names(event["inputs"]) == [("file", str(DATASET))]
    assert names(event["outputs"]) == [run_dataset(server, eval_id, created)]
    facet = facet_of(event)
    assert facet["dataSource"] == {
        "type": "jsonl",
        "sourceType": "file_id",
        "fileId": uploaded["id"],
        "uploaded": True,
    }
    assert (facet["runId"], facet["status"], facet["counts"]["total"]) == (created, "completed", 12)


def test_files_api_source_is_named_by_its_file_id(all_operators: Any) -> None:
    run, server, _, eval_id = all_operators
    created = runs_by_task(server, eval_id)["run_from_file"]
    event = run.complete("run_from_file")
    namespace = run_dataset(server, "", "")[0]
    assert names(event["inputs"]) == [(namespace, "files/file-preuploaded01")]
    assert names(event["outputs"]) == [run_dataset(server, eval_id, created)]
    assert facet_of(event)["dataSource"]["fileId"] == "file-preuploaded01"


def test_export_writes_under_the_export_root(all_operators: Any) -> None:
    run, server, folder, eval_id = all_operators
    created = runs_by_task(server, eval_id)["run_from_storage"]
    event = run.complete("export")
    assert names(event["inputs"]) == [run_dataset(server, eval_id, created)]
    assert names(event["outputs"]) == [("file", str(folder / f"{created}.jsonl"))]
    assert event["outputs"][0]["outputFacets"]["outputStatistics"]["rowCount"] == 12
    assert facet_of(event)["export"]["byStatus"] == {"pass": 8, "fail": 4}


def test_check_reads_the_run_and_its_baseline(all_operators: Any) -> None:
    run, server, _, eval_id = all_operators
    by_task = runs_by_task(server, eval_id)
    event = run.complete("check")
    assert names(event["inputs"]) == [
        run_dataset(server, eval_id, by_task["run_from_file"]),
        run_dataset(server, eval_id, by_task["run_from_storage"]),
    ]
    verdict = facet_of(event)["verdict"]
    assert verdict["passed"] is True and verdict["baselineRunId"] == by_task["run_from_storage"]
    assert {c["name"] for c in verdict["checks"]} >= {"pass_rate", "regression:pass_rate"}


def test_failing_branch_gate_reports_the_failed_check(all_operators: Any) -> None:
    run, server, _, eval_id = all_operators
    event = run.complete("branch")
    facet = facet_of(event)
    assert facet["runId"] == runs_by_task(server, eval_id)["run_from_storage"]
    assert facet["verdict"]["passed"] is False
    [check] = facet["verdict"]["checks"]
    assert (check["name"], check["passed"], check["threshold"]) == ("pass_rate", False, 0.99)
    assert check["value"] == pytest.approx(8 / 12)


def test_all_operators_events_hold_no_key_and_no_rows(all_operators: Any) -> None:
    run, _, _, _ = all_operators
    assert_nothing_secret(run, ROW_MARKER)

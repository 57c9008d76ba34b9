"""The run operators end to end through ``dag.test()`` against FakeEvalsServer."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_aoai_evals.links import EvalRunReportLink
from airflow_provider_aoai_evals.testing import FakeEvalsServer, Fault, RunScript
from tests.support import served_as_default_connection

from .conftest import HERE, load_dagbag, xcom_value

KEY = "sk-run-dags-key"
pytestmark = pytest.mark.compat
CREATE = r"^/evals/[^/]+/runs$"


@pytest.fixture(scope="module")
def dagbag() -> Any:
    return load_dagbag(HERE / "dag_files")


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEvalsServer]:
    with served_as_default_connection(monkeypatch, KEY) as srv:
        srv.default_script = RunScript(queued_seconds=0.3, in_progress_seconds=0.6)
        yield srv


@pytest.fixture
def eval_id(server: FakeEvalsServer) -> str:
    return str(server.add_eval(name="e")["id"])


def run(dagbag: Any, dag_id: str, **conf: Any) -> tuple[Any, dict[str, str]]:
    dag_run = dagbag.get_dag(dag_id).test(run_conf=conf)
    states = {}
    for ti in dag_run.get_task_instances():
        states[ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"] = str(ti.state)
    return dag_run, states


@pytest.mark.parametrize("dag_id", ["run_create_deferrable", "run_create_polling"])
def test_create_wait_completed(dagbag: Any, server: FakeEvalsServer, eval_id: str, dag_id: str) -> None:
    dag_run, states = run(dagbag, dag_id, eval_id=eval_id)
    assert states == {"create": "success"}
    assert server.count("POST", CREATE) == 1
    [created] = [r for r in server.requests if r.method == "POST" and r.api_path.endswith("/runs")]
    summary = xcom_value(dag_run, "create")
    assert summary["status"] == "completed" and summary["run_id"] == xcom_value(dag_run, "create", "run_id")
    run_obj = server.get_run(summary["run_id"])
    # The idempotency key is the task instance's, with the try number.
    assert run_obj["metadata"]["airflow_idempotency_key"].startswith(
        f"{dag_id}/create/{dag_run.run_id}/-1|try="
    )
    if dag_id == "run_create_deferrable":
        # Jinja rendered Airflow's expressions and left the service's placeholders alone.
        row = created.json["data_source"]["source"]["content"][0]["item"]
        assert row["question"] == "q3" and re.fullmatch(r"\d{4}-\d{2}-\d{2}", row["label"]), row
        assert run_obj["metadata"]["git_sha"] == "abc123"
    else:
        template = created.json["data_source"]["input_messages"]["template"][0]["content"]
        assert template == "Classify {{item.headline}}"


def test_report_link_and_xcom_pushed(dagbag: Any, server: FakeEvalsServer, eval_id: str) -> None:
    dag_run, _ = run(dagbag, "run_create_deferrable", eval_id=eval_id)
    run_id = xcom_value(dag_run, "create", "run_id")
    report_url = server.get_run(run_id)["report_url"]
    assert xcom_value(dag_run, "create", "report_url") == report_url
    assert xcom_value(dag_run, "create", EvalRunReportLink().xcom_key) == report_url


def test_no_wait_returns_at_once(dagbag: Any, server: FakeEvalsServer, eval_id: str) -> None:
    server.default_script = RunScript(queued_seconds=600)
    dag_run, states = run(dagbag, "run_create_no_wait", eval_id=eval_id)
    assert states == {"create": "success"} and xcom_value(dag_run, "create")["status"] == "queued"


def test_mapped_create_starts_three_runs(dagbag: Any, server: FakeEvalsServer, eval_id: str) -> None:
    dag_run, states = run(dagbag, "run_create_mapped", eval_id=eval_id)
    assert states == {"create[0]": "success", "create[1]": "success", "create[2]": "success"}
    assert server.count("POST", CREATE) == 3
    keys = {
        server.get_run(r["id"])["metadata"]["airflow_idempotency_key"].split("|")[0]
        for r in _runs(server, eval_id)
    }
    assert keys == {f"run_create_mapped/create/{dag_run.run_id}/{i}" for i in range(3)}


def _runs(server: FakeEvalsServer, eval_id: str) -> list[dict[str, Any]]:
    import requests

    resp = requests.get(
        f"{server.api_root}/evals/{eval_id}/runs?limit=100",
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=10,
    )
    return list(resp.json()["data"])


def test_retry_after_death_mid_wait_reattaches(dagbag: Any, server: FakeEvalsServer, eval_id: str) -> None:
    # Long enough to still be running when the retry starts (Airflow 3.1's dag.test() takes seconds to retry).
    server.default_script = RunScript(queued_seconds=2.0, in_progress_seconds=6.0)
    _, states = run(dagbag, "run_create_retry", eval_id=eval_id)
    assert states == {"create": "success"}
    assert server.count("POST", CREATE) == 1  # the second try found the first try's run


def test_retry_after_finished_run_starts_new_one(dagbag: Any, server: FakeEvalsServer, eval_id: str) -> None:
    # The first try's run is over before the second try looks: a finished run is not reused by default.
    server.default_script = RunScript(queued_seconds=0, in_progress_seconds=0)
    _, states = run(dagbag, "run_create_retry", eval_id=eval_id)
    assert states == {"create": "success"}
    assert server.count("POST", CREATE) == 2


def test_ambiguous_create_failure_leaves_one_run(dagbag: Any, server: FakeEvalsServer, eval_id: str) -> None:
    server.inject(Fault(kind="drop_after", method="POST", path_regex=r"/runs$"))
    _, states = run(dagbag, "run_create_deferrable", eval_id=eval_id)
    assert states == {"create": "success"}
    assert server.count("POST", CREATE) == 1 and len(_runs(server, eval_id)) == 1


def test_create_from_object_storage_uploads_file(dagbag: Any, server: FakeEvalsServer, eval_id: str) -> None:
    from tests.dags.dag_files.run_dags import DATASET

    DATASET.parent.mkdir(parents=True, exist_ok=True)
    DATASET.write_text("".join(json.dumps({"item": {"i": i}}) + "\n" for i in range(25)))
    dag_run, states = run(dagbag, "run_create_from_storage", eval_id=eval_id)
    assert states == {"create": "success"}
    [uploaded] = server.files
    assert uploaded["purpose"] == "evals" and uploaded["bytes"] == DATASET.stat().st_size
    [created] = [r for r in server.requests if r.method == "POST" and r.api_path.endswith("/runs")]
    assert created.json["data_source"] == {
        "type": "jsonl",
        "source": {"type": "file_id", "id": uploaded["id"]},
    }
    assert xcom_value(dag_run, "create")["counts"]["total"] == 25


def test_get_run(dagbag: Any, server: FakeEvalsServer, eval_id: str) -> None:
    run_id = server.add_run(eval_id, RunScript(queued_seconds=0, in_progress_seconds=0, output_items=4))["id"]
    dag_run, states = run(dagbag, "run_get", eval_id=eval_id, run_id=run_id)
    assert states == {"get": "success", "get_full": "success"}
    assert xcom_value(dag_run, "get")["counts"]["total"] == 4
    full = xcom_value(dag_run, "get_full")
    assert full["id"] == run_id and "data_source" not in full


def test_cancel_queued_run(dagbag: Any, server: FakeEvalsServer, eval_id: str) -> None:
    run_id = server.add_run(eval_id, RunScript(queued_seconds=600))["id"]
    dag_run, states = run(dagbag, "run_cancel", eval_id=eval_id, run_id=run_id)
    assert states == {"cancel": "success"}
    assert (
        server.get_run(run_id)["status"] == "canceled"
        and xcom_value(dag_run, "cancel")["status"] == "canceled"
    )


def test_cancel_finished_run_is_not_an_error(dagbag: Any, server: FakeEvalsServer, eval_id: str) -> None:
    run_id = server.add_run(eval_id, RunScript(queued_seconds=0, in_progress_seconds=0))["id"]
    dag_run, states = run(dagbag, "run_cancel", eval_id=eval_id, run_id=run_id)
    assert states == {"cancel": "success"} and xcom_value(dag_run, "cancel")["status"] == "completed"
    assert server.count("POST", r"/runs/[^/]+(/cancel)?$") == 0


def test_create_eval_then_reuse(dagbag: Any, server: FakeEvalsServer) -> None:
    first, states = run(dagbag, "eval_create_or_reuse")
    second, _ = run(dagbag, "eval_create_or_reuse")
    assert states == {"create_eval": "success"}
    assert xcom_value(first, "create_eval") == xcom_value(second, "create_eval")
    assert server.count("POST", r"^/evals$") == 1
    created = next(r for r in server.requests if r.method == "POST" and r.api_path == "/evals")
    assert created.json["testing_criteria"][0]["input"] == "{{sample.output_text}}"

"""CreateEvalRunOperator uploads large inline rows through the Files API and names them by file id."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_aoai_evals.api.errors import EvalsConfigError
from airflow_provider_aoai_evals.hooks.evals import EvalsHook
from airflow_provider_aoai_evals.operators._dataset_upload import DEFAULT_INLINE_UPLOAD_THRESHOLD, as_jsonl
from airflow_provider_aoai_evals.operators.eval_run import CreateEvalRunOperator
from airflow_provider_aoai_evals.testing import FakeEvalsServer, RunScript
from tests.support import served_as_default_connection

KEY = "sk-inline-upload-canary-41d7"


class FakeTI:
    dag_id, task_id, run_id, map_index, try_number = "inline_unit", "create", "manual__1", -1, 1

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def context() -> Any:
    """A task context outside a DAG run: only what the operator reads."""
    return {"ti": FakeTI()}


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEvalsServer]:
    with served_as_default_connection(monkeypatch, KEY) as srv:
        srv.default_script = RunScript(queued_seconds=0, in_progress_seconds=0)
        yield srv


def rows(n: int, width: int = 40) -> list[dict[str, Any]]:
    return [{"item": {"question": f"q{i}-" + "x" * width, "answer": str(i)}} for i in range(n)]


def jsonl_source(content: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "jsonl", "source": {"type": "file_content", "content": content}}


def run_on_server(server: FakeEvalsServer, eval_id: str, run_id: str) -> dict[str, Any]:
    return EvalsHook().get_conn().get_run(eval_id, run_id).model_dump(mode="json")


def test_rows_above_the_threshold_are_uploaded_and_named_by_file_id(server: FakeEvalsServer) -> None:
    eval_id = str(server.add_eval(name="inline")["id"])
    content = rows(30)
    body = as_jsonl(content)
    task = CreateEvalRunOperator(
        task_id="create",
        eval_id=eval_id,
        data_source=jsonl_source(content),
        inline_upload_threshold=len(body) - 1,
    )
    summary = task.execute(context())
    [uploaded] = server.files
    assert uploaded["purpose"] == "evals" and uploaded["bytes"] == len(body)
    assert uploaded["filename"] == "create.jsonl"
    run = run_on_server(server, eval_id, summary["run_id"])
    assert run["data_source"]["source"] == {"type": "file_id", "id": uploaded["id"]}
    # The fake grades the file's rows: every row became an item, with its own content.
    items = list(EvalsHook().get_conn().list_output_items(eval_id, summary["run_id"]))
    assert [i.datasource_item for i in items] == [r["item"] for r in content]
    assert summary["counts"]["total"] == 30


def test_the_upload_is_logged(server: FakeEvalsServer) -> None:
    """In a child process with INFO task logs (this suite runs Airflow at WARNING)."""
    eval_id = str(server.add_eval(name="inline")["id"])
    source = jsonl_source(rows(30))
    size = len(as_jsonl(source["source"]["content"]))
    code = (
        "from airflow_provider_aoai_evals.operators.eval_run import CreateEvalRunOperator as Op\n"
        "class TI:\n"
        "    dag_id, task_id, run_id, map_index, try_number = 'd', 'create', 'r', -1, 1\n"
        "    def xcom_push(self, key, value): pass\n"
        f"Op(task_id='create', eval_id={eval_id!r}, data_source={source!r}, inline_upload_threshold=100)"
        ".execute({'ti': TI()})\n"
    )
    env = {**os.environ, "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    text = done.stdout + done.stderr
    assert done.returncode == 0, text[-3000:]
    [uploaded] = server.files
    assert f"30 inline rows are {size} bytes as JSONL, above inline_upload_threshold (100)" in text
    assert f"Uploaded the inline rows as file {uploaded['id']}" in text
    assert KEY not in text


def test_rows_at_or_below_the_threshold_stay_inline(server: FakeEvalsServer) -> None:
    eval_id = str(server.add_eval(name="inline")["id"])
    content = rows(30)
    task = CreateEvalRunOperator(
        task_id="create",
        eval_id=eval_id,
        data_source=jsonl_source(content),
        inline_upload_threshold=len(as_jsonl(content)),
    )
    summary = task.execute(context())
    assert server.files == []
    source = run_on_server(server, eval_id, summary["run_id"])["data_source"]["source"]
    assert source["type"] == "file_content" and len(source["content"]) == 30


def test_the_default_uploads_above_one_mebibyte_and_zero_never_uploads(server: FakeEvalsServer) -> None:
    eval_id = str(server.add_eval(name="inline")["id"])
    large = rows(6000, width=200)  # about 1.4 MB as JSONL
    assert len(as_jsonl(large)) > DEFAULT_INLINE_UPLOAD_THRESHOLD
    small = rows(1000, width=200)
    assert len(as_jsonl(small)) < DEFAULT_INLINE_UPLOAD_THRESHOLD
    CreateEvalRunOperator(task_id="small", eval_id=eval_id, data_source=jsonl_source(small)).execute(
        context()
    )
    assert server.files == []
    CreateEvalRunOperator(
        task_id="off", eval_id=eval_id, data_source=jsonl_source(large), inline_upload_threshold=0
    ).execute(context())
    assert server.files == []
    summary = CreateEvalRunOperator(
        task_id="large", eval_id=eval_id, data_source=jsonl_source(large)
    ).execute(context())
    [uploaded] = server.files
    source = run_on_server(server, eval_id, summary["run_id"])["data_source"]["source"]
    assert source == {"type": "file_id", "id": uploaded["id"]}


def test_a_completions_source_keeps_its_other_keys(server: FakeEvalsServer) -> None:
    eval_id = str(server.add_eval(name="inline")["id"])
    content = rows(20)
    data_source: dict[str, Any] = {
        "type": "completions",
        "model": "gpt-4o-mini",
        "input_messages": {
            "type": "template",
            "template": [{"role": "user", "content": "{{item.question}}"}],
        },
        "source": {"type": "file_content", "content": content},
    }
    task = CreateEvalRunOperator(
        task_id="create", eval_id=eval_id, data_source=data_source, inline_upload_threshold=10
    )
    summary = task.execute(context())
    [uploaded] = server.files
    sent = run_on_server(server, eval_id, summary["run_id"])["data_source"]
    assert sent["source"] == {"type": "file_id", "id": uploaded["id"]}
    assert sent["input_messages"] == data_source["input_messages"]
    assert sent["model"] == "gpt-4o-mini" and sent["type"] == "completions"
    assert data_source["source"]["type"] == "file_content"  # the task's own template field is untouched


@pytest.mark.parametrize("bad", [-1, True, 1.5, "1000", None])
def test_a_bad_threshold_is_refused_naming_the_parameter(bad: Any) -> None:
    with pytest.raises(EvalsConfigError, match="inline_upload_threshold"):
        CreateEvalRunOperator(
            task_id="create", eval_id="eval_1", data_source=jsonl_source(rows(1)), inline_upload_threshold=bad
        )


def test_lineage_names_the_uploaded_file_and_never_the_rows(server: FakeEvalsServer) -> None:
    eval_id = str(server.add_eval(name="inline")["id"])
    marker = "row-marker-inline-upload-77c1"
    content = [{"item": {"question": marker}}] * 5
    task = CreateEvalRunOperator(
        task_id="create", eval_id=eval_id, data_source=jsonl_source(content), inline_upload_threshold=10
    )
    task.execute(context())
    [uploaded] = server.files
    got = task.get_openlineage_facets_on_complete(None)
    if got is None:
        pytest.skip("the OpenLineage provider is not installed")
    from openlineage.client.serde import Serde

    inputs = [Serde.to_dict(d) for d in got.inputs]
    assert [d["name"] for d in inputs] == [f"files/{uploaded['id']}"]
    facet = Serde.to_dict(got.run_facets["aoaiEvalsRun"])
    assert facet["dataSource"] == {
        "type": "jsonl",
        "sourceType": "file_content",
        "fileId": uploaded["id"],
        "uploaded": True,
    }
    assert marker not in json.dumps(inputs) + json.dumps(facet)

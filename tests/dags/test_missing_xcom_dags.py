"""Ids templated from a task that does not exist: each task fails naming the parameter, and nothing is sent.

``{{ ti.xcom_pull(task_ids='typo', key='run_id') }}`` renders as the text ``'None'``, which is a well-formed
id; before, it was sent and the task log showed only the API's 404 for run ``None``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_aoai_evals.testing import FakeEvalsServer
from tests.dags.dag_files.missing_xcom_dags import MISSING_EVAL_ID, MISSING_RUN_ID
from tests.support import served_as_default_connection

from .conftest import HERE, load_dagbag

KEY = "sk-missing-xcom-key"
pytestmark = pytest.mark.compat


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEvalsServer]:
    with served_as_default_connection(monkeypatch, KEY) as srv:
        yield srv


def test_ids_pulled_from_a_missing_task_fail_before_any_request(
    server: FakeEvalsServer, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    eval_id = server.add_eval(name="e")["id"]
    dag = load_dagbag(HERE / "dag_files").get_dag("ids_pulled_from_a_missing_task")
    dag_run = dag.test(run_conf={"eval_id": eval_id, "run_id": "evalrun_1", "out": str(tmp_path / "x.jsonl")})
    out, err = capfd.readouterr()
    log = out + err
    states = {(ti.task_id, ti.map_index): str(ti.state) for ti in dag_run.get_task_instances()}
    assert set(states.values()) == {"failed"}, states
    assert server.count() == 0, [(r.method, r.path) for r in server.requests]
    assert not list(tmp_path.iterdir())
    expected: dict[str, Any] = {
        "eval_id": MISSING_EVAL_ID,
        "run_id": MISSING_RUN_ID,
        "baseline_run_id": "{{ ti.xcom_pull(task_ids='last_good_run', key='run_id') }}",
    }
    # get, both mapped gets, cancel, export, gate and wait: each quotes the template (only then is it
    # "rendered as").
    assert log.count("Invalid 'run_id': rendered as 'None'") >= 7
    for parameter, template in expected.items():
        assert f"Invalid '{parameter}': rendered as 'None': the template pulled nothing" in log, log[-4000:]
        assert template in log
    assert "Invalid 'run_id': rendered as '': the template pulled nothing" in log
    assert "{{ params.unset_run }}" in log

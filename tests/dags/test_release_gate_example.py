"""``example_release_gate`` end to end with ``dag.test()``: promote, block on a significant regression, and
send an inconclusive verdict to a person, whose answer goes through Airflow's own human-in-the-loop REST API
(the route the *Required Actions* page calls), logged in through the real auth manager.

On Airflow 3.3 the approval task parks in ``awaiting_input`` and the API resumes it. On 3.1 it defers to the
standard provider's ``HITLTrigger``, which ``dag.test()`` cannot run: 3.1's in-process supervisor has no answer
to the trigger's ``GetHITLDetailResponse`` request (it gets ``None`` and fails). The review path on 3.1 runs in
the end-to-end suite instead, on a real triggerer (e2e/tests/test_2_airflow31.py).
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow import __version__ as airflow_version
from packaging.version import Version
from scipy.stats import binomtest

from airflow_provider_aoai_evals.hooks.evals import EvalsHook
from airflow_provider_aoai_evals.testing import FakeEvalsServer, RunScript
from tests.support import login

from .conftest import load_dagbag, xcom_value

EXAMPLES = Path(__file__).resolve().parents[2] / "example_dags"
DAG_ID = "example_release_gate"
KEY = "sk-release-gate-key"

pytestmark = pytest.mark.compat


@pytest.fixture
def airflow_api(core_app: Any) -> Any:
    """A client of Airflow's core API app, logged in as the simple auth manager's admin."""
    from fastapi.testclient import TestClient

    client = TestClient(core_app)
    client.headers["Authorization"] = f"Bearer {login(core_app, 'admin')}"
    return client


class Reviewer(threading.Thread):
    """A person at the Required Actions page: answers each open request of the DAG once its task waits."""

    def __init__(self, api: Any, choice: str) -> None:
        super().__init__(daemon=True)
        self.api, self.choice = api, choice
        self.asked: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.3):
            listed = self.api.get(
                f"/api/v2/dags/{DAG_ID}/dagRuns/~/hitlDetails", params={"response_received": False}
            )
            if listed.status_code != 200:
                self.errors.append(f"list: {listed.status_code} {listed.text}")
                return
            for detail in listed.json()["hitl_details"]:
                ti = detail["task_instance"]
                if ti["state"] not in ("awaiting_input", "deferred"):
                    continue  # written, but the task is not waiting yet
                path = (
                    f"/api/v2/dags/{DAG_ID}/dagRuns/{ti['dag_run_id']}"
                    f"/taskInstances/{ti['task_id']}/{ti['map_index']}/hitlDetails"
                )
                answered = self.api.patch(path, json={"chosen_options": [self.choice], "params_input": {}})
                if answered.status_code != 200:
                    self.errors.append(f"answer: {answered.status_code} {answered.text}")
                    return
                self.asked.append(detail)

    def __enter__(self) -> Reviewer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.join(10)
        assert not self.errors, self.errors


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeEvalsServer]:
    with FakeEvalsServer(flavor="openai", api_key=KEY) as srv:
        conn = {"conn_type": "aoai_evals", "host": srv.base_url, "password": KEY}
        monkeypatch.setenv("AIRFLOW_CONN_AOAI_EVALS_DEFAULT", json.dumps(conn))
        monkeypatch.setenv("AOAI_EVALS_EXAMPLE_POLL_INTERVAL", "0.2")
        monkeypatch.setenv("AIRFLOW_VAR_AOAI_EVALS_EXPORT_ROOT", f"file://{tmp_path}")
        yield srv


def golden_set(n: int) -> str:
    """Upload ``n`` rows as the golden set; its file id is what the DAG is given."""
    rows = b"".join(
        json.dumps({"item": {"headline": f"headline {i}", "label": "News"}}).encode() + b"\n"
        for i in range(n)
    )
    client = EvalsHook().get_conn()
    return client.upload_file(lambda: io.BytesIO(rows), filename="golden.jsonl", size=len(rows)).id


def release(
    server: FakeEvalsServer, file_id: str, outcomes: list[str], model: str
) -> tuple[dict[str, str], Any]:
    """One DAG run of the candidate ``model`` whose items score ``outcomes``."""
    server.default_script = RunScript(queued_seconds=0, in_progress_seconds=0.3, outcomes=[*outcomes])
    dag = load_dagbag(EXAMPLES).get_dag(DAG_ID)
    dag_run = dag.test(run_conf={"dataset_file_id": file_id, "candidate_model": model})
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}, dag_run


def test_first_release_promotes_then_a_significant_regression_is_blocked(
    server: FakeEvalsServer, airflow_api: Any, tmp_path: Path
) -> None:
    file_id = golden_set(200)
    with Reviewer(airflow_api, "Approve") as reviewer:
        states, dag_run = release(server, file_id, ["pass"] * 180 + ["fail"] * 20, "model-a")
        # No baseline yet: nothing to compare, the thresholds decide on the interval (90%, 95% CI 85-94%).
        assert states == {
            "ensure_eval": "success", "run_eval": "success", "compare": "skipped", "gate": "success",
            "release": "success", "block_release": "skipped", "review": "skipped", "promote": "success",
        }  # fmt: skip
        assert xcom_value(dag_run, "gate", "verdict")["outcome"] == "passed"

        # 30 of the 180 items that passed now fail, none the other way: 15 points down, p far below 0.05.
        states, dag_run = release(server, file_id, ["fail"] * 30 + ["pass"] * 150 + ["fail"] * 20, "model-b")
        assert not reviewer.asked
    assert states["gate"] == "success" and states["block_release"] == "failed"
    assert (states["release"], states["review"], states["promote"]) == ("skipped", "skipped", "skipped")
    assert str(dag_run.state) == "failed"
    check = next(
        c for c in xcom_value(dag_run, "gate", "verdict")["checks"] if c["name"] == "regression:pass_rate"
    )
    assert check["outcome"] == "failed" and check["evidence"]["test"] == "mcnemar-exact"
    assert (check["evidence"]["pass_to_fail"], check["evidence"]["fail_to_pass"]) == (30, 0)
    assert check["evidence"]["p_value"] == pytest.approx(binomtest(0, 30, 0.5).pvalue)
    comparison = xcom_value(dag_run, "compare")
    assert comparison["paired"] is True and comparison["flips"] == 30
    flips = [
        json.loads(line)
        for line in Path(comparison["flips_path"].removeprefix("file://")).read_text().splitlines()
    ]
    assert Path(comparison["flips_path"].removeprefix("file://")).is_relative_to(tmp_path)
    assert [f["datasource_item_id"] for f in flips] == list(range(30))
    assert {f["direction"] for f in flips} == {"pass_to_fail"}


@pytest.mark.skipif(
    Version(airflow_version) < Version("3.3"),
    reason="dag.test() cannot run HITLTrigger on Airflow 3.1 (see above)",
)
@pytest.mark.parametrize(("choice", "promoted"), [("Approve", "success"), ("Reject", "skipped")])
def test_an_inconclusive_drop_is_decided_by_a_person(
    server: FakeEvalsServer, airflow_api: Any, choice: str, promoted: str
) -> None:
    file_id = golden_set(50)
    baseline = ["pass"] * 45 + ["fail"] * 5
    # 3 pass->fail and 1 fail->pass: a 4-point drop past max_regression=0.02, but p = 0.625: noise or not?
    candidate = ["fail"] * 3 + ["pass"] * 42 + ["pass"] + ["fail"] * 4
    with Reviewer(airflow_api, choice) as reviewer:
        assert release(server, file_id, baseline, "model-a")[0]["promote"] == "success"
        states, dag_run = release(server, file_id, candidate, "model-b")
    assert (states["gate"], states["release"], states["block_release"]) == ("success", "skipped", "skipped")
    assert states["review"] == "success" and states["promote"] == promoted
    assert str(dag_run.state) == "success"
    verdict = xcom_value(dag_run, "gate", "verdict")
    assert verdict["outcome"] == "inconclusive"

    (asked,) = reviewer.asked  # one question, for the candidate only
    assert asked["task_instance"]["task_id"] == "review" and asked["options"] == ["Approve", "Reject"]
    assert asked["subject"] == "Release model-b? The eval cannot tell yet."
    comparison = xcom_value(dag_run, "compare")
    regression = next(c for c in verdict["checks"] if c["name"] == "regression:pass_rate")
    assert f"- **inconclusive**: {regression['detail']}" in asked["body"]
    assert f"Items that flipped: 4, listed in `{comparison['flips_path']}`." in asked["body"]
    # What was recorded, read back as the UI does (a rejection skips downstream, so there is no return XCom).
    ti = asked["task_instance"]
    path = f"/api/v2/dags/{DAG_ID}/dagRuns/{ti['dag_run_id']}/taskInstances/review/-1/hitlDetails"
    answer = airflow_api.get(path).json()
    assert answer["chosen_options"] == [choice] and answer["responded_by_user"]["name"] == "admin"

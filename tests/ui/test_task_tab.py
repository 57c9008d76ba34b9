"""The "Eval run" tab of a compare task and of an evidence gate, after a real ``dag.test()``."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from airflow_provider_aoai_evals.testing import RunScript

from .conftest import KEY
from .html_dom import by_class

pytestmark = pytest.mark.compat

DAGS = Path(__file__).resolve().parent / "dag_files"
GRADERS = [
    {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}",
     "reference": "{{item.label}}", "operation": "eq"},
]  # fmt: skip


def load_dag(dag_id: str) -> Any:
    try:
        bag = importlib.import_module("airflow.dag_processing.dagbag").DagBag(str(DAGS))
    except ImportError:  # Airflow 3.1
        bag = importlib.import_module("airflow.models.dagbag").DagBag(str(DAGS), include_examples=False)
    assert not bag.import_errors, bag.import_errors
    return bag.get_dag(dag_id)


def two_runs(server, baseline: list[str], candidate: list[str]) -> dict[str, str]:
    ev = server.add_eval(name="tab", testing_criteria=GRADERS)
    rows = [{"item": {"label": "x", "i": i}} for i in range(len(baseline))]
    source = {"type": "jsonl", "source": {"type": "file_content", "content": rows}}
    ids = {"eval_id": ev["id"]}
    for key, outcomes in (("baseline_run_id", baseline), ("run_id", candidate)):
        script = RunScript(queued_seconds=0, in_progress_seconds=0, outcomes=[*outcomes])
        ids[key] = server.add_run(ev["id"], script, data_source=source)["id"]
    return ids


def expected_flips(baseline: list[str], candidate: list[str]) -> dict[int, str]:
    return {
        i: "pass_to_fail" if b == "pass" else "fail_to_pass"
        for i, (b, c) in enumerate(zip(baseline, candidate, strict=True))
        if b != c
    }


def tab_url(dag_run: Any, task_id: str, *, encoded: bool) -> str:
    # The UI leaves {MAP_INDEX} as it is for a task that is not mapped; 3.3 encodes the run id, 3.1 does not.
    run_id = quote(dag_run.run_id, safe="") if encoded else dag_run.run_id
    return f"/aoai-evals/ti/{dag_run.dag_id}/{task_id}/%7BMAP_INDEX%7D/{run_id}"


@pytest.fixture
def tab_run(server):
    baseline = ["pass"] * 30 + ["fail"] * 10
    candidate = ["fail"] * 8 + ["pass"] * 22 + ["pass"] * 1 + ["fail"] * 9
    ids = two_runs(server, baseline, candidate)
    dag_run = load_dag("ui_tab_dag").test(run_conf=ids)
    return dag_run, ids, expected_flips(baseline, candidate)


@pytest.mark.parametrize("encoded", [True, False], ids=["3.3-href", "3.1-href"])
def test_the_compare_tab_shows_the_flips_both_ways_and_the_p_value(tab_run, admin, encoded):
    dag_run, ids, flips = tab_run
    answer = admin.get(tab_url(dag_run, "compare", encoded=encoded))
    assert answer.status_code == 200, answer.text
    (figures,) = by_class(answer.text, "figures", "dl")
    assert figures.attrs["data-source"] == "xcom"
    assert int(figures.attrs["data-pass-to-fail"]) == 8
    assert int(figures.attrs["data-fail-to-pass"]) == 1
    assert float(figures.attrs["data-p-value"]) == pytest.approx(20 / 512)
    rows = by_class(answer.text, "flip", "tr")
    assert {int(r.attrs["data-datasource-item-id"]): r.attrs["data-direction"] for r in rows} == flips
    for row in rows:
        cells = [c for c in row.children if c.tag == "td"]
        item_input, before, after = (c.text for c in cells[3:6])
        assert f'"i": {row.attrs["data-datasource-item-id"]}' in item_input
        assert before and after and before != after
    (summary,) = by_class(answer.text, "summary", "section")
    assert summary.attrs["data-run-id"] == ids["run_id"]
    assert KEY not in answer.text


def test_the_gate_tab_shows_its_verdict_and_the_comparison(tab_run, admin):
    dag_run, _ids, flips = tab_run
    answer = admin.get(tab_url(dag_run, "gate", encoded=True))
    assert answer.status_code == 200, answer.text
    (verdict,) = by_class(answer.text, "verdict", "section")
    assert verdict.attrs["data-outcome"] == "failed"  # 8 vs 1 flips, p = 0.039 < 0.05
    assert by_class(answer.text, "check", "tr")
    rows = by_class(answer.text, "flip", "tr")
    assert {int(r.attrs["data-datasource-item-id"]) for r in rows} == set(flips)


def test_at_most_twenty_flips_are_shown_and_all_are_counted(server, admin):
    baseline = ["pass"] * 60
    candidate = ["fail"] * 45 + ["pass"] * 15
    dag_run = load_dag("ui_tab_dag").test(run_conf=two_runs(server, baseline, candidate))
    answer = admin.get(tab_url(dag_run, "compare", encoded=True))
    assert answer.status_code == 200
    rows = by_class(answer.text, "flip", "tr")
    assert len(rows) == 20
    assert "Flipped items (45, the first 20 shown)" in answer.text


def test_a_viewer_sees_the_xcom_figures_but_no_items(tab_run, viewer, server):
    dag_run, _ids, _flips = tab_run
    sent = server.count()
    answer = viewer.get(tab_url(dag_run, "compare", encoded=True))
    assert answer.status_code == 200
    assert by_class(answer.text, "figures", "dl")
    assert not by_class(answer.text, "flip", "tr")
    assert "No access to the connection" in answer.text
    assert server.count() == sent


def test_a_task_without_eval_xcoms_says_so(admin, server):
    answer = admin.get("/aoai-evals/ti/no_such_dag/t/-1/manual__x")
    assert answer.status_code == 200
    assert by_class(answer.text, "empty", "p")


def test_the_evals_page_marks_the_run_the_gate_failed(tab_run, admin):
    _dag_run, ids, _flips = tab_run
    answer = admin.get(f"/aoai-evals/connections/aoai_evals_default/evals/{ids['eval_id']}")
    assert answer.status_code == 200
    marks = {m.attrs["data-run-id"]: m.attrs["data-gate"] for m in by_class(answer.text, "gate-mark")}
    assert marks == {ids["run_id"]: "failed"}
    rows = {r.attrs["data-run-id"]: r.attrs.get("data-gate") for r in by_class(answer.text, "run", "tr")}
    assert rows == {ids["run_id"]: "failed", ids["baseline_run_id"]: None}

"""Airflow 3.1.8 smoke run under a real api-server, scheduler, dag-processor and triggerer, with its own
AIRFLOW_HOME and database:

* ``example_watch_external_run``: a deferrable sensor, then a branch on the pass rate;
* ``example_release_gate``: a baseline, then a candidate whose drop is inconclusive, so the standard
  provider's ``ApprovalOperator`` defers to its ``HITLTrigger`` (3.1 has no ``awaiting_input`` state) until
  the test approves through the HITL REST API, as the Required Actions page does. ``dag.test()`` cannot
  run that trigger on 3.1, so this is where the review path is proven on 3.1;

then the same secret audit as on 3.3."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from e2e.harness import (
    ART,
    REPO,
    Airflow,
    Fake,
    Postgres,
    Procs,
    Report,
    file_audit_negative_control,
    search_files,
    stage,
    wait_for,
)

DAG = "example_watch_external_run"
RELEASE_DAG = "example_release_gate"


def release_gate(af: Airflow, fake: Fake) -> dict[str, dict[str, str]]:
    """A promoted baseline, then an inconclusive candidate that a person approves; the task states of both."""
    conf = {"dataset_file_id": fake.upload_golden_set(50)}
    # 3 pass->fail and 1 fail->pass on 50 items: a 4-point drop, p = 0.625: the gate cannot tell.
    nights = {
        "baseline": ["pass"] * 45 + ["fail"] * 5,
        "candidate": ["fail"] * 3 + ["pass"] * 42 + ["pass"] + ["fail"] * 4,
    }
    states: dict[str, dict[str, str]] = {}
    for night, outcomes in nights.items():
        script = {"queued_seconds": 0.5, "in_progress_seconds": 1, "outcomes": outcomes}
        fake.ctl("POST", "script", {"script": script, "count": 1})
        run_id = af.trigger(RELEASE_DAG, conf)
        if night == "candidate":
            detail_path = f"/dags/{RELEASE_DAG}/dagRuns/{run_id}/taskInstances/review/-1/hitlDetails"
            wait_for(
                "the review task to defer to HITLTrigger",
                lambda: af.task_instance(RELEASE_DAG, run_id, "review")["state"] == "deferred",  # noqa: B023
                timeout=180,
                interval=2,
                on_timeout=af.dump,
            )
            asked = af.rest("GET", detail_path)
            assert asked["subject"] == "Release gpt-4o-mini? The eval cannot tell yet.", asked
            assert "**inconclusive**" in asked["body"], asked
            assert "Items that flipped: 4" in asked["body"], asked
            af.rest("PATCH", detail_path, {"chosen_options": ["Approve"], "params_input": {}})
        assert af.wait_dag_run(RELEASE_DAG, run_id, timeout=300) == "success", night
        states[night] = {ti["task_id"]: ti["state"] for ti in af.task_instances(RELEASE_DAG, run_id)}
    assert (states["baseline"]["release"], states["baseline"]["promote"]) == ("success", "success"), states
    assert states["baseline"]["compare"] == "skipped", states  # no earlier run: nothing to compare with
    candidate = states["candidate"]
    assert (candidate["release"], candidate["block_release"]) == ("skipped", "skipped"), states
    assert (candidate["review"], candidate["promote"]) == ("success", "success"), states
    review_log = af.task_log(RELEASE_DAG, run_id, "review", 1)
    assert "Approve" in review_log, review_log[-2000:]
    return states


def evals_views(af: Airflow, fake: Fake) -> dict[str, Any]:
    """The UI plugin on 3.1, a smaller smoke run than 3.3's browser checks: the api-server lists both views,
    and the Evals page of the release gate's eval has one chart point per run with the API's pass rate."""
    plugins = af.rest("GET", "/plugins")["plugins"]
    views = {
        v["name"]: v for p in plugins if p["name"] == "aoai_evals_ui" for v in p.get("external_views", [])
    }
    assert set(views) == {"Evals", "Eval run"}, plugins
    (found,) = [e for e in fake.api("GET", "/evals?limit=100")["data"] if e["name"] == "release-gate"]
    runs = fake.api("GET", f"/evals/{found['id']}/runs?limit=100")["data"]
    page = af.http.get(
        f"{af.url}/aoai-evals/connections/aoai_evals_default/evals/{found['id']}",
        headers={"Authorization": f"Bearer {af.token}"},
        timeout=60,
    )
    assert page.status_code == 200, page.text[:2000]
    points = dict(
        re.findall(r'class="run-point[^"]*"[^>]*data-run-id="([^"]+)" data-pass-rate="([^"]*)"', page.text)
    )
    expected = {}
    for run in runs:
        c = run["result_counts"]
        expected[run["id"]] = repr(c["passed"] / (c["passed"] + c["failed"] + c["errored"]))
    assert points == expected, (points, expected)
    return {"views": sorted(views), "chart_points": points}


def test_airflow31_smoke(postgres: Postgres, fake: Fake, procs: Procs, canary: str, report: Report) -> None:
    with stage("airflow-3.1-start", report):
        conn = {"conn_type": "aoai_evals", "host": fake.base_url, "password": canary}
        af = Airflow(
            "airflow-3.1",
            REPO / ".venv-af31",
            ART / "airflow-3.1" / "home",
            postgres.create_db("airflow31"),
            procs,
            extra_env={
                "AIRFLOW_CONN_AOAI_EVALS_DEFAULT": json.dumps(conn),
                "AOAI_EVALS_EXAMPLE_POLL_INTERVAL": "2",
                "AIRFLOW_VAR_AOAI_EVALS_EXPORT_ROOT": Path(ART / "airflow-3.1" / "exports").as_uri(),
            },
            bundles=[("provider_examples", REPO / "example_dags")],
        )
        af.migrate()
        af.start()
        af.wait_dag(DAG)
        af.unpause(DAG)
        af.wait_dag(RELEASE_DAG)
        af.unpause(RELEASE_DAG)
    try:
        eval_id = fake.add_eval("e2e-af31")
        # 10 graded items each: all pass (pass rate 100 %: accept), every second one fails (50 %: reject).
        good = fake.add_run(
            eval_id, "af31-good", queued_seconds=1, in_progress_seconds=30, output_items=10, fail_every=0
        )
        bad = fake.add_run(
            eval_id, "af31-bad", queued_seconds=1, in_progress_seconds=30, output_items=10, fail_every=2
        )
        good_run = af.trigger(DAG, {"eval_id": eval_id, "run_id": good})
        bad_run = af.trigger(DAG, {"eval_id": eval_id, "run_id": bad})

        def deferred() -> bool:
            return all(
                af.task_instance(DAG, r, "wait_for_run")["state"] == "deferred" for r in (good_run, bad_run)
            )

        wait_for("both sensors deferred", deferred, timeout=120, interval=2, on_timeout=af.dump)
        # Secret audit while the triggers exist (a finished trigger's row is deleted): decrypted kwargs.
        snapshot = af.python(REPO / "e2e" / "audit_db.py", canary, eval_id)
        assert snapshot["counts"]["triggers"] >= 2, snapshot["counts"]
        assert snapshot["control"]["in_decrypted_kwargs"], snapshot["control"]
        assert snapshot["hits"] == [], snapshot["hits"]
        for run_id in (good_run, bad_run):
            assert af.wait_dag_run(DAG, run_id, timeout=300) == "success"
        states = {
            r: {ti["task_id"]: ti["state"] for ti in af.task_instances(DAG, r)} for r in (good_run, bad_run)
        }
        assert states[good_run] == {
            "wait_for_run": "success",
            "check_pass_rate": "success",
            "accept": "success",
            "reject": "skipped",
        }, states
        assert states[bad_run] == {
            "wait_for_run": "success",
            "check_pass_rate": "success",
            "accept": "skipped",
            "reject": "success",
        }, states
        log_text = af.task_log(DAG, good_run, "wait_for_run", 1)
        assert "deferring until it finishes" in log_text, log_text[-2000:]
        accept_log = af.task_log(DAG, good_run, "accept", 1)
        assert "pass rate 100.0%" in accept_log, accept_log[-2000:]
        with stage("airflow-3.1-release-gate", report):
            release_states = release_gate(af, fake)
        with stage("airflow-3.1-evals-views", report):
            views = evals_views(af, fake)
    finally:
        af.stop()

    needles = [canary, canary.encode().hex()]
    audit = af.python(REPO / "e2e" / "audit_db.py", canary)
    dump = postgres.dump("airflow31", ART / "airflow-3.1" / "pg_dump.sql").read_text(errors="replace")
    files = search_files([ART / "airflow-3.1", postgres.log_path, *sorted(ART.glob("*.log"))], needles)
    db_control = af.python(REPO / "e2e" / "audit_db.py", canary, "--plant")["negative_control"]
    file_control = file_audit_negative_control(
        {"task_log": af.home / "logs", "component_log": ART / "airflow-3.1"}, canary, needles
    )
    summary: dict[str, Any] = {
        "dag": DAG,
        "dag_runs": 2,
        "task_states": states,
        "release_gate_task_states": release_states,
        "evals_views": views,
        "db": audit["counts"],
        "db_hits": audit["hits"],
        "pg_dump_hits": sum(dump.count(n) for n in needles),
        "file_hits": files["hits"],
        "files_searched": files["files"],
        "bytes_searched": files["bytes"],
        "task_log_files": sum(1 for p in (af.home / "logs").rglob("*") if p.is_file()),
        "trigger_snapshot": snapshot["counts"],
        "trigger_snapshot_hits": snapshot["hits"],
        "negative_control_db": db_control,
        "negative_control_files": file_control,
    }
    report.set("airflow31", **summary)
    assert audit["hits"] == [], summary
    assert summary["pg_dump_hits"] == 0, summary
    assert not files["hits"], summary
    assert eval_id in dump, "positive control: the dump holds the run's data"
    found = dict(db_control["found"])
    assert not found.pop("trigger_kwargs_raw_column"), db_control
    assert not found.pop("table_scan_trigger"), db_control
    assert db_control["planted"] == ["trigger", "xcom", "rendered_fields"], db_control
    assert all(found.values()), db_control
    assert all(file_control.values()), file_control

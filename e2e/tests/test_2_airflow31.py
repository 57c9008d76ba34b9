"""Airflow 3.1.8 smoke run: the example DAG ``example_watch_external_run`` (deferrable sensor, then a branch
on the pass rate) under a real api-server, scheduler, dag-processor and triggerer, with its own AIRFLOW_HOME
and database; then the same secret audit as on 3.3."""

from __future__ import annotations

import json
from typing import Any

from harness import ART, REPO, Airflow, Fake, Postgres, Procs, Report, grep_tree, stage

DAG = "example_watch_external_run"


def test_airflow31_smoke(postgres: Postgres, fake: Fake, procs: Procs, canary: str, report: Report) -> None:
    with stage("airflow-3.1-start", report):
        conn = {"conn_type": "aoai_evals", "host": fake.base_url, "password": canary}
        af = Airflow(
            "airflow-3.1",
            REPO / ".venv-af31",
            ART / "airflow-3.1" / "home",
            postgres.create_db("airflow31"),
            procs,
            extra_env={"AIRFLOW_CONN_AOAI_EVALS_DEFAULT": json.dumps(conn), "AOAI_EVALS_EXAMPLE_POLL_INTERVAL": "2"},
            bundles=[("provider_examples", REPO / "example_dags")],
        )
        af.migrate()
        af.start()
        af.wait_dag(DAG)
        af.unpause(DAG)
    try:
        eval_id = fake.add_eval("e2e-af31")
        good = fake.add_run(eval_id, "af31-good", queued_seconds=1, in_progress_seconds=15, fail_every=0)
        bad = fake.add_run(eval_id, "af31-bad", queued_seconds=1, in_progress_seconds=15, fail_every=2)
        good_run = af.trigger(DAG, {"eval_id": eval_id, "run_id": good})
        bad_run = af.trigger(DAG, {"eval_id": eval_id, "run_id": bad})
        for run_id in (good_run, bad_run):
            assert af.wait_dag_run(DAG, run_id, timeout=300) == "success"
        states = {r: {ti["task_id"]: ti["state"] for ti in af.task_instances(DAG, r)} for r in (good_run, bad_run)}
        assert states[good_run] == {"wait_for_run": "success", "check_pass_rate": "success", "accept": "success",
                                    "reject": "skipped"}, states
        assert states[bad_run] == {"wait_for_run": "success", "check_pass_rate": "success", "accept": "skipped",
                                   "reject": "success"}, states
        log_text = af.task_log(DAG, good_run, "wait_for_run", 1)
        assert "deferring until it finishes" in log_text, log_text[-2000:]
    finally:
        af.stop()

    needles = [canary, canary.encode().hex()]
    audit = af.python(REPO / "e2e" / "audit_db.py", canary)
    dump = postgres.dump("airflow31", ART / "airflow-3.1" / "pg_dump.sql").read_text(errors="replace")
    log_hits = grep_tree(ART / "airflow-3.1", needles)
    summary: dict[str, Any] = {
        "dag": DAG, "dag_runs": 2, "task_states": states, "db": audit["counts"], "db_hits": audit["hits"],
        "pg_dump_hits": sum(dump.count(n) for n in needles), "log_hits": log_hits,
        "log_files": sum(1 for p in (af.home / "logs").rglob("*") if p.is_file()),
    }
    report.set("airflow31", **summary)
    assert audit["hits"] == [] and summary["pg_dump_hits"] == 0 and not log_hits, summary

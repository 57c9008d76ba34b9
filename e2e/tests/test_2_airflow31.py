"""Airflow 3.1.8 smoke run: the example DAG ``example_watch_external_run`` (deferrable sensor, then a branch
on the pass rate) under a real api-server, scheduler, dag-processor and triggerer, with its own AIRFLOW_HOME
and database; then the same secret audit as on 3.3."""

from __future__ import annotations

import json
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
            },
            bundles=[("provider_examples", REPO / "example_dags")],
        )
        af.migrate()
        af.start()
        af.wait_dag(DAG)
        af.unpause(DAG)
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

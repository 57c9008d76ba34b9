"""`make demo`: start FakeEvalsServer, run the nightly example DAG with `airflow dags test`, print the outcome.

Runs inside scripts/airflow-env.sh (a repo-local AIRFLOW_HOME). The run's status and rates are read back
from the fake Evals API with our own client, and the gate's verdict and the export's path from the
metadata DB, so what is printed is what the service and Airflow hold, not what the DAG claimed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from airflow_provider_aoai_evals.api.auth import ApiKeyAuth
from airflow_provider_aoai_evals.api.client import EvalsClient
from airflow_provider_aoai_evals.api.settings import ClientSettings
from airflow_provider_aoai_evals.api.summary import summarize

DAG_ID = "example_nightly_eval"
KEY = "sk-demo-not-a-real-key"
REPO = Path(__file__).resolve().parents[1]


def migrate(home: Path) -> None:
    marker = home / ".migrated"
    if marker.exists() and (home / "airflow.db").exists():
        return
    print("== migrating the demo's Airflow metadata DB (first run only)", flush=True)
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)
    marker.touch()


def start_server() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_aoai_evals.testing",
            "--port",
            "0",
            "--api-key",
            KEY,
            "--queued-seconds",
            "1",
            "--run-seconds",
            "3",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"listening on (http://\S+)", line)
    if not match:
        proc.kill()
        raise SystemExit(f"FakeEvalsServer did not start: {line!r}")
    return proc, match.group(1)


def xcoms(dag_run_id: str) -> dict[tuple[str, str], Any]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.scalars(
            select(XComModel).where(XComModel.dag_id == DAG_ID, XComModel.run_id == dag_run_id)
        ).all()
        return {(r.task_id, r.key): XComModel.deserialize_value(r) for r in rows}


def latest_dag_run() -> tuple[str, dict[str, str]]:
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        run = session.scalars(
            select(DagRun).where(DagRun.dag_id == DAG_ID).order_by(DagRun.id.desc()).limit(1)
        ).one()
        tis = session.scalars(
            select(TaskInstance).where(TaskInstance.dag_id == DAG_ID, TaskInstance.run_id == run.run_id)
        ).all()
        return run.run_id, {ti.task_id: str(ti.state) for ti in tis}


def main() -> int:
    migrate(Path(os.environ["AIRFLOW_HOME"]))
    exports = REPO / ".artifacts" / "demo-exports"
    server, url = start_server()
    try:
        print(f"== FakeEvalsServer at {url}", flush=True)
        env = {
            **os.environ,
            "AIRFLOW_CONN_AOAI_EVALS_DEFAULT": json.dumps(
                {"conn_type": "aoai_evals", "host": f"{url}/v1", "password": KEY}
            ),
            "AIRFLOW_VAR_AOAI_EVALS_EXPORT_ROOT": f"file://{exports}",
            "AOAI_EVALS_EXAMPLE_POLL_INTERVAL": "1",
        }
        started = time.monotonic()
        print(f"== airflow dags test {DAG_ID}", flush=True)
        result = subprocess.run(
            [sys.executable, "-m", "airflow", "dags", "test", DAG_ID], env=env, capture_output=True, text=True
        )
        elapsed = time.monotonic() - started
        print(f"\n== outcome ({elapsed:.1f}s, airflow dags test exit code {result.returncode})")
        dag_run_id, states = latest_dag_run()
        print("task states: " + ", ".join(f"{task}={state}" for task, state in sorted(states.items())))
        values = xcoms(dag_run_id)
        run_id = values.get(("run_eval", "run_id"))
        eval_id = values.get(("ensure_eval", "return_value"))
        if result.returncode != 0 or not run_id:
            print(result.stdout[-3000:], result.stderr[-3000:], sep="\n")
            return 1
        client = EvalsClient(
            ClientSettings.build(flavor="openai", base_url=f"{url}/v1", auth=ApiKeyAuth(KEY))
        )
        summary = summarize(client.get_run(str(eval_id), str(run_id)))
        counts = summary.counts
        print(f"eval run {summary.run_id} of eval {summary.eval_id}: {summary.status}")
        print(
            f"  items: {counts.total} total, {counts.passed} passed, {counts.failed} failed, {counts.errored} "
            f"errored; pass rate {summary.pass_rate:.1%}"
            if summary.pass_rate is not None
            else "  no results"
        )
        for criterion in summary.criteria:
            rate = "n/a" if criterion.pass_rate is None else f"{criterion.pass_rate:.1%}"
            print(
                f"  criterion {criterion.name}: {criterion.passed} passed, {criterion.failed} failed ({rate})"
            )
        verdict = values.get(("quality_gate", "verdict")) or {}
        print(f"gate verdict: {'PASSED' if verdict.get('passed') else 'FAILED'}")
        for check in verdict.get("checks", []):
            print(f"  {'ok  ' if check['passed'] else 'FAIL'} {check['detail']}")
        branch = "promote" if states.get("promote") == "success" else "alert"
        print(f"branch taken: {branch}")
        export = values.get(("export_failures", "return_value")) or {}
        print(f"failing items: {export.get('count')} written to {export.get('path')}")
        print(f"report: {summary.report_url}")
        return 0 if states.get(branch) == "success" else 1
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    raise SystemExit(main())

"""`make demo`: start FakeEvalsServer, run an example DAG with `airflow dags test`, print the outcome.

Runs inside scripts/airflow-env.sh (a repo-local AIRFLOW_HOME). The outcome is read back from the fake
Evals API with our own client, so what is printed is what the service holds, not what the DAG claimed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from airflow_provider_aoai_evals.api.auth import ApiKeyAuth
from airflow_provider_aoai_evals.api.client import EvalsClient
from airflow_provider_aoai_evals.api.settings import ClientSettings

DAG_ID = "example_eval_run_with_hook"
KEY = "sk-demo-not-a-real-key"


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


def main() -> int:
    migrate(Path(os.environ["AIRFLOW_HOME"]))
    server, url = start_server()
    try:
        print(f"== FakeEvalsServer at {url}", flush=True)
        env = {
            **os.environ,
            "AIRFLOW_CONN_AOAI_EVALS_DEFAULT": json.dumps(
                {"conn_type": "aoai_evals", "host": f"{url}/v1", "password": KEY}
            ),
        }
        started = time.monotonic()
        print(f"== airflow dags test {DAG_ID}", flush=True)
        result = subprocess.run(
            [sys.executable, "-m", "airflow", "dags", "test", DAG_ID, "--conf", '{"poll_interval": 1}'],
            env=env,
            capture_output=True,
            text=True,
        )
        elapsed = time.monotonic() - started
        client = EvalsClient(
            ClientSettings.build(flavor="openai", base_url=f"{url}/v1", auth=ApiKeyAuth(KEY))
        )
        evals = list(client.list_evals())
        runs = [run for ev in evals for run in client.list_runs(ev.id)]
        print(f"\n== outcome ({elapsed:.1f}s, airflow dags test exit code {result.returncode})")
        if result.returncode != 0 or not runs:
            print(result.stdout[-3000:], result.stderr[-3000:], sep="\n")
            return 1
        for run in runs:
            counts = run.result_counts
            print(f"eval run {run.id} of eval {run.eval_id}: {run.status}")
            if counts:
                rate = counts.passed / max(counts.passed + counts.failed + counts.errored, 1)
                print(
                    f"  items: {counts.total} total, {counts.passed} passed, {counts.failed} failed, "
                    f"{counts.errored} errored (pass rate {rate:.0%})"
                )
            for crit in run.per_testing_criteria_results or []:
                print(f"  criterion {crit.testing_criteria}: {crit.passed} passed, {crit.failed} failed")
            print(f"  report: {run.report_url}")
        return 0 if all(run.status == "completed" for run in runs) else 1
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    raise SystemExit(main())

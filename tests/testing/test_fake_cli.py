"""The standalone CLI and the /_fake/ control routes, driven from outside the process."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
import requests

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def cli_server() -> Iterator[tuple[str, subprocess.Popen[str]]]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_aoai_evals.testing",
            "--port",
            "0",
            "--flavor",
            "azure",
            "--api-key",
            "k-cli",
            "--seed-eval",
            "seeded",
            "--run-seconds",
            "0",
            "--queued-seconds",
            "0",
            "--fault",
            '{"kind": "status", "status": 503, "count": 2}',
            "--accept-token",
            "entra-tok",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        match = re.fullmatch(
            r"FakeEvalsServer listening on (http://127\.0\.0\.1:(\d+)) \(flavor=azure\)\n", line
        )
        assert match, line
        yield match.group(1), proc
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(10)


def test_cli_serves_and_is_controllable(cli_server: tuple[str, subprocess.Popen[str]]) -> None:
    url, proc = cli_server
    api = url + "/openai/v1"
    headers = {"api-key": "k-cli", "aoai-evals": "preview"}
    assert [requests.get(api + "/evals", headers=headers, timeout=5).status_code for _ in range(3)] == [
        503,
        503,
        200,
    ]
    evals = requests.get(api + "/evals", headers=headers, timeout=5).json()["data"]
    assert [e["name"] for e in evals] == ["seeded"]
    eval_id = evals[0]["id"]
    entra = {"Authorization": "Bearer entra-tok", "aoai-evals": "preview"}
    assert requests.get(api + "/evals", headers=entra, timeout=5).status_code == 200

    health = requests.get(url + "/_fake/health", timeout=5).json()
    assert health == {"ok": True, "flavor": "azure", "api_root": "/openai/v1"}

    # Faults from outside.
    assert requests.post(
        url + "/_fake/faults", json={"kind": "status", "status": 429, "retry_after": 1}, timeout=5
    ).json()["ok"]
    assert len(requests.get(url + "/_fake/faults", timeout=5).json()["data"]) == 1
    assert requests.delete(url + "/_fake/faults", timeout=5).status_code == 200
    assert requests.get(api + "/evals", headers=headers, timeout=5).status_code == 200
    bad = requests.post(url + "/_fake/faults", json={"kind": "nope"}, timeout=5)
    assert bad.status_code == 400
    assert "kind" in bad.json()["error"]["message"]

    # Seed evals and runs with a script, force a status.
    ev = requests.post(url + "/_fake/evals", json={"name": "ctl"}, timeout=5).json()
    run = requests.post(
        url + "/_fake/runs",
        json={
            "eval_id": ev["id"],
            "script": {"queued_seconds": 60, "output_items": 7},
            "metadata": {"a": "b"},
        },
        timeout=5,
    ).json()
    assert run["status"] == "queued"
    assert run["metadata"] == {"a": "b"}
    forced = requests.post(url + f"/_fake/runs/{run['id']}/status", json={"status": "completed"}, timeout=5)
    assert forced.json()["status"] == "completed"
    assert forced.json()["result_counts"]["total"] == 7
    assert requests.post(url + "/_fake/runs", json={"eval_id": "eval_nope"}, timeout=5).status_code == 404

    # Script the next API-created run; the CLI's default script is instant.
    requests.post(
        url + "/_fake/script",
        json={
            "script": {"final_status": "failed", "queued_seconds": 0, "in_progress_seconds": 0},
            "count": 1,
        },
        timeout=5,
    )
    body = {"data_source": {"type": "jsonl", "source": {"type": "file_id", "id": "f"}}}
    first = requests.post(api + f"/evals/{eval_id}/runs", json=body, headers=headers, timeout=5).json()
    second = requests.post(api + f"/evals/{eval_id}/runs", json=body, headers=headers, timeout=5).json()
    assert (first["status"], second["status"]) == ("failed", "completed")

    # Cancel routes.
    requests.post(url + "/_fake/cancel-routes", json={"plain": False}, timeout=5)
    plain = requests.post(api + f"/evals/{eval_id}/runs/{first['id']}", headers=headers, timeout=5)
    assert plain.status_code == 405
    assert requests.post(url + "/_fake/cancel-routes", json={"plain": True}, timeout=5).json()[
        "cancel_routes"
    ] == {"plain": True, "suffix": True}

    # Request log with masked secrets, then reset.
    log = requests.get(url + "/_fake/requests", timeout=5).json()["data"]
    assert log
    assert all(r["headers"].get("api-key") in (None, "***") for r in log)
    assert "k-cli" not in str(log)
    assert len(requests.get(url + "/_fake/requests", params={"limit": 2}, timeout=5).json()["data"]) == 2
    requests.post(url + "/_fake/reset", timeout=5)
    assert requests.get(url + "/_fake/requests", timeout=5).json()["data"] == []
    assert requests.get(api + "/evals", headers=headers, timeout=5).json()["data"] == []

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0


def test_cli_sigint_and_help() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_aoai_evals.testing", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("FakeEvalsServer listening on http://127.0.0.1:")
    assert "(flavor=openai)" in line
    port = int(line.split(":")[2].split(" ")[0])
    assert (
        requests.get(
            f"http://127.0.0.1:{port}/v1/evals", headers={"Authorization": "Bearer sk-test"}, timeout=5
        ).status_code
        == 200
    )
    proc.send_signal(signal.SIGINT)
    assert proc.wait(10) == 0
    out = subprocess.run(
        [sys.executable, "-m", "airflow_provider_aoai_evals.testing", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--fault" in out
    assert "--seed-eval" in out


def test_testing_package_imports_without_airflow() -> None:
    code = (
        "import sys, airflow_provider_aoai_evals.testing as t; "
        "bad = [m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')]; "
        "assert not bad, bad; print(t.FakeEvalsServer.__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "FakeEvalsServer"

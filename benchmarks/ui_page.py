"""The Evals page of the Airflow UI plugin: server-side time and API requests to render an eval with 1,000
runs, cold (empty cache) and cached.

Why: the page must stay quick for the evals people watch every night; the issue's budget is at most 10
list requests for 1,000 runs, and none for a view within ``[aoai_evals] ui_cache_ttl_seconds``.

How: the fake server runs in its own process pinned to CPU 1 with one eval of 1,000 completed runs; each
repeat is a fresh child process pinned to CPU 0 that builds Airflow's real core API app (with the plugin
mounted and the simple auth manager), logs in, and requests the page in-process (Starlette's TestClient,
so no socket between browser and api-server is measured). The first request is *cold*: the eval and its
runs are read from the API, 100 per page. Then 20 *cached* requests. Requests to the API are counted in
the child (every attempt of every call the client sends). Medians of 3 fresh processes.

Run ``python -m benchmarks.ui_page [--quick]`` from the repository root.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make ``benchmarks`` importable from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (
    CLIENT_CPU,
    REPO_ROOT,
    SERVER_CPU,
    FakeServerProcess,
    can_pin,
    machine,
    median,
    now_iso,
    publish,
    run_child,
    spread_pct,
    versions,
)

NAME = "ui_page"
API_KEY = "sk-bench"
RUNS = 1000
QUICK_RUNS = 200
CACHED_REQUESTS = 20
MAX_LIST_REQUESTS = 10
CHILD_TIMEOUT = 600.0


# -- child side ------------------------------------------------------------------------------------------


def run_child_side(*, api_root: str, eval_id: str, runs: int) -> dict[str, Any]:
    """In a fresh process: the real core app, one cold and ``CACHED_REQUESTS`` cached renders of the page."""
    conn = {"conn_type": "aoai_evals", "host": api_root, "password": API_KEY}
    os.environ["AIRFLOW_CONN_AOAI_EVALS_BENCH"] = json.dumps(conn)
    os.environ["AIRFLOW__AOAI_EVALS__UI_CACHE_TTL_SECONDS"] = "600"
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    from airflow_provider_aoai_evals.api.client import EvalsClient

    # Every attempt of every API call goes through EvalsClient._send (the UI uses no export pages).
    sent: list[str] = []
    send = EvalsClient._send

    def counting(self: EvalsClient, call: Any, deadline: float | None) -> Any:
        sent.append(f"{call.request.method} {call.request.path}")
        return send(self, call, deadline)

    EvalsClient._send = counting  # type: ignore[method-assign]

    client = TestClient(create_app(apps="core"))
    passwords = Path(os.environ["AIRFLOW_HOME"], "simple_auth_manager_passwords.json.generated")
    token = client.post(
        "/auth/token", json={"username": "admin", "password": json.loads(passwords.read_text())["admin"]}
    ).json()["access_token"]
    client.headers["Authorization"] = f"Bearer {token}"
    url = f"/aoai-evals/connections/aoai_evals_bench/evals/{eval_id}"

    t0 = time.perf_counter()
    cold = client.get(url)
    cold_s = time.perf_counter() - t0
    points = cold.text.count('<circle class="run-point')
    if cold.status_code != 200 or points != runs:
        raise RuntimeError(f"cold render failed: HTTP {cold.status_code}, {points} points")
    cold_requests = list(sent)
    cached_s = []
    for _ in range(CACHED_REQUESTS):
        t0 = time.perf_counter()
        answer = client.get(url)
        cached_s.append(time.perf_counter() - t0)
        if answer.status_code != 200:
            raise RuntimeError(f"cached render failed: {answer.status_code}")
    bare_s, bare_pages = _bare_read(api_root, eval_id, runs)
    return {
        "bare_s": bare_s,
        "bare_requests": bare_pages + 1,
        "cold_s": cold_s,
        "cold_requests": len(cold_requests),
        "cold_list_requests": sum(1 for r in cold_requests if r.startswith("GET ") and r.endswith("/runs")),
        "cached_s": median(cached_s),
        "cached_requests": len(sent) - len(cold_requests),
        "html_bytes": len(cold.content),
    }


def _bare_read(api_root: str, eval_id: str, runs: int) -> tuple[float, int]:
    """The peer: the same data read with nothing else, a keep-alive ``http.client`` connection getting the
    eval and its runs' pages of 100 (``json.loads`` each), in the same process after the page's own reads."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(api_root)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    t0 = time.perf_counter()
    conn.request("GET", f"{parts.path}/evals/{eval_id}", headers=headers)
    json.loads(conn.getresponse().read())
    after, pages, seen = "", 0, 0
    while seen < runs:
        query = f"limit=100&order=desc{'&after=' + after if after else ''}"
        conn.request("GET", f"{parts.path}/evals/{eval_id}/runs?{query}", headers=headers)
        page = json.loads(conn.getresponse().read())
        pages, seen = pages + 1, seen + len(page["data"])
        if not page.get("has_more") or not page["data"]:
            break
        after = page["data"][-1]["id"]
    elapsed = time.perf_counter() - t0
    conn.close()
    if seen != runs:
        raise RuntimeError(f"bare read saw {seen} runs, expected {runs}")
    return elapsed, pages


# -- parent side -----------------------------------------------------------------------------------------


def _child_argv(server: FakeServerProcess, eval_id: str, runs: int) -> list[str]:
    argv = [sys.executable, "-m", "benchmarks.ui_page", "--child", "--api-root", server.api_root,
            "--eval-id", eval_id, "--runs", str(runs)]  # fmt: skip
    if os.environ.get("AOAI_EVALS_AIRFLOW_ENV") != "1":
        # Outside `make bench`: the repository's own Airflow home (migrated DB, simple auth manager passwords).
        home = REPO_ROOT / ".airflow-home" / f"airflow-{metadata.version('apache-airflow')}"
        argv = ["bash", str(REPO_ROOT / "scripts" / "airflow-env.sh"), str(home), *argv]
    return argv


def measure(*, quick: bool = False, repeats: int = 3) -> dict[str, Any]:
    runs = QUICK_RUNS if quick else RUNS
    started, load_before = time.perf_counter(), os.getloadavg()
    results: list[dict[str, Any]] = []
    with FakeServerProcess(api_key=API_KEY) as server:
        evaluation = server.control("evals", {"name": f"bench-ui-{runs}"})
        script = {"queued_seconds": 0, "in_progress_seconds": 0, "output_items": 20, "fail_every": 4}
        for _ in range(runs):
            server.control("runs", {"eval_id": evaluation["id"], "script": script})
        for repeat in range(repeats):
            result = run_child(_child_argv(server, evaluation["id"], runs), timeout=CHILD_TIMEOUT)
            results.append(result)
            print(f"  repeat {repeat + 1}/{repeats}: cold {result['cold_s'] * 1000:.0f} ms "
                  f"({result['cold_requests']} API requests, {result['cold_list_requests']} list), cached "
                  f"{result['cached_s'] * 1000:.1f} ms ({result['cached_requests']} API requests)", flush=True)  # fmt: skip
    cold = [r["cold_s"] for r in results]
    bare = [r["bare_s"] for r in results]
    cached = [r["cached_s"] for r in results]
    list_requests = max(r["cold_list_requests"] for r in results)
    cached_requests = max(r["cached_requests"] for r in results)
    checks = [
        {"check": f"list requests for {runs} runs <= {MAX_LIST_REQUESTS}", "value": list_requests,
         "verdict": "ok" if list_requests <= MAX_LIST_REQUESTS else "MISS"},
        {"check": "API requests of a cached view == 0", "value": cached_requests,
         "verdict": "ok" if cached_requests == 0 else "MISS"},
    ]  # fmt: skip
    return {
        "benchmark": NAME,
        "when": now_iso(),
        "quick": quick,
        "repeats": repeats,
        "runs": runs,
        "cached_requests_per_child": CACHED_REQUESTS,
        "bare_ms": round(median(bare) * 1000, 1),
        "bare_requests": results[0]["bare_requests"],
        "cold_ms": round(median(cold) * 1000, 1),
        "cold_spread_pct": round(spread_pct(cold), 1),
        "cached_ms": round(median(cached) * 1000, 2),
        "cached_spread_pct": round(spread_pct(cached), 1),
        "cold_api_requests": max(r["cold_requests"] for r in results),
        "cold_list_requests": list_requests,
        "cached_api_requests": cached_requests,
        "html_kb": round(results[0]["html_bytes"] / 1024, 1),
        "checks": checks,
        "repeat_results": results,
        "pinning": {"enabled": can_pin(), "client_cpu": CLIENT_CPU, "server_cpu": SERVER_CPU},
        "machine": {
            **machine(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        },
        "versions": versions("apache-airflow", "fastapi", "jinja2"),
        "seconds": round(time.perf_counter() - started, 1),
    }


def render(result: dict[str, Any]) -> str:
    lines = [
        f"Evals page of an eval with {result['runs']:,} runs (median of {result['repeats']} fresh processes):",
        f"  cold:   {result['cold_ms']:>8.1f} ms, {result['cold_api_requests']} API requests "
        f"({result['cold_list_requests']} list), spread {result['cold_spread_pct']}%",
        f"  cached: {result['cached_ms']:>8.2f} ms, {result['cached_api_requests']} API requests "
        f"(median of {result['cached_requests_per_child']} views), spread {result['cached_spread_pct']}%",
        f"  peer:   {result['bare_ms']:>8.1f} ms, a bare http.client loop reading the same data "
        f"({result['bare_requests']} requests, json.loads only)",
        f"  page: {result['html_kb']} KB of HTML",
    ]
    lines.extend(f"{c['verdict']:<5} {c['check']}: {c['value']}" for c in result["checks"])
    return "\n".join(lines)


def main(*, quick: bool = False, repeats: int = 3) -> dict[str, Any]:
    """Entry point used by ``benchmarks/run_all.py``: measure, print the table, write the JSON artifact."""
    return publish(NAME, measure(quick=quick, repeats=repeats), render)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_RUNS} runs (smoke run)")
    parser.add_argument("--repeats", type=int, default=3)
    child = parser.add_argument_group("child process (internal)")
    child.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    child.add_argument("--api-root", help=argparse.SUPPRESS)
    child.add_argument("--eval-id", help=argparse.SUPPRESS)
    child.add_argument("--runs", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = _parse(None)
    if args.child:
        print(
            json.dumps(run_child_side(api_root=args.api_root, eval_id=args.eval_id, runs=args.runs)),
            flush=True,
        )
    else:
        main(quick=args.quick, repeats=max(1, args.repeats))

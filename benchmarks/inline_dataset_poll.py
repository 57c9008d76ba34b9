"""What one poll of a run costs when its rows were sent inline, and when they were uploaded as a file.

The API returns a run's whole data source with every GET of it. ``CreateEvalRunOperator`` therefore uploads
inline rows above ``inline_upload_threshold`` through the Files API (``operators/_dataset_upload``); this
measures what that saves each poll of the wait. Both runs hold the same rows and stay in progress; the
peer is the inline run, polled by the same client in the same way:

- ``trigger poll``: the async client's ``RunPoll``, as EvalRunTrigger polls in the triggerer;
- ``worker poll``: the sync client's ``get_run``, as the polling mode and the poke sensor do.

Each variant runs in a fresh child process pinned to the client core (the server has the other), so CPU per
poll and peak RSS are the client's alone. Bytes per poll are the body the API sent for one GET.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import sys
import time
import urllib.request
from typing import Any

from benchmarks._common import (
    FakeServerProcess,
    can_pin,
    machine,
    median,
    now_iso,
    proc_status_kb,
    publish,
    run_child,
    versions,
)

NAME = "inline_dataset_poll"
API_KEY = "sk-bench-inline"
#: Inline dataset size: the issue's 50 MB, and a smoke size.
FULL_MB, QUICK_MB = 50, 5
#: Polls per child: a 50 MB poll takes about a second, a small one a millisecond.
POLLS = {"inline": (5, 2), "file_id": (300, 50)}
MODES = {"trigger": "trigger poll (async RunPoll)", "worker": "worker poll (sync get_run)"}
CHILD_TIMEOUT = 900.0


def _rows(megabytes: int) -> list[dict[str, Any]]:
    row = {"item": {"question": "q" * 180, "expected": "a" * 40, "n": 0}}
    size = len(json.dumps(row)) + 2
    return [{"item": {**row["item"], "n": i}} for i in range(megabytes * 1_000_000 // size)]


def _setup(server: FakeServerProcess, megabytes: int) -> dict[str, Any]:
    """One eval, and two in-progress runs of the same rows: one inline, one uploaded (as the operator does)."""
    from airflow_provider_aoai_evals.api.auth import ApiKeyAuth
    from airflow_provider_aoai_evals.api.client import EvalsClient
    from airflow_provider_aoai_evals.api.settings import ClientSettings
    from airflow_provider_aoai_evals.operators._dataset_upload import as_jsonl, with_file_id

    rows = _rows(megabytes)
    inline = {"type": "jsonl", "source": {"type": "file_content", "content": rows}}
    evaluation = server.control("evals", {"name": "bench-inline"})
    script = {"queued_seconds": 0, "in_progress_seconds": 36_000}
    settings = ClientSettings.build(flavor="openai", base_url=server.api_root, auth=ApiKeyAuth(API_KEY))
    body = as_jsonl(rows)
    with EvalsClient(settings) as client:
        uploaded = client.upload_file(lambda: io.BytesIO(body), filename="rows.jsonl", size=len(body))
    runs = {
        "inline": server.control(
            "runs", {"eval_id": evaluation["id"], "data_source": inline, "script": script}
        ),
        "file_id": server.control(
            "runs",
            {"eval_id": evaluation["id"], "data_source": with_file_id(inline, uploaded.id), "script": script},
        ),
    }
    return {
        "eval_id": evaluation["id"],
        "run_ids": {k: r["id"] for k, r in runs.items()},
        "rows": len(rows),
        "jsonl_bytes": len(body),
    }


def _body_bytes(server: FakeServerProcess, eval_id: str, run_id: str) -> int:
    request = urllib.request.Request(  # noqa: S310 - loopback URL we started ourselves
        f"{server.api_root}/evals/{eval_id}/runs/{run_id}", headers={"Authorization": f"Bearer {API_KEY}"}
    )
    with urllib.request.urlopen(request, timeout=120) as resp:  # noqa: S310
        return len(resp.read())


def run_variant(mode: str, *, api_root: str, eval_id: str, run_id: str, n: int) -> dict[str, Any]:
    """Poll ``run_id`` ``n`` times in this process after one warm-up poll."""
    from airflow_provider_aoai_evals.api.auth import ApiKeyAuth
    from airflow_provider_aoai_evals.api.client import AsyncEvalsClient, EvalsClient
    from airflow_provider_aoai_evals.api.settings import ClientSettings

    settings = ClientSettings.build(flavor="openai", base_url=api_root, auth=ApiKeyAuth(API_KEY))
    if mode == "worker":
        with EvalsClient(settings) as client:
            client.get_run(eval_id, run_id)
            wall0, cpu0 = time.perf_counter(), time.process_time()
            for _ in range(n):
                client.get_run(eval_id, run_id)
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    else:

        async def polls() -> tuple[float, float]:
            async with AsyncEvalsClient(settings) as aclient:
                poll = aclient.run_poll(eval_id, run_id)
                deadline = time.time() + CHILD_TIMEOUT
                await poll(deadline=deadline)
                wall0, cpu0 = time.perf_counter(), time.process_time()
                for _ in range(n):
                    await poll(deadline=deadline)
                return time.process_time() - cpu0, time.perf_counter() - wall0

        cpu, wall = asyncio.run(polls())
    return {
        "n": n,
        "cpu_ms_per_poll": 1000 * cpu / n,
        "wall_ms_per_poll": 1000 * wall / n,
        # VmHWM, not ru_maxrss: the latter keeps the forking parent's peak across exec.
        "peak_rss_mb": (proc_status_kb("VmHWM") or 0) / 1024,
    }


def measure(*, quick: bool = False, repeats: int = 3) -> dict[str, Any]:
    megabytes = QUICK_MB if quick else FULL_MB
    load_before = os.getloadavg()
    results: dict[str, dict[str, list[dict[str, Any]]]] = {m: {"inline": [], "file_id": []} for m in MODES}
    with FakeServerProcess(api_key=API_KEY) as server:
        setup = _setup(server, megabytes)
        sizes = {k: _body_bytes(server, setup["eval_id"], r) for k, r in setup["run_ids"].items()}
        for repeat in range(repeats):
            for mode in MODES:
                for source in ("inline", "file_id"):
                    n = POLLS[source][1 if quick else 0]
                    argv = [
                        sys.executable, "-m", "benchmarks.inline_dataset_poll", "--child", mode,
                        "--api-root", server.api_root, "--eval-id", setup["eval_id"],
                        "--run-id", setup["run_ids"][source], "--n", str(n),
                    ]  # fmt: skip
                    got = run_child(argv, timeout=CHILD_TIMEOUT)
                    results[mode][source].append(got)
                    print(f"  repeat {repeat + 1}/{repeats} {MODES[mode]:<30} {source:<8} "
                          f"{got['cpu_ms_per_poll']:>9.2f} ms CPU/poll {got['peak_rss_mb']:>8.1f} MB peak RSS",
                          flush=True)  # fmt: skip
    table: dict[str, Any] = {}
    for mode, by_source in results.items():
        row: dict[str, Any] = {}
        for source, runs in by_source.items():
            row[source] = {
                key: median([r[key] for r in runs])
                for key in ("cpu_ms_per_poll", "wall_ms_per_poll", "peak_rss_mb")
            }
        row["cpu_ratio_inline_over_file_id"] = (
            row["inline"]["cpu_ms_per_poll"] / row["file_id"]["cpu_ms_per_poll"]
        )
        table[mode] = row
    return {
        "benchmark": NAME,
        "when": now_iso(),
        "quick": quick,
        "repeats": repeats,
        "dataset": {"megabytes": megabytes, "rows": setup["rows"], "jsonl_bytes": setup["jsonl_bytes"]},
        "bytes_per_poll": sizes,
        "modes": table,
        "pinning": can_pin(),
        "machine": {
            **machine(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        },
        "versions": versions("aiohttp", "requests", "pydantic"),
    }


def render(result: dict[str, Any]) -> str:
    data = result["dataset"]
    sizes = result["bytes_per_poll"]
    lines = [
        f"inline dataset poll: one in-progress run of {data['rows']} rows ({data['jsonl_bytes']} bytes as JSONL), "
        f"sent inline or uploaded; median of {result['repeats']} fresh processes "
        f"({'pinned' if result['pinning'] else 'NOT pinned'})",
        f"bytes per poll: inline {sizes['inline']}, uploaded (file_id) {sizes['file_id']} "
        f"({sizes['inline'] / sizes['file_id']:.0f}x fewer)",
        "",
        f"{'mode':<32}{'source':<10}{'CPU ms/poll':>13}{'wall ms/poll':>14}{'peak RSS MB':>13}",
    ]
    for mode, row in result["modes"].items():
        for source in ("inline", "file_id"):
            v = row[source]
            lines.append(f"{MODES[mode]:<32}{source:<10}{v['cpu_ms_per_poll']:>13.2f}{v['wall_ms_per_poll']:>14.2f}"
                         f"{v['peak_rss_mb']:>13.1f}")  # fmt: skip
        lines.append(
            f"{'':<32}{'CPU per poll, inline / uploaded:':<37}{row['cpu_ratio_inline_over_file_id']:.0f}x"
        )
    m = result["machine"]
    lines.append(f"load average (1/5/15 min) before: {m['loadavg_before']}, after: {m['loadavg_after']}")
    return "\n".join(lines)


def main(*, quick: bool = False, repeats: int = 3) -> dict[str, Any]:
    """Entry point used by ``benchmarks/run_all.py``: measure, print the table, write the JSON artifact."""
    return publish(NAME, measure(quick=quick, repeats=repeats), render)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help=f"a {QUICK_MB} MB dataset (smoke run)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", choices=sorted(MODES), help=argparse.SUPPRESS)
    parser.add_argument("--api-root", help=argparse.SUPPRESS)
    parser.add_argument("--eval-id", help=argparse.SUPPRESS)
    parser.add_argument("--run-id", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_variant(args.child, api_root=args.api_root, eval_id=args.eval_id,
                                     run_id=args.run_id, n=args.n)), flush=True)  # fmt: skip
    else:
        main(quick=args.quick, repeats=max(1, args.repeats))

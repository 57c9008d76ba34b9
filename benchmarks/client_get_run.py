"""Get-run throughput and client CPU per call: our clients against the official ``openai`` client.

Why: triggers poll ``GET /evals/{id}/runs/{id}`` for every deferred task of a deployment from one triggerer
process, and sensors poll it from workers, so the cost of one get-run call is the provider's hot path. The
target is "at least as fast as the official client", in throughput and in client CPU per call.

How (see docs/benchmarks.md):
- the fake server runs in its own process, pinned to CPU 1; each measured client runs in a fresh child
  process pinned to CPU 0, so imports and warm-up of one variant never help or hurt another;
- in the child: build the client, 50 warm-up calls (opens the connections, fills caches), then
  ``time.process_time()`` and ``time.perf_counter()`` around the timed loop only;
- every variant makes the same N calls against the same completed run; repeats are interleaved
  (v1 v2 v3 v4, v1 v2 v3 v4, ...) so slow drift of the machine hits all variants alike; medians are reported.

Run ``python -m benchmarks.client_get_run`` (or ``benchmarks/run_all.py``) from the repository root.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if __package__ in (None, ""):  # run as a file: make ``benchmarks`` importable from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (
    CLIENT_CPU,
    SERVER_CPU,
    FakeServerProcess,
    can_pin,
    machine,
    median,
    now_iso,
    proc_cpu_seconds,
    profile_report,
    publish,
    run_child,
    spread_pct,
    versions,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator

NAME = "client_get_run"
API_KEY = "sk-bench"
WARMUP = 50
CONCURRENCY = 32
FULL_N = {"sync": 3000, "async": 5000}
QUICK_N = {"sync": 300, "async": 300}
#: variant -> (label, mode). Order is the order of the table and of each interleaved repeat.
VARIANTS: dict[str, tuple[str, str]] = {
    "ours_sync": ("ours EvalsClient", "sync"),
    "openai_sync": ("openai.OpenAI", "sync"),
    "ours_async": (f"ours AsyncEvalsClient C={CONCURRENCY}", "async"),
    "openai_async": (f"openai.AsyncOpenAI C={CONCURRENCY}", "async"),
}
PAIRS = (("sync", "ours_sync", "openai_sync"), ("async", "ours_async", "openai_async"))
TARGET = (
    "at least as fast as the official client: throughput ratio >= 1.00 and CPU ratio <= 1.00 (no tolerance)"
)
CHILD_TIMEOUT = 120.0


# -- child side: one variant, one fresh process ---------------------------------------------------------------

#: Set by ``--profile-out`` in a child: the timed loop then runs under cProfile (its timings are not reported).
_PROFILE_OUT: str | None = None


@contextlib.contextmanager
def _maybe_profiled() -> Iterator[None]:
    """cProfile around the timed loop only (not imports or warm-up), when the parent asked for a profile."""
    if _PROFILE_OUT is None:
        yield
        return
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()
        profiler.dump_stats(_PROFILE_OUT)


def _timed_sync(call: Callable[[], Any], n: int, warmup: int, server_pid: int) -> dict[str, Any]:
    for _ in range(warmup):
        call()
    server0, preempted0 = proc_cpu_seconds(server_pid), _preempted()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    with _maybe_profiled():
        for _ in range(n):
            call()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return _result(n, wall, cpu, server0, proc_cpu_seconds(server_pid), _preempted() - preempted0)


async def _timed_async(
    call: Callable[[], Awaitable[Any]], n: int, warmup: int, concurrency: int, server_pid: int
) -> dict[str, Any]:
    async def drain(total: int) -> None:
        # `concurrency` workers pull calls off one shared budget: C requests in flight, no N-task pile-up.
        left = total

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                await call()

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    await drain(max(warmup, concurrency))  # also opens `concurrency` pooled connections
    server0, preempted0 = proc_cpu_seconds(server_pid), _preempted()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    with _maybe_profiled():
        await drain(n)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return _result(n, wall, cpu, server0, proc_cpu_seconds(server_pid), _preempted() - preempted0)


def _preempted() -> int:
    """Involuntary context switches of this process so far: how often another process took our core."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw


def _result(
    n: int, wall: float, cpu: float, server0: float | None, server1: float | None, preempted: int
) -> dict[str, Any]:
    server_busy = (server1 - server0) / wall if server0 is not None and server1 is not None else None
    return {
        "calls": n,
        "wall_s": wall,
        "cpu_s": cpu,
        "calls_per_s": n / wall,
        "cpu_us_per_call": 1e6 * cpu / n,
        "client_busy": cpu / wall,
        "server_busy": server_busy,
        "preempted": preempted,
    }


def _check(run: Any, run_id: str) -> None:
    """The calls must really return the run: a benchmark of error responses would be meaningless."""
    if run.id != run_id or run.status != "completed":
        raise RuntimeError(f"unexpected get-run answer: id={run.id!r} status={run.status!r}")


def run_variant(variant: str, *, api_root: str, eval_id: str, run_id: str, n: int, warmup: int,
                concurrency: int, server_pid: int) -> dict[str, Any]:  # fmt: skip
    """Measure one variant in this process. Each variant imports only its own client library."""
    if variant == "ours_sync":
        from airflow_provider_aoai_evals.api.auth import ApiKeyAuth
        from airflow_provider_aoai_evals.api.client import EvalsClient
        from airflow_provider_aoai_evals.api.settings import ClientSettings

        settings = ClientSettings.build(flavor="openai", base_url=api_root, auth=ApiKeyAuth(API_KEY))
        with EvalsClient(settings) as client:
            _check(client.get_run(eval_id, run_id), run_id)
            return _timed_sync(lambda: client.get_run(eval_id, run_id), n, warmup, server_pid)

    if variant == "openai_sync":
        import openai

        with openai.OpenAI(api_key=API_KEY, base_url=api_root, max_retries=2) as oclient:
            _check(oclient.evals.runs.retrieve(run_id, eval_id=eval_id), run_id)
            return _timed_sync(
                lambda: oclient.evals.runs.retrieve(run_id, eval_id=eval_id), n, warmup, server_pid
            )

    if variant == "ours_async":
        from airflow_provider_aoai_evals.api.auth import ApiKeyAuth
        from airflow_provider_aoai_evals.api.client import AsyncEvalsClient
        from airflow_provider_aoai_evals.api.settings import ClientSettings

        settings = ClientSettings.build(flavor="openai", base_url=api_root, auth=ApiKeyAuth(API_KEY))

        async def ours() -> dict[str, Any]:
            async with AsyncEvalsClient(settings) as aclient:
                _check(await aclient.get_run(eval_id, run_id), run_id)
                return await _timed_async(
                    lambda: aclient.get_run(eval_id, run_id), n, warmup, concurrency, server_pid
                )

        return asyncio.run(ours())

    if variant == "openai_async":
        import openai

        async def theirs() -> dict[str, Any]:
            async with openai.AsyncOpenAI(api_key=API_KEY, base_url=api_root, max_retries=2) as aoclient:
                _check(await aoclient.evals.runs.retrieve(run_id, eval_id=eval_id), run_id)
                return await _timed_async(
                    lambda: aoclient.evals.runs.retrieve(run_id, eval_id=eval_id),
                    n,
                    warmup,
                    concurrency,
                    server_pid,
                )

        return asyncio.run(theirs())

    raise ValueError(f"unknown variant {variant!r}; expected one of {sorted(VARIANTS)}")


# -- parent side: server, children, medians, table -------------------------------------------------------------


def _child_argv(variant: str, server: FakeServerProcess, eval_id: str, run_id: str, n: int) -> list[str]:
    return [
        sys.executable, "-m", "benchmarks.client_get_run", "--child", variant, "--api-root", server.api_root,
        "--eval-id", eval_id, "--run-id", run_id, "--n", str(n), "--warmup", str(WARMUP),
        "--concurrency", str(CONCURRENCY), "--server-pid", str(server.pid),
    ]  # fmt: skip


def _start_server_with_run(server: FakeServerProcess) -> tuple[str, str]:
    """One eval with one completed run: every call of every variant reads the same object."""
    evaluation = server.control("evals", {"name": "bench-get-run"})
    run = server.control("runs", {"eval_id": evaluation["id"],
                                  "script": {"queued_seconds": 0, "in_progress_seconds": 0}})  # fmt: skip
    return evaluation["id"], run["id"]


def profile(variant: str, *, quick: bool = False, top: int = 25) -> str:
    """cProfile of one variant's timed loop in a pinned child; returns the top entries by own and total time.

    For explaining a MISS, not for the figures: profiling slows the loop several-fold.
    """
    n = (QUICK_N if quick else FULL_N)[VARIANTS[variant][1]]
    with tempfile.TemporaryDirectory() as tmp, FakeServerProcess(api_key=API_KEY) as server:
        out = str(Path(tmp) / f"{variant}.prof")
        eval_id, run_id = _start_server_with_run(server)
        run_child(
            [*_child_argv(variant, server, eval_id, run_id, n), "--profile-out", out], timeout=CHILD_TIMEOUT
        )
        return profile_report(out, f"{variant}: {n} calls", top)


def measure(*, quick: bool = False, repeats: int = 3) -> dict[str, Any]:
    """Run every variant ``repeats`` times (interleaved) against one fake server; return the full result."""
    sizes = QUICK_N if quick else FULL_N
    runs: dict[str, list[dict[str, Any]]] = {variant: [] for variant in VARIANTS}
    started, load_before = time.perf_counter(), os.getloadavg()
    with FakeServerProcess(api_key=API_KEY) as server:
        eval_id, run_id = _start_server_with_run(server)
        for repeat in range(repeats):
            for variant, (label, mode) in VARIANTS.items():
                argv = _child_argv(variant, server, eval_id, run_id, sizes[mode])
                result = run_child(argv, timeout=CHILD_TIMEOUT)
                runs[variant].append(result)
                print(f"  repeat {repeat + 1}/{repeats} {label:<32} {result['calls_per_s']:>9.1f} calls/s "
                      f"{result['cpu_us_per_call']:>8.1f} µs CPU/call {result['preempted']:>6} preempted",
                      flush=True)  # fmt: skip
    summary = _summarise(
        runs, quick=quick, repeats=repeats, sizes=sizes, seconds=time.perf_counter() - started
    )
    summary["machine"]["loadavg_before"] = [round(x, 2) for x in load_before]
    summary["machine"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    return summary


def _summarise(runs: dict[str, list[dict[str, Any]]], *, quick: bool, repeats: int, sizes: dict[str, int],
               seconds: float) -> dict[str, Any]:  # fmt: skip
    variants: dict[str, Any] = {}
    for variant, results in runs.items():
        busy = [r["server_busy"] for r in results if r["server_busy"] is not None]
        variants[variant] = {
            "label": VARIANTS[variant][0],
            "mode": VARIANTS[variant][1],
            "calls": sizes[VARIANTS[variant][1]],
            "calls_per_s": median([r["calls_per_s"] for r in results]),
            "cpu_us_per_call": median([r["cpu_us_per_call"] for r in results]),
            "server_busy": median(busy) if busy else None,
            "preempted": median([r["preempted"] for r in results]),
            "calls_per_s_spread_pct": spread_pct([r["calls_per_s"] for r in results]),
            "cpu_spread_pct": spread_pct([r["cpu_us_per_call"] for r in results]),
            "repeats": results,
        }
    pairs: dict[str, Any] = {}
    for mode, ours, theirs in PAIRS:
        throughput = variants[ours]["calls_per_s"] / variants[theirs]["calls_per_s"]
        cpu = variants[ours]["cpu_us_per_call"] / variants[theirs]["cpu_us_per_call"]
        pairs[mode] = {
            "ours": ours,
            "openai": theirs,
            "throughput_ratio": throughput,
            "cpu_ratio": cpu,
            "throughput_verdict": "PASS" if throughput >= 1.0 else "MISS",
            "cpu_verdict": "PASS" if cpu <= 1.0 else "MISS",
            "verdict": "PASS" if throughput >= 1.0 and cpu <= 1.0 else "MISS",
        }
    return {
        "benchmark": NAME,
        "date": now_iso(),
        "quick": quick,
        "repeats": repeats,
        "warmup_calls": WARMUP,
        "concurrency": CONCURRENCY,
        "calls": sizes,
        "pinning": {"enabled": can_pin(), "server_cpu": SERVER_CPU, "client_cpu": CLIENT_CPU},
        "machine": machine(),
        "versions": versions(
            "airflow-provider-aoai-evals", "openai", "httpx", "aiohttp", "requests", "pydantic"
        ),
        "target": TARGET,
        "variants": variants,
        "pairs": pairs,
        "seconds": seconds,
    }


def render(result: dict[str, Any]) -> str:
    """The table printed by ``make bench`` and copied into docs/benchmarks.md."""
    pin = result["pinning"]
    where = (f"client pinned to CPU {pin['client_cpu']}, server to CPU {pin['server_cpu']}" if pin["enabled"]
             else "NOT pinned (no taskset or fewer than 2 cores)")  # fmt: skip
    calls = result["calls"]
    lines = [
        f"client get_run: {calls['sync']} sync / {calls['async']} async calls after {result['warmup_calls']} "
        f"warm-up, median of {result['repeats']} fresh processes per variant ({where})",
        "",
        f"{'variant':<34}{'calls/s':>10}{'CPU µs/call':>13}{'server busy':>13}{'preempted':>11}"
        f"{'spread calls/s':>16}{'spread CPU':>12}",
    ]
    for v in result["variants"].values():
        busy = f"{100 * v['server_busy']:.0f}%" if v["server_busy"] is not None else "n/a"
        lines.append(
            f"{v['label']:<34}{v['calls_per_s']:>10.1f}{v['cpu_us_per_call']:>13.1f}{busy:>13}"
            f"{v['preempted']:>11.0f}{v['calls_per_s_spread_pct']:>15.1f}%{v['cpu_spread_pct']:>11.1f}%"
        )
    lines += ["", f"{'pair':<8}{'throughput ours/openai':>24}{'CPU ours/openai':>18}   verdict"]
    for mode, p in result["pairs"].items():
        lines.append(
            f"{mode:<8}{p['throughput_ratio']:>23.2f}x{p['cpu_ratio']:>17.2f}x   {p['verdict']} "
            f"(throughput {p['throughput_verdict']}, CPU {p['cpu_verdict']})"
        )
    lines.append(f"target: {result['target']}")
    load = result["machine"].get("loadavg_before")
    if load is not None:
        lines.append(f"load average (1/5/15 min) before: {load}, after: {result['machine']['loadavg_after']}; "
                     f"'preempted' = involuntary context switches of the client during its timed loop")  # fmt: skip
    return "\n".join(lines)


def main(*, quick: bool = False, repeats: int = 3) -> dict[str, Any]:
    """Entry point used by ``benchmarks/run_all.py``: measure, print the table, write the JSON artifact."""
    return publish(NAME, measure(quick=quick, repeats=repeats), render)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK_N['sync']} calls per variant (smoke run)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--profile", choices=sorted(VARIANTS), help="print a cProfile of this variant's loop instead"
    )
    child = parser.add_argument_group("child process (internal)")
    child.add_argument("--child", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    child.add_argument("--api-root", help=argparse.SUPPRESS)
    child.add_argument("--eval-id", help=argparse.SUPPRESS)
    child.add_argument("--run-id", help=argparse.SUPPRESS)
    child.add_argument("--n", type=int, help=argparse.SUPPRESS)
    child.add_argument("--warmup", type=int, default=WARMUP, help=argparse.SUPPRESS)
    child.add_argument("--concurrency", type=int, default=CONCURRENCY, help=argparse.SUPPRESS)
    child.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    child.add_argument("--profile-out", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = _parse(None)
    if args.child:
        _PROFILE_OUT = args.profile_out
        measured = run_variant(args.child, api_root=args.api_root, eval_id=args.eval_id, run_id=args.run_id,
                               n=args.n, warmup=args.warmup, concurrency=args.concurrency,
                               server_pid=args.server_pid)  # fmt: skip
        print(json.dumps(measured), flush=True)
    elif args.profile:
        print(profile(args.profile, quick=args.quick))
    else:
        main(quick=args.quick, repeats=max(1, args.repeats))

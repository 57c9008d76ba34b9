"""Export throughput and peak memory: ExportEvalRunOutputItemsOperator against the official ``openai``
client's auto-pagination and a bare ``http.client`` loop, all writing the same run's items to a local file.

Why: eval runs can have 100,000+ output items of ~2 KB; an export must keep memory flat in the number of
items and move data close to the speed the server can give. Targets (see docs/benchmarks.md):

- peak RSS (VmHWM of the child process) at 100,000 items within 30 MB of that at 10,000;
- throughput (items/s) >= 1.2x the openai client's, and >= 0.8x the bare loop's.

How: the fake server runs in its own process pinned to CPU 1 with one completed run per size (items built
lazily, ``item_bytes=2048``); every variant runs in a fresh child process pinned to CPU 0 and exports the
whole run to a JSONL file under ``.artifacts/bench/``; repeats are interleaved and medians of 3 reported.
The timed section is the export only (imports, client construction, the Airflow connection lookup and
the first load of Airflow's filesystem registry are outside it). Peak RSS is the child's whole-life ``VmHWM``, so it includes imports (Airflow's for ours).

Run ``python -m benchmarks.export_items [--quick] [--profile ours]`` from the repository root.
"""

from __future__ import annotations

import argparse
import cProfile
import http.client
import json
import os
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

if __package__ in (None, ""):  # run as a file: make ``benchmarks`` importable from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import (
    ARTIFACTS_DIR,
    CLIENT_CPU,
    REPO_ROOT,
    SERVER_CPU,
    FakeServerProcess,
    can_pin,
    machine,
    median,
    now_iso,
    proc_cpu_seconds,
    proc_status_kb,
    profile_report,
    publish,
    run_child,
    spread_pct,
    versions,
)

NAME = "export_items"
API_KEY = "sk-bench"
ITEM_BYTES = 2048
FULL_SIZES = (10_000, 100_000)
QUICK_SIZES = (1_000, 5_000)
#: variant -> label, in table order.
VARIANTS: dict[str, str] = {
    "ours": "ours ExportEvalRunOutputItemsOperator",
    "openai": "openai client auto-pagination",
    "bare": "bare http.client loop (bytes only)",
}
RSS_BUDGET_MB = 30.0
MIN_VS_OPENAI = 1.2
MIN_VS_BARE = 0.8
CHILD_TIMEOUT = 900.0


# -- child side ------------------------------------------------------------------------------------------


def _timed(export: Any, server_pid: int, profile_out: str | None) -> dict[str, Any]:
    server0 = proc_cpu_seconds(server_pid)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    profiler = cProfile.Profile() if profile_out else None
    if profiler:
        profiler.enable()
    count = export()
    if profiler and profile_out:
        profiler.disable()
        profiler.dump_stats(profile_out)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    server1 = proc_cpu_seconds(server_pid)
    return {
        "items": count,
        "wall_s": wall,
        "items_per_s": count / wall,
        "client_busy": cpu / wall,
        "server_busy": (server1 - server0) / wall if server0 is not None and server1 is not None else None,
        "peak_rss_kb": proc_status_kb("VmHWM"),
    }


def run_variant(variant: str, *, api_root: str, eval_id: str, run_id: str, out: str, server_pid: int,
                profile_out: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Export the run to ``out`` with one variant, in this (fresh) process; return timings and peak RSS."""
    if variant == "ours":
        # The connection the operator reads, set before Airflow is imported; no metadata DB is touched.
        conn = {"conn_type": "aoai_evals", "host": api_root, "password": API_KEY}
        os.environ["AIRFLOW_CONN_AOAI_EVALS_BENCH"] = json.dumps(conn)
        from airflow_provider_aoai_evals.operators.output_items import ExportEvalRunOutputItemsOperator

        task = ExportEvalRunOutputItemsOperator(
            task_id="export", eval_id=eval_id, run_id=run_id, destination=out, conn_id="aoai_evals_bench"
        )
        # Outside the timed section, like the other variants' imports: the connection lookup, the client,
        # and Airflow's filesystem registry (its first use imports every installed provider's filesystem).
        task.hook.get_conn()
        from airflow.providers.common.compat.sdk import ObjectStoragePath

        _ = ObjectStoragePath(out).fs

        def ours() -> int:
            return int(task.execute({})["count"])

        return _timed(ours, server_pid, profile_out)

    if variant == "openai":
        import openai

        client = openai.OpenAI(api_key=API_KEY, base_url=api_root, max_retries=2)

        def theirs() -> int:
            count = 0
            with open(out, "wb") as handle:
                for item in client.evals.runs.output_items.list(run_id, eval_id=eval_id, limit=100):
                    handle.write(item.model_dump_json(exclude_unset=True).encode() + b"\n")
                    count += 1
            return count

        return _timed(theirs, server_pid, profile_out)

    if variant == "bare":
        parts = urlsplit(api_root)
        path = f"{parts.path}/evals/{eval_id}/runs/{run_id}/output_items"
        headers = {"Authorization": f"Bearer {API_KEY}", "Accept": "application/json"}

        def bare() -> int:
            conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
            pages, after = 0, None
            with open(out, "wb") as handle:
                while True:
                    query = {"limit": 100, **({"after": after} if after else {})}
                    conn.request("GET", f"{path}?{urlencode(query)}", headers=headers)
                    resp = conn.getresponse()
                    body = resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"HTTP {resp.status}: {body[:200]!r}")
                    handle.write(body)
                    pages += 1
                    # The envelope ends with "last_id": "...", "has_more": ...: read the cursor without parsing.
                    tail = body[-300:]
                    if b'"has_more": true' not in tail:
                        break
                    start = tail.rindex(b'"last_id": "') + len(b'"last_id": "')
                    after = tail[start : tail.index(b'"', start)].decode()
            conn.close()
            return pages * 100  # full pages; the last one may be short (corrected by the parent's check)

        return _timed(bare, server_pid, profile_out)

    raise ValueError(f"unknown variant {variant!r}; expected one of {sorted(VARIANTS)}")


# -- parent side -----------------------------------------------------------------------------------------


def _child_argv(variant: str, server: FakeServerProcess, eval_id: str, run_id: str, out: Path) -> list[str]:
    argv = [sys.executable, "-m", "benchmarks.export_items", "--child", variant, "--api-root", server.api_root,
            "--eval-id", eval_id, "--run-id", run_id, "--out", str(out), "--server-pid", str(server.pid)]  # fmt: skip
    if variant == "ours" and os.environ.get("AOAI_EVALS_AIRFLOW_ENV") != "1":
        # Outside `make bench`: give the child the repository's own Airflow home, never the user's.
        home = REPO_ROOT / ".airflow-home" / f"airflow-{metadata.version('apache-airflow')}"
        argv = ["bash", str(REPO_ROOT / "scripts" / "airflow-env.sh"), str(home), *argv]
    return argv


def _make_run(server: FakeServerProcess, n: int) -> tuple[str, str]:
    evaluation = server.control("evals", {"name": f"bench-export-{n}"})
    script = {"queued_seconds": 0, "in_progress_seconds": 0, "output_items": n, "item_bytes": ITEM_BYTES}
    run = server.control("runs", {"eval_id": evaluation["id"], "script": script})
    return evaluation["id"], run["id"]


def _check_output(variant: str, out: Path, n: int, result: dict[str, Any]) -> None:
    """Every variant must really have written the run: n JSONL lines, or n items' worth of page bodies."""
    size = out.stat().st_size
    result["bytes"] = size
    if variant == "bare":
        result["items"] = n  # pages of raw envelopes: checked by size below
        if size < n * ITEM_BYTES * 0.9:
            raise RuntimeError(f"bare loop wrote {size} bytes for {n} items")
        result["items_per_s"] = n / result["wall_s"]
        return
    with out.open("rb") as handle:
        lines = sum(1 for _ in handle)
    if lines != n or result["items"] != n:
        raise RuntimeError(f"{variant} wrote {lines} lines / reported {result['items']} for {n} items")


def measure(*, quick: bool = False, repeats: int = 3) -> dict[str, Any]:
    sizes = QUICK_SIZES if quick else FULL_SIZES
    work = ARTIFACTS_DIR / "export-tmp"
    work.mkdir(parents=True, exist_ok=True)
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {v: {n: [] for n in sizes} for v in VARIANTS}
    started, load_before = time.perf_counter(), os.getloadavg()
    with FakeServerProcess(api_key=API_KEY) as server:
        targets = {n: _make_run(server, n) for n in sizes}
        for repeat in range(repeats):
            for n in sizes:
                eval_id, run_id = targets[n]
                for variant, label in VARIANTS.items():
                    out = work / f"{variant}-{n}.jsonl"
                    try:
                        result = run_child(
                            _child_argv(variant, server, eval_id, run_id, out), timeout=CHILD_TIMEOUT
                        )
                        _check_output(variant, out, n, result)
                    finally:
                        out.unlink(missing_ok=True)
                    runs[variant][n].append(result)
                    print(f"  repeat {repeat + 1}/{repeats} N={n:<7} {label:<40} {result['items_per_s']:>9.0f} items/s "
                          f"peak RSS {result['peak_rss_kb'] / 1024:>7.1f} MB", flush=True)  # fmt: skip
    summary = _summarise(
        runs, sizes=sizes, quick=quick, repeats=repeats, seconds=time.perf_counter() - started
    )
    summary["machine"]["loadavg_before"] = [round(x, 2) for x in load_before]
    summary["machine"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    return summary


def _summarise(runs: dict[str, dict[int, list[dict[str, Any]]]], *, sizes: tuple[int, ...], quick: bool,
               repeats: int, seconds: float) -> dict[str, Any]:  # fmt: skip
    table: dict[str, dict[int, dict[str, Any]]] = {}
    for variant, by_n in runs.items():
        table[variant] = {}
        for n, results in by_n.items():
            rates = [r["items_per_s"] for r in results]
            busy = [r["server_busy"] for r in results if r["server_busy"] is not None]
            table[variant][n] = {
                "items_per_s": median(rates),
                "mb_per_s": median([r["bytes"] / r["wall_s"] / 1e6 for r in results]),
                "peak_rss_mb": median([r["peak_rss_kb"] / 1024 for r in results]),
                "client_busy": median([r["client_busy"] for r in results]),
                "server_busy": median(busy) if busy else None,
                "spread_pct": spread_pct(rates),
                "repeats": results,
            }
    small, large = sizes
    ours = table["ours"]
    rss_growth = ours[large]["peak_rss_mb"] - ours[small]["peak_rss_mb"]
    checks = [
        {"check": f"ours peak RSS at {large} - at {small} <= {RSS_BUDGET_MB:.0f} MB",
         "value": f"{rss_growth:+.1f} MB", "verdict": "PASS" if rss_growth <= RSS_BUDGET_MB else "MISS"},
    ]  # fmt: skip
    for n in sizes:
        vs_openai = ours[n]["items_per_s"] / table["openai"][n]["items_per_s"]
        vs_bare = ours[n]["items_per_s"] / table["bare"][n]["items_per_s"]
        checks.append({"check": f"N={n}: ours / openai items/s >= {MIN_VS_OPENAI}", "value": f"{vs_openai:.2f}x",
                       "verdict": "PASS" if vs_openai >= MIN_VS_OPENAI else "MISS"})  # fmt: skip
        checks.append({"check": f"N={n}: ours / bare items/s >= {MIN_VS_BARE}", "value": f"{vs_bare:.2f}x",
                       "verdict": "PASS" if vs_bare >= MIN_VS_BARE else "MISS"})  # fmt: skip
    return {
        "benchmark": NAME,
        "date": now_iso(),
        "quick": quick,
        "repeats": repeats,
        "sizes": list(sizes),
        "item_bytes": ITEM_BYTES,
        "pinning": {"enabled": can_pin(), "server_cpu": SERVER_CPU, "client_cpu": CLIENT_CPU},
        "machine": machine(),
        "versions": versions(
            "airflow-provider-aoai-evals",
            "apache-airflow",
            "openai",
            "httpx",
            "requests",
            "pydantic",
            "fsspec",
        ),
        "variants": {
            v: {"label": VARIANTS[v], "by_n": {str(n): r for n, r in by_n.items()}}
            for v, by_n in table.items()
        },
        "checks": checks,
        "seconds": seconds,
    }


def render(result: dict[str, Any]) -> str:
    pin = result["pinning"]
    where = (f"client pinned to CPU {pin['client_cpu']}, server to CPU {pin['server_cpu']}" if pin["enabled"]
             else "NOT pinned (no taskset or fewer than 2 cores)")  # fmt: skip
    sizes = result["sizes"]
    lines = [
        f"export output items: N = {' and '.join(f'{n:,}' for n in sizes)} items of ~{result['item_bytes']} bytes to a "
        f"local JSONL file, median of {result['repeats']} fresh processes per variant ({where})",
        "",
        f"{'variant':<40}{'N':>8}{'items/s':>10}{'MB/s':>8}{'peak RSS MB':>13}{'client busy':>13}"
        f"{'server busy':>13}{'spread':>9}",
    ]
    for v in result["variants"].values():
        for n, r in v["by_n"].items():
            busy = f"{100 * r['server_busy']:.0f}%" if r["server_busy"] is not None else "n/a"
            lines.append(
                f"{v['label']:<40}{int(n):>8}{r['items_per_s']:>10.0f}{r['mb_per_s']:>8.1f}{r['peak_rss_mb']:>13.1f}"
                f"{100 * r['client_busy']:>12.0f}%{busy:>13}{r['spread_pct']:>8.1f}%"
            )
    lines.append("")
    lines.extend(f"{c['verdict']:<5} {c['check']}: {c['value']}" for c in result["checks"])
    lines.append(
        f"load average (1/5/15 min) before: {result['machine']['loadavg_before']}, "
        f"after: {result['machine']['loadavg_after']}"
    )
    return "\n".join(lines)


def profile(variant: str, *, quick: bool = False, top: int = 25) -> str:
    """cProfile of one variant's export (the larger size) in a pinned child: what dominates its time."""
    n = (QUICK_SIZES if quick else FULL_SIZES)[-1]
    work = ARTIFACTS_DIR / "export-tmp"
    work.mkdir(parents=True, exist_ok=True)
    prof, out = work / f"{variant}.prof", work / f"{variant}-profile.jsonl"
    with FakeServerProcess(api_key=API_KEY) as server:
        eval_id, run_id = _make_run(server, n)
        try:
            run_child([*_child_argv(variant, server, eval_id, run_id, out), "--profile-out", str(prof)],
                      timeout=CHILD_TIMEOUT)  # fmt: skip
        finally:
            out.unlink(missing_ok=True)
    return profile_report(prof, f"{variant}: {n} items", top)


def main(*, quick: bool = False, repeats: int = 3) -> dict[str, Any]:
    """Entry point used by ``benchmarks/run_all.py``: measure, print the table, write the JSON artifact."""
    return publish(NAME, measure(quick=quick, repeats=repeats), render)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help=f"N = {QUICK_SIZES} (smoke run)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--profile", choices=sorted(VARIANTS), help="print a cProfile of this variant instead"
    )
    child = parser.add_argument_group("child process (internal)")
    child.add_argument("--child", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    child.add_argument("--api-root", help=argparse.SUPPRESS)
    child.add_argument("--eval-id", help=argparse.SUPPRESS)
    child.add_argument("--run-id", help=argparse.SUPPRESS)
    child.add_argument("--out", help=argparse.SUPPRESS)
    child.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    child.add_argument("--profile-out", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = _parse(None)
    if args.child:
        measured = run_variant(args.child, api_root=args.api_root, eval_id=args.eval_id, run_id=args.run_id,
                               out=args.out, server_pid=args.server_pid, profile_out=args.profile_out)  # fmt: skip
        print(json.dumps(measured), flush=True)
    elif args.profile:
        print(profile(args.profile, quick=args.quick))
    else:
        main(quick=args.quick, repeats=max(1, args.repeats))

"""Comparing two runs: EvalRunCompareOperator's throughput and peak memory against a bare ``http.client``
loop that reads the same pages of both runs.

Why: the runs a nightly comparison reads can have 100,000+ output items of ~2 KB each. The operator
streams both runs page by page, pairs them by ``datasource_item_id`` and keeps one int per baseline item,
so its memory must stay flat in the number of items and its speed close to what reading the pages costs
at all. Targets (see docs/benchmarks.md):

- throughput (output items of both runs per second) >= 0.7x that of the bare loop reading the same pages;
- peak RSS at 100,000 items per run within 30 MB of that at 10,000.

How: the fake server runs in its own process pinned to CPU 1 with, per size, one eval and two completed
runs of N items (``item_bytes=2048``, the same synthetic rows) whose outcomes are scripted per item
(``RunScript.outcomes``) so that a known 2% of items flip each way. Every variant runs in a fresh child
process pinned to CPU 0; repeats are interleaved and medians reported:

- ``bare``: one keep-alive ``http.client.HTTPConnection`` reads every page of both runs (``limit=100``,
  ``order=asc``, ``after`` = the page's ``last_id`` while ``has_more``), each body decoded with
  ``json.loads`` and nothing more: the least any comparison must do;
- ``compare``: ``EvalRunCompareOperator(eval_id, run_id, baseline_run_id).execute({})`` without a
  destination, the same call a worker makes (an empty context is enough outside a task run: the report
  link is then not pushed). Both runs streamed, paired, tested; the XCom is checked;
- ``compare+flips``: the same with ``destination`` a local path under a temporary folder, so the spool
  of flipped items and pass 2 (the baseline read again, one line per flipped item) are measured too.

The timed section is the variant's work only: imports, the Airflow connection lookup (the connection is
given as ``AIRFLOW_CONN_AOAI_EVALS_BENCH``, read from the environment, no metadata DB), the client and
the first load of Airflow's filesystem registry are before it. Throughput counts the 2N items of the two
runs for every variant, although ``compare+flips`` reads the baseline twice (3N items fetched; shown as
``fetched/s``). Peak RSS is the child's ``VmHWM`` after resetting it just before the timed section
(``reset_peak_rss``), so it is the peak of the comparison itself on top of what the imports left resident;
where the reset is not possible it is the whole-life peak (recorded per repeat as ``hwm_reset``). Each
child's result is checked against the script: N items per run read, N matched, the scripted flip counts
each way, and with a destination as many lines in the flips file. ``client busy`` / ``server busy`` are
CPU seconds / wall seconds of the timed section; ``other CPU`` is what the rest of the machine used
meanwhile (all cores' busy time from ``/proc/stat`` minus client and server), which tells a repeat
slowed by a shared machine from a slow code path.

``--quick``: N = 1,000 and 5,000 and one repeat, a smoke run well under a minute. Run
``python -m benchmarks.compare_runs [--quick] [--profile compare]`` from the repository root.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import http.client
import json
import os
import pstats
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any
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
    reset_peak_rss,
    run_child,
    spread_pct,
    versions,
)

if TYPE_CHECKING:
    from collections.abc import Callable

NAME = "compare_runs"
API_KEY = "sk-bench"
CONN_ID = "aoai_evals_bench"
ITEM_BYTES = 2048
#: The operator's page size (``api.operations.MAX_PAGE_SIZE``); the bare loop asks for the same pages.
PAGE_LIMIT = 100
FULL_SIZES = (10_000, 100_000)
QUICK_SIZES = (1_000, 5_000)
#: A smoke run does one repeat: each of the two operator variants' children spends ~4 s importing Airflow
#: before its timed section, so three repeats of 2 sizes would not stay well under a minute.
QUICK_REPEATS = 1
#: variant -> label, in table order.
VARIANTS: dict[str, str] = {
    "compare": "EvalRunCompareOperator",
    "compare+flips": "EvalRunCompareOperator + flips file",
    "bare": "bare http.client loop (json.loads)",
}
#: The variant the targets are about: the comparison itself, reading each run once as the bare loop does.
MEASURED = "compare"
RSS_BUDGET_MB = 30.0
MIN_VS_BARE = 0.7
CHILD_TIMEOUT = 900.0


# -- scripted runs ---------------------------------------------------------------------------------------


def scripted_outcomes(n: int) -> tuple[list[str], list[str]]:
    """Baseline and candidate outcomes by item index: 10% of the baseline fails, and 2% of the items flip
    each way in the candidate (pass -> fail at ``i % 50 == 5``, fail -> pass at ``i % 50 == 0``)."""
    baseline = ["fail" if i % 10 == 0 else "pass" for i in range(n)]
    candidate = list(baseline)
    for i in range(n):
        if i % 50 == 5:
            candidate[i] = "fail"
        elif i % 50 == 0:
            candidate[i] = "pass"
    return baseline, candidate


@dataclass(frozen=True)
class Target:
    """One size's eval, its two runs, and what a correct comparison of them must report."""

    n: int
    eval_id: str
    baseline_id: str
    candidate_id: str
    pass_to_fail: int
    fail_to_pass: int
    baseline_passed: int
    candidate_passed: int


def _make_runs(server: FakeServerProcess, n: int) -> Target:
    baseline, candidate = scripted_outcomes(n)
    evaluation = server.control("evals", {"name": f"bench-compare-{n}"})
    ids = []
    for outcomes in (baseline, candidate):
        script = {"queued_seconds": 0, "in_progress_seconds": 0, "output_items": n, "item_bytes": ITEM_BYTES,
                  "outcomes": outcomes}  # fmt: skip
        # No data source the fake can read: both runs get the same synthetic rows (item i is row i).
        run = server.control("runs", {"eval_id": evaluation["id"], "script": script})
        counts = run["result_counts"]
        if run["status"] != "completed" or counts["total"] != n or counts["passed"] != outcomes.count("pass"):
            raise RuntimeError(f"fake run not as scripted: {run['status']} {counts} for {n} items")
        ids.append(run["id"])
    pairs = list(zip(baseline, candidate, strict=True))
    return Target(
        n=n,
        eval_id=evaluation["id"],
        baseline_id=ids[0],
        candidate_id=ids[1],
        pass_to_fail=pairs.count(("pass", "fail")),
        fail_to_pass=pairs.count(("fail", "pass")),
        baseline_passed=baseline.count("pass"),
        candidate_passed=candidate.count("pass"),
    )


# -- child side ------------------------------------------------------------------------------------------


class _ThreadsProfile:
    """cProfile of the calling thread and of every thread started while enabled, merged into one file.

    A plain ``cProfile.Profile`` sees only the thread that enabled it, and the operator fetches, decodes
    and validates its pages in a read-ahead thread (``export.read_ahead``): the main thread would show
    little but the wait for that thread's queue. Each profiler times its thread's CPU
    (``time.thread_time``): with wall-clock timers, a thread waiting for the GIL, the socket or the other
    thread's queue would be charged for whatever call it waits in, and two threads count the same second
    twice. Waiting shows in the ``client busy`` and ``server busy`` figures instead.
    """

    def __init__(self) -> None:
        self.main = cProfile.Profile(time.thread_time)
        self.threads: list[cProfile.Profile] = []

    def _start_in_thread(self, frame: Any, event: str, arg: Any) -> None:
        # Called by the new thread's first profiled event: hand that thread over to its own profiler.
        sys.setprofile(None)
        thread_profiler = cProfile.Profile(time.thread_time)
        self.threads.append(thread_profiler)
        thread_profiler.enable()

    def enable(self) -> None:
        threading.setprofile(self._start_in_thread)
        self.main.enable()

    def dump(self, path: str) -> None:
        self.main.disable()
        threading.setprofile(None)
        stats = pstats.Stats(self.main)
        for thread_profiler in self.threads:
            stats.add(thread_profiler)
        stats.dump_stats(path)


def _machine_busy_seconds() -> float | None:
    """CPU seconds all cores have spent busy since boot (``/proc/stat``, steal included); None off Linux.

    Minus the client's and the server's own CPU over the timed section, it is the CPU that other processes
    (or the hypervisor) took meanwhile: on a shared machine, what says whether a repeat was disturbed.
    """
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    # cpu user nice system idle iowait irq softirq steal ...: everything but idle and iowait is busy.
    busy = sum(int(fields[i]) for i in (1, 2, 3, 6, 7, 8))
    return busy / os.sysconf("SC_CLK_TCK")


def _timed(work: Callable[[], dict[str, Any]], server_pid: int, profile_out: str | None) -> dict[str, Any]:
    gc.collect()
    life_peak_kb = proc_status_kb("VmHWM")
    base_kb = proc_status_kb("VmRSS")
    hwm_reset = reset_peak_rss()
    server0, machine0 = proc_cpu_seconds(server_pid), _machine_busy_seconds()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    profiler = _ThreadsProfile() if profile_out else None
    if profiler:
        profiler.enable()
    report = work()
    if profiler and profile_out:
        profiler.dump(profile_out)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    server1, machine1 = proc_cpu_seconds(server_pid), _machine_busy_seconds()
    server_cpu = server1 - server0 if server0 is not None and server1 is not None else None
    other = None
    if machine0 is not None and machine1 is not None and server_cpu is not None:
        other = max(0.0, (machine1 - machine0) - cpu - server_cpu) / wall
    return {
        **report,
        "wall_s": wall,
        "client_busy": cpu / wall,
        "server_busy": server_cpu / wall if server_cpu is not None else None,
        "other_busy": other,
        "peak_rss_kb": proc_status_kb("VmHWM"),
        "base_rss_kb": base_kb,
        "life_peak_before_kb": life_peak_kb,
        "hwm_reset": hwm_reset,
    }


def _count_flip_lines(path: str) -> tuple[int, int]:
    """Lines of the flips file, and how many of them flipped overall (``direction`` set)."""
    lines = directed = 0
    with open(path, "rb") as handle:
        for raw in handle:
            lines += 1
            directed += json.loads(raw)["direction"] is not None
    return lines, directed


def run_variant(variant: str, *, api_root: str, eval_id: str, baseline_id: str, candidate_id: str,
                out: str | None, server_pid: int, profile_out: str | None = None) -> dict[str, Any]:  # fmt: skip
    """Run one variant on the two runs in this (fresh) process; return what it read, timings and peak RSS."""
    if variant in ("compare", "compare+flips"):
        # The connection the operator reads, set before Airflow is imported; no metadata DB is touched.
        conn = {"conn_type": "aoai_evals", "host": api_root, "password": API_KEY}
        os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = json.dumps(conn)
        from airflow_provider_aoai_evals.operators.compare import EvalRunCompareOperator

        destination = out if variant == "compare+flips" else None
        if variant == "compare+flips" and destination is None:
            raise ValueError("compare+flips needs --out")
        task = EvalRunCompareOperator(
            task_id="compare",
            eval_id=eval_id,
            run_id=candidate_id,
            baseline_run_id=baseline_id,
            destination=destination,
            conn_id=CONN_ID,
        )
        # Outside the timed section, as for the bare loop's imports: the connection lookup, the client and
        # Airflow's filesystem registry (its first use imports every installed provider's filesystem).
        task.hook.get_conn()
        if destination is not None:
            from airflow.providers.common.compat.sdk import ObjectStoragePath

            _ = ObjectStoragePath(destination).fs

        def compare() -> dict[str, Any]:
            xcom = task.execute({})
            overall = xcom["overall"]
            return {
                "items": overall["baseline"]["n"] + overall["candidate"]["n"],
                "fetched": overall["baseline"]["n"] * (2 if destination else 1) + overall["candidate"]["n"],
                "paired": xcom["paired"],
                "matched": xcom["matched"],
                "pass_to_fail": overall["pass_to_fail"],
                "fail_to_pass": overall["fail_to_pass"],
                "baseline_passed": overall["baseline"]["passed"],
                "candidate_passed": overall["candidate"]["passed"],
                "flips": xcom["flips"],
            }

        result = _timed(compare, server_pid, profile_out)
        if destination is not None:
            result["flip_lines"], result["flip_lines_directed"] = _count_flip_lines(destination)
        return result

    if variant == "bare":
        parts = urlsplit(api_root)
        headers = {"Authorization": f"Bearer {API_KEY}", "Accept": "application/json"}

        def bare() -> dict[str, Any]:
            conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
            per_run: list[int] = []
            pages = size = 0
            for run_id in (baseline_id, candidate_id):
                path = f"{parts.path}/evals/{eval_id}/runs/{run_id}/output_items"
                count, after = 0, None
                while True:
                    query = {"limit": PAGE_LIMIT, "order": "asc", **({"after": after} if after else {})}
                    conn.request("GET", f"{path}?{urlencode(query)}", headers=headers)
                    resp = conn.getresponse()
                    body = resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"HTTP {resp.status}: {body[:200]!r}")
                    page = json.loads(body)
                    count += len(page["data"])
                    pages += 1
                    size += len(body)
                    if not page["has_more"]:
                        break
                    after = page["last_id"]
                per_run.append(count)
            conn.close()
            return {"items": sum(per_run), "fetched": sum(per_run), "per_run": per_run, "pages": pages,
                    "bytes": size}  # fmt: skip

        return _timed(bare, server_pid, profile_out)

    raise ValueError(f"unknown variant {variant!r}; expected one of {sorted(VARIANTS)}")


# -- parent side -----------------------------------------------------------------------------------------


def _child_argv(variant: str, server: FakeServerProcess, target: Target, out: Path | None) -> list[str]:
    argv = [sys.executable, "-m", "benchmarks.compare_runs", "--child", variant, "--api-root", server.api_root,
            "--eval-id", target.eval_id, "--baseline-id", target.baseline_id, "--candidate-id",
            target.candidate_id, "--server-pid", str(server.pid)]  # fmt: skip
    if out is not None:
        argv += ["--out", str(out)]
    if variant != "bare" and os.environ.get("AOAI_EVALS_AIRFLOW_ENV") != "1":
        # Outside `make bench`: give the child the repository's own Airflow home, never the user's.
        home = REPO_ROOT / ".airflow-home" / f"airflow-{metadata.version('apache-airflow')}"
        argv = ["bash", str(REPO_ROOT / "scripts" / "airflow-env.sh"), str(home), *argv]
    return argv


def _check_result(variant: str, target: Target, result: dict[str, Any]) -> None:
    """A variant must really have read both runs, and a comparison must report the scripted flips: a broken
    path (nothing read, runs not paired, a wrong count) fails the benchmark instead of being timed."""
    n = target.n
    if variant == "bare":
        if result["per_run"] != [n, n]:
            raise RuntimeError(f"bare loop read {result['per_run']} items for two runs of {n}")
    else:
        want: dict[str, Any] = {
            "items": 2 * n,
            "paired": True,
            "matched": n,
            "pass_to_fail": target.pass_to_fail,
            "fail_to_pass": target.fail_to_pass,
            "baseline_passed": target.baseline_passed,
            "candidate_passed": target.candidate_passed,
            "flips": None,
        }
        if variant == "compare+flips":
            flipped = target.pass_to_fail + target.fail_to_pass
            # One criterion: an item that flips overall flips on it, and no item flips on it alone.
            want.update(flips=flipped, flip_lines=flipped, flip_lines_directed=flipped)
        wrong = {key: (result.get(key), value) for key, value in want.items() if result.get(key) != value}
        if wrong:
            raise RuntimeError(f"{variant} at N={n}: (got, want) {wrong}")
    result["items_per_s"] = result["items"] / result["wall_s"]
    result["fetched_per_s"] = result["fetched"] / result["wall_s"]


def measure(*, quick: bool = False, repeats: int = 3) -> dict[str, Any]:
    sizes = QUICK_SIZES if quick else FULL_SIZES
    if quick:
        repeats = min(repeats, QUICK_REPEATS)
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    runs: dict[str, dict[int, list[dict[str, Any]]]] = {v: {n: [] for n in sizes} for v in VARIANTS}
    started, load_before = time.perf_counter(), os.getloadavg()
    with (
        FakeServerProcess(api_key=API_KEY) as server,
        tempfile.TemporaryDirectory(prefix="compare-tmp-", dir=ARTIFACTS_DIR) as work,
    ):
        targets = {n: _make_runs(server, n) for n in sizes}
        for repeat in range(repeats):
            for n in sizes:
                for variant, label in VARIANTS.items():
                    out = Path(work) / f"flips-{n}.jsonl" if variant == "compare+flips" else None
                    try:
                        result = run_child(
                            _child_argv(variant, server, targets[n], out), timeout=CHILD_TIMEOUT
                        )
                        _check_result(variant, targets[n], result)
                    finally:
                        if out is not None:
                            out.unlink(missing_ok=True)
                    runs[variant][n].append(result)
                    print(f"  repeat {repeat + 1}/{repeats} N={n:<7} {label:<40} {result['items_per_s']:>9.0f} items/s "
                          f"peak RSS {result['peak_rss_kb'] / 1024:>7.1f} MB", flush=True)  # fmt: skip
    summary = _summarise(
        runs, targets=targets, quick=quick, repeats=repeats, seconds=time.perf_counter() - started
    )
    summary["machine"]["loadavg_before"] = [round(x, 2) for x in load_before]
    summary["machine"]["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    return summary


def _summarise(runs: dict[str, dict[int, list[dict[str, Any]]]], *, targets: dict[int, Target], quick: bool,
               repeats: int, seconds: float) -> dict[str, Any]:  # fmt: skip
    sizes = tuple(targets)
    table: dict[str, dict[int, dict[str, Any]]] = {}
    for variant, by_n in runs.items():
        table[variant] = {}
        for n, results in by_n.items():
            rates = [r["items_per_s"] for r in results]
            busy = [r["server_busy"] for r in results if r["server_busy"] is not None]
            other = [r["other_busy"] for r in results if r["other_busy"] is not None]
            table[variant][n] = {
                "items_per_s": median(rates),
                "fetched_per_s": median([r["fetched_per_s"] for r in results]),
                "peak_rss_mb": median([r["peak_rss_kb"] / 1024 for r in results]),
                "base_rss_mb": median([r["base_rss_kb"] / 1024 for r in results]),
                "client_busy": median([r["client_busy"] for r in results]),
                "server_busy": median(busy) if busy else None,
                "other_busy": median(other) if other else None,
                "spread_pct": spread_pct(rates),
                "repeats": results,
            }
    for by_size in table.values():
        for n, row in by_size.items():
            row["vs_bare"] = row["items_per_s"] / table["bare"][n]["items_per_s"]
    small, large = sizes
    rss_delta = {v: table[v][large]["peak_rss_mb"] - table[v][small]["peak_rss_mb"] for v in table}
    checks = []
    for n in sizes:
        ratio = table[MEASURED][n]["vs_bare"]
        checks.append({"check": f"N={n}: {MEASURED} / bare items/s >= {MIN_VS_BARE}", "value": f"{ratio:.2f}x",
                       "verdict": "PASS" if ratio >= MIN_VS_BARE else "MISS"})  # fmt: skip
    for variant in ("compare", "compare+flips"):
        delta = rss_delta[variant]
        checks.append({"check": f"{variant} peak RSS at {large} - at {small} <= {RSS_BUDGET_MB:.0f} MB",
                       "value": f"{delta:+.1f} MB", "verdict": "PASS" if delta <= RSS_BUDGET_MB else "MISS"})  # fmt: skip
    return {
        "benchmark": NAME,
        "date": now_iso(),
        "quick": quick,
        "repeats": repeats,
        "sizes": list(sizes),
        "item_bytes": ITEM_BYTES,
        "page_limit": PAGE_LIMIT,
        "scripted": {str(n): asdict(t) for n, t in targets.items()},
        "pinning": {"enabled": can_pin(), "server_cpu": SERVER_CPU, "client_cpu": CLIENT_CPU},
        "machine": machine(),
        "versions": versions(
            "airflow-provider-aoai-evals", "apache-airflow", "requests", "urllib3", "pydantic", "fsspec"
        ),
        "variants": {
            v: {
                "label": VARIANTS[v],
                "rss_delta_mb": rss_delta[v],
                "by_n": {str(n): r for n, r in by_n.items()},
            }
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
    flips = ", ".join(
        f"{int(n):,}: {t['pass_to_fail']} pass->fail / {t['fail_to_pass']} fail->pass"
        for n, t in result["scripted"].items()
    )
    lines = [
        f"compare two runs: N = {' and '.join(f'{n:,}' for n in sizes)} items of ~{result['item_bytes']} bytes per "
        f"run, pages of {result['page_limit']}, median of {result['repeats']} fresh processes per variant ({where})",
        f"scripted flips (checked against every child's result): {flips}",
        "items/s = output items of both runs (2N) per second; fetched/s counts the baseline's second pass too; "
        "other CPU = CPU that other processes used meanwhile, in % of one core (0% on a quiet machine)",
        "",
        f"{'variant':<40}{'N':>8}{'items/s':>10}{'vs bare':>9}{'fetched/s':>11}{'peak RSS MB':>13}"
        f"{'base MB':>9}{'client busy':>13}{'server busy':>13}{'other CPU':>11}{'spread':>9}",
    ]  # fmt: skip
    for v in result["variants"].values():
        for n, r in v["by_n"].items():
            busy = f"{100 * r['server_busy']:.0f}%" if r["server_busy"] is not None else "n/a"
            other = f"{100 * r['other_busy']:.0f}%" if r["other_busy"] is not None else "n/a"
            lines.append(
                f"{v['label']:<40}{int(n):>8}{r['items_per_s']:>10.0f}{r['vs_bare']:>8.2f}x{r['fetched_per_s']:>11.0f}"
                f"{r['peak_rss_mb']:>13.1f}{r['base_rss_mb']:>9.1f}{100 * r['client_busy']:>12.0f}%{busy:>13}"
                f"{other:>11}{r['spread_pct']:>8.1f}%"
            )
    lines.append("")
    small, large = sizes
    lines.extend(
        f"peak RSS at {large} - at {small}, {v['label']}: {v['rss_delta_mb']:+.1f} MB"
        for v in result["variants"].values()
    )
    lines.extend(f"{c['verdict']:<5} {c['check']}: {c['value']}" for c in result["checks"])
    lines.append(
        f"load average (1/5/15 min) before: {result['machine']['loadavg_before']}, "
        f"after: {result['machine']['loadavg_after']}"
    )
    return "\n".join(lines)


def profile(variant: str, *, quick: bool = False, top: int = 25) -> str:
    """cProfile (CPU time of every thread) of one variant's timed section, the larger size, in a pinned child."""
    n = (QUICK_SIZES if quick else FULL_SIZES)[-1]
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    with (
        FakeServerProcess(api_key=API_KEY) as server,
        tempfile.TemporaryDirectory(prefix="compare-tmp-", dir=ARTIFACTS_DIR) as work,
    ):
        target = _make_runs(server, n)
        prof = Path(work) / f"{variant}.prof"
        out = Path(work) / "flips.jsonl" if variant == "compare+flips" else None
        result = run_child([*_child_argv(variant, server, target, out), "--profile-out", str(prof)],
                           timeout=CHILD_TIMEOUT)  # fmt: skip
        _check_result(variant, target, result)
        return profile_report(prof, f"{variant}: 2 x {n} items", top)


def main(*, quick: bool = False, repeats: int = 3) -> dict[str, Any]:
    """Entry point used by ``benchmarks/run_all.py``: measure, print the table, write the JSON artifact."""
    return publish(NAME, measure(quick=quick, repeats=repeats), render)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--quick", action="store_true", help=f"N = {QUICK_SIZES}, {QUICK_REPEATS} repeat (smoke run)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--profile", choices=sorted(VARIANTS), help="print a cProfile of this variant instead"
    )
    child = parser.add_argument_group("child process (internal)")
    child.add_argument("--child", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    child.add_argument("--api-root", help=argparse.SUPPRESS)
    child.add_argument("--eval-id", help=argparse.SUPPRESS)
    child.add_argument("--baseline-id", help=argparse.SUPPRESS)
    child.add_argument("--candidate-id", help=argparse.SUPPRESS)
    child.add_argument("--out", help=argparse.SUPPRESS)
    child.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    child.add_argument("--profile-out", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = _parse(None)
    if args.child:
        measured = run_variant(args.child, api_root=args.api_root, eval_id=args.eval_id,
                               baseline_id=args.baseline_id, candidate_id=args.candidate_id, out=args.out,
                               server_pid=args.server_pid, profile_out=args.profile_out)  # fmt: skip
        print(json.dumps(measured), flush=True)
    elif args.profile:
        print(profile(args.profile, quick=args.quick))
    else:
        main(quick=args.quick, repeats=max(1, args.repeats))

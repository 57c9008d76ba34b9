"""Helpers shared by the benchmark modules: the fake server in its own process, CPU pinning, medians, JSON.

Only the standard library is imported here, because measured child processes import this module too and
must not pay for (or be warmed up by) anything but the client they measure.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import platform
import pstats
import re
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from importlib import metadata
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

REPO_ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS_DIR = REPO_ROOT / ".artifacts" / "bench"
#: The server gets one core and every measured client the other, so neither steals the other's CPU time.
SERVER_CPU = 1
CLIENT_CPU = 0
_LISTENING = re.compile(r"FakeEvalsServer listening on (http://\S+) \(flavor=(\w+)\)")


def can_pin() -> bool:
    """Pin only when ``taskset`` exists and both cores we use are ours: otherwise pinning would oversubscribe."""
    if shutil.which("taskset") is None or not hasattr(os, "sched_getaffinity"):
        return False
    allowed = os.sched_getaffinity(0)
    return len(allowed) >= 2 and {SERVER_CPU, CLIENT_CPU} <= allowed


def pinned(cpu: int, argv: Sequence[str]) -> list[str]:
    """``argv`` prefixed with ``taskset -c cpu`` when pinning is possible (see :func:`can_pin`)."""
    return ["taskset", "-c", str(cpu), *argv] if can_pin() else list(argv)


def proc_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of another process, from ``/proc`` (Linux); ``None`` where unavailable.

    Used to tell whether the *server* was the bottleneck during a client's timed loop.
    """
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces: split after its closing parenthesis.
    fields = raw[raw.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


class FakeServerProcess:
    """``python -m airflow_provider_aoai_evals.testing`` in its own (pinned) process.

    A separate process, not the in-process ``FakeEvalsServer``, so that the server's CPU is never counted as
    the client's and the two do not contend for one GIL. Always stopped on exit, also on errors.
    """

    def __init__(
        self, *, flavor: str = "openai", api_key: str = "sk-bench", start_timeout: float = 30.0
    ) -> None:
        self.flavor = flavor
        self.api_key = api_key
        self.start_timeout = start_timeout
        self.url = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._proc is not None, "server not started"
        return self._proc.pid

    @property
    def api_root(self) -> str:
        return self.url + "/v1" if self.flavor == "openai" else self.url + "/openai/v1"

    def __enter__(self) -> FakeServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        argv = pinned(SERVER_CPU, [
            sys.executable, "-m", "airflow_provider_aoai_evals.testing", "--port", "0", "--flavor", self.flavor,
            "--api-key", self.api_key, "--request-log-limit", "0",
        ])  # fmt: skip
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server; closed in stop()
        self._proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self._stderr)  # noqa: S603
        try:
            self.url = self._read_url()
        except BaseException:
            self.stop()
            raise

    def _read_url(self) -> str:
        assert self._proc is not None
        assert self._proc.stdout is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self._proc.stdout], [], [], 0.2)
            if ready:
                line = self._proc.stdout.readline().decode(errors="replace")
                match = _LISTENING.search(line)
                if match:
                    return match.group(1)
                if not line:  # EOF: the process died
                    break
            elif self._proc.poll() is not None:
                break
        raise RuntimeError(
            f"fake server did not start (exit code {self._proc.poll()}): {self._stderr_tail()}"
        )

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read()[-2000:].decode(errors="replace")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def control(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST to a ``/_fake/`` control route (no auth) and return the JSON answer."""
        request = urllib.request.Request(  # noqa: S310 - loopback URL we started ourselves
            f"{self.url}/_fake/{path}",
            data=json.dumps(payload).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310
            answer: dict[str, Any] = json.loads(resp.read())
            return answer


def run_child(argv: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Run one measured child process pinned to the client core; its last stdout line is a JSON result.

    ``env``, when given, is the child's whole environment (not merged), so a benchmark can keep the
    caller's Airflow settings out of a child that must not touch them.
    """
    done = subprocess.run(  # noqa: S603
        pinned(CLIENT_CPU, argv),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO_ROOT,
        check=False,
        env=dict(env) if env is not None else None,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"benchmark child failed ({done.returncode}): {' '.join(argv)}\n{done.stderr[-3000:]}"
        )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct``-th percentile with linear interpolation between closest ranks (numpy's default).

    ``statistics.quantiles`` cannot give a single percentile of a one-element sample, which a short
    run can produce.
    """
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * pct / 100.0
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (pos - low))


def proc_status_kb(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``...); ``None`` off Linux."""
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else None


def reset_peak_rss() -> bool:
    """Reset this process's ``VmHWM`` to its current RSS (Linux >= 4.0: ``5`` > ``/proc/self/clear_refs``).

    Lets a benchmark read the peak of one phase only, instead of the peak of the process's whole life
    (imports, set-up). False where that is not possible; callers then fall back to sampling ``VmRSS``.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def spread_pct(values: Sequence[float]) -> float:
    """(max - min) / median in percent: how far apart the repeats were, to judge a close ratio."""
    mid = median(values)
    return 100.0 * (max(values) - min(values)) / mid if mid else 0.0


def versions(*dists: str) -> dict[str, str]:
    """Installed versions, read from metadata (no import, so nothing is warmed up in the parent)."""
    found: dict[str, str] = {}
    for dist in dists:
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            found[dist] = "not installed"
    return found


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "pinned": can_pin(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
    }


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def publish(name: str, result: dict[str, Any], render: Callable[[dict[str, Any]], str]) -> dict[str, Any]:
    """What every benchmark's ``main`` ends with: the table on stdout, the JSON artifact written."""
    print()
    print(render(result))
    path = write_json(name, result)
    print(f"results: {path}", flush=True)
    return result


def profile_report(prof: str | Path, label: str, top: int) -> str:
    """A cProfile dump's top entries by own time and by cumulative time, under ``label``."""
    report = []
    for key in ("tottime", "cumulative"):
        buffer = io.StringIO()
        pstats.Stats(str(prof), stream=buffer).strip_dirs().sort_stats(key).print_stats(top)
        report.append(f"--- {label}, top {top} by {key}\n{buffer.getvalue()}")
    return "\n".join(report)


def write_json(name: str, payload: dict[str, Any]) -> Path:
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS_DIR / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
    return path

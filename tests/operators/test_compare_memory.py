"""EvalRunCompareOperator's memory stays bounded: it streams both runs, never lists one.

Not ``compat``: what is checked is this provider's streaming, not Airflow's. A generous cap on peak RSS
growth, far below what listing one run costs, so it catches a run being held, not a few MB of drift; the
memory figures themselves are measured by ``make bench`` (benchmarks/compare_runs.py).
"""

from __future__ import annotations

import gc
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_aoai_evals.operators.compare import EvalRunCompareOperator
from airflow_provider_aoai_evals.testing import FakeEvalsServer, RunScript
from tests.support import served_as_default_connection

KEY = "sk-compare-memory-canary-0b3e"
N = 20_000
#: Same unread file id for both runs: the fake gives both the same synthetic rows, so they pair.
SOURCE = {"type": "jsonl", "source": {"type": "file_id", "id": "file-compare-memory"}}
#: What the comparison holds (the baseline's outcome map, the flips' ids and offsets, a 4 MB spool before it
#: moves to disk) is a fraction of this; ``list(client.list_output_items(...))`` of one run alone is more.
MAX_GROWTH_BYTES = 48 * 1024 * 1024


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEvalsServer]:
    with served_as_default_connection(monkeypatch, KEY) as srv:
        yield srv


def status_bytes(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE).group(1)) * 1024  # type: ignore[union-attr]


def reset_peak_rss() -> None:
    """Set VmHWM (peak RSS) to the current RSS (Linux >= 4.0), so the peak measured is this test's."""
    Path("/proc/self/clear_refs").write_text("5")


def add_run(server: FakeEvalsServer, eval_id: str, n: int, fail_every: int) -> str:
    script = RunScript(queued_seconds=0, in_progress_seconds=0, output_items=n, fail_every=fail_every)
    return str(server.add_run(eval_id, script, data_source=SOURCE)["id"])


@pytest.mark.timeout(120)
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc to reset peak RSS")
def test_20000_items_compared_and_flips_written_with_bounded_memory(
    server: FakeEvalsServer, tmp_path: Path
) -> None:
    eval_id = str(server.add_eval(name="memory")["id"])
    baseline_id = add_run(server, eval_id, N, fail_every=3)  # items 2, 5, 8, ... fail
    run_id = add_run(server, eval_id, N, fail_every=4)  # items 3, 7, 11, ... fail
    out = tmp_path / "flips.jsonl"
    # Warm up (imports, connection pool, first-use caches) on a small run, so they are not measured.
    warm = add_run(server, eval_id, 150, fail_every=4)
    EvalRunCompareOperator(task_id="warm", eval_id=eval_id, run_id=warm, baseline_run_id=baseline_id).execute(
        {}
    )
    gc.collect()

    before = status_bytes("VmRSS")
    reset_peak_rss()
    result = EvalRunCompareOperator(
        task_id="compare", eval_id=eval_id, run_id=run_id, baseline_run_id=baseline_id, destination=str(out)
    ).execute({})
    growth = status_bytes("VmHWM") - before

    # Every 3rd item (i + 1 = 3, 6, ...) fails in the baseline, every 4th in the candidate.
    pass_to_fail = sum(1 for i in range(1, N + 1) if i % 4 == 0 and i % 3 != 0)
    fail_to_pass = sum(1 for i in range(1, N + 1) if i % 3 == 0 and i % 4 != 0)
    assert result["paired"] and result["matched"] == N
    assert (result["overall"]["pass_to_fail"], result["overall"]["fail_to_pass"]) == (
        pass_to_fail,
        fail_to_pass,
    )
    assert result["flips"] == pass_to_fail + fail_to_pass == sum(1 for _ in out.open())
    assert growth < MAX_GROWTH_BYTES, f"peak RSS grew {growth / 2**20:.1f} MB comparing 2 x {N} items"

"""``make bench``: run every benchmark module in :data:`BENCHMARKS` and print its results.

A plain list, not discovery: a benchmark is added by writing ``benchmarks/<name>.py`` with
``main(*, quick: bool, repeats: int) -> dict`` and appending its module name here. Targets that are missed
print MISS but do not fail the run (benchmarks inform, they do not gate); a benchmark that crashes does
(exit 1), because its numbers are then missing.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from types import FrameType

REPO_ROOT = Path(__file__).resolve().parent.parent
# `python benchmarks/run_all.py` puts benchmarks/, not the repository root, on the path.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

#: Module names under ``benchmarks``, run in this order. Trigger and export benchmarks are appended later.
BENCHMARKS: list[str] = [
    "client_get_run",
    "trigger_waits",
    "export_items",
    "compare_runs",
    "ui_page",
    "inline_dataset_poll",
]


def _terminate(signum: int, frame: FrameType | None) -> None:
    """Turn SIGTERM into SystemExit so ``finally`` blocks stop the fake server and child processes."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the provider's benchmarks (see docs/benchmarks.md).")
    parser.add_argument("--quick", action="store_true", help="small N for a smoke run (well under a minute)")
    parser.add_argument(
        "--repeats", type=int, default=3, help="fresh processes per variant; medians reported"
    )
    parser.add_argument(
        "--only", action="append", choices=BENCHMARKS, help="run only this benchmark (repeatable)"
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)

    failed: list[str] = []
    for name in args.only or BENCHMARKS:
        print(f"== benchmark {name}{' (quick)' if args.quick else ''}", flush=True)
        started = time.perf_counter()
        try:
            module: Any = importlib.import_module(f"benchmarks.{name}")
            module.main(quick=args.quick, repeats=max(1, args.repeats))
        except Exception:  # noqa: BLE001 - report and go on with the other benchmarks
            traceback.print_exc()
            failed.append(name)
        print(f"== benchmark {name}: {time.perf_counter() - started:.1f}s", flush=True)
    if failed:
        print(f"benchmarks that crashed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

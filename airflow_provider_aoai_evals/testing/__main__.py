"""``python -m airflow_provider_aoai_evals.testing``: run FakeEvalsServer until SIGTERM/SIGINT.

The first stdout line is the contract with scripts (benchmarks, CI, docker): it names the real port, so
``--port 0`` is safe to use. Anything else goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import resource
import signal
import sys
import threading
from typing import TYPE_CHECKING

from airflow_provider_aoai_evals.testing.errors import ApiError
from airflow_provider_aoai_evals.testing.faults import Fault
from airflow_provider_aoai_evals.testing.run_script import RunScript
from airflow_provider_aoai_evals.testing.server import FakeEvalsServer

if TYPE_CHECKING:
    from types import FrameType


def raise_fd_limit() -> int:
    """Raise the soft open-files limit to the hard one: 5,000 keep-alive clients need 5,000 sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            return target
        except (ValueError, OSError):
            return soft
    return soft


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m airflow_provider_aoai_evals.testing",
        description="Run a loopback fake of the OpenAI / Azure OpenAI Evals API.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on stdout)")
    parser.add_argument("--flavor", choices=["openai", "azure"], default="openai")
    parser.add_argument("--api-key", default="sk-test")
    parser.add_argument(
        "--accept-token",
        action="append",
        default=[],
        help="extra bearer token accepted by the azure flavor (repeatable)",
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="JSON",
        help='fault as JSON, e.g. \'{"kind":"status","status":503,"count":3}\' (repeatable)',
    )
    parser.add_argument(
        "--seed-eval",
        action="append",
        default=[],
        metavar="NAME",
        help="create an eval with this name at start-up (repeatable; ids go to stderr)",
    )
    parser.add_argument("--queued-seconds", type=float, default=None, help="default script: seconds queued")
    parser.add_argument("--run-seconds", type=float, default=None, help="default script: seconds in progress")
    parser.add_argument("--final-status", default=None, help="default script: terminal status")
    parser.add_argument(
        "--output-items",
        type=int,
        default=None,
        help="default script: output items per run (default: the rows of the source, or 10 when unread)",
    )
    parser.add_argument("--item-bytes", type=int, default=None, help="default script: pad items to ~N bytes")
    parser.add_argument(
        "--script",
        default=None,
        metavar="JSON",
        help='default RunScript as JSON, e.g. \'{"outcomes": ["pass", "fail", {"exact": "error"}]}\'',
    )
    parser.add_argument("--disable-cancel-route", action="append", default=[], choices=["plain", "suffix"])
    parser.add_argument(
        "--request-log-limit",
        type=int,
        default=10_000,
        help="request records kept in memory (0 disables the log)",
    )
    parser.add_argument("--backlog", type=int, default=4096)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        script = RunScript.from_dict(json.loads(args.script)) if args.script else RunScript()
    except ApiError as exc:
        parser.error(f"--script: {exc.message}")
    except (ValueError, TypeError) as exc:
        # A bad outcome list, a wrong type or invalid JSON: say so in one line, not a traceback.
        parser.error(f"--script: {exc}")
    for attr, value in (
        ("queued_seconds", args.queued_seconds),
        ("in_progress_seconds", args.run_seconds),
        ("final_status", args.final_status),
        ("output_items", args.output_items),
        ("item_bytes", args.item_bytes),
    ):
        if value is not None:
            setattr(script, attr, value)
    raise_fd_limit()
    server = FakeEvalsServer(
        args.flavor,
        args.api_key,
        host=args.host,
        port=args.port,
        default_script=script,
        request_log_limit=args.request_log_limit,
        backlog=args.backlog,
    )
    server.accepted_tokens.update(args.accept_token)
    for raw in args.fault:
        server.inject(Fault.from_dict(json.loads(raw)))
    for route in args.disable_cancel_route:
        server.disable_cancel_route(route)

    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    server.start()
    for name in args.seed_eval:
        created = server.add_eval(name=name)
        sys.stderr.write(f"seeded eval {name!r}: {created['id']}\n")
    sys.stderr.flush()
    # The one stdout line scripts parse; flushed at once because stdout is a pipe (block-buffered) there.
    sys.stdout.write(f"FakeEvalsServer listening on {server.url} (flavor={server.flavor})\n")
    sys.stdout.flush()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

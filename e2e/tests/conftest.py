# ruff: noqa: T201 - stage timings on stdout, like scripts/timed.sh
"""Session fixtures of the end-to-end suite: one PostgreSQL cluster, one FakeEvalsServer (canary API key), and
the registry of every process started, stopped at the end whatever happens."""

from __future__ import annotations

import secrets
import time
from collections.abc import Generator, Iterator
from typing import Any

import pytest

from e2e.harness import ART, PIDS_FILE, REPO, Fake, Postgres, Procs, Report, dump_logs, log, stage

PROCS = Procs()


def pytest_sessionstart(session: pytest.Session) -> None:
    ART.mkdir(parents=True, exist_ok=True)


@pytest.fixture(scope="session")
def report() -> Report:
    return Report()


@pytest.fixture(scope="session")
def canary() -> str:
    """The API key of the whole run: it must never be written anywhere by Airflow or the provider."""
    return "sk-e2e-canary-" + secrets.token_hex(12)


@pytest.fixture(scope="session")
def procs() -> Iterator[Procs]:
    try:
        yield PROCS
    finally:
        PROCS.stop_all()


@pytest.fixture(scope="session")
def postgres(procs: Procs, report: Report) -> Iterator[Postgres]:
    with stage("postgres-start", report):
        pg = Postgres()
        pg.start()
    try:
        yield pg
    finally:
        procs.stop_all()  # Airflow first: it holds connections
        pg.stop()


@pytest.fixture(scope="session")
def fake(procs: Procs, canary: str) -> Fake:
    return Fake(procs, canary, REPO / ".venv" / "bin" / "python")


@pytest.fixture(scope="session")
def shared() -> dict[str, Any]:
    """State handed from one scenario to a later one (tests run in file order)."""
    return {}


@pytest.fixture(autouse=True)
def _timed(request: pytest.FixtureRequest, report: Report) -> Iterator[None]:
    name = request.node.name
    print(f"== stage e2e/{name}: start", flush=True)
    start = time.monotonic()
    yield
    secs = time.monotonic() - start
    call = getattr(request.node, "rep_call", None)
    status = "ok" if call is not None and call.passed else "FAILED"
    print(f"\n== stage e2e/{name}: {secs:.1f}s ({status})", flush=True)  # after pytest's progress dot
    report.set("stages", **{name: {"seconds": round(secs, 1), "status": status}})


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Generator[None, Any, None]:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)
    if rep.failed:
        log(f"{item.name} failed in {rep.when}: dumping component logs")
        dump_logs(PROCS.procs, lines=60)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    PROCS.stop_all()
    if PIDS_FILE.exists():
        PIDS_FILE.unlink()

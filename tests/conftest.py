"""Session set-up shared by every test: a repo-local, quiet Airflow with a migrated SQLite DB.

``make test`` starts pytest through ``scripts/airflow-env.sh`` (which sets ``AOAI_EVALS_AIRFLOW_ENV=1``).
When pytest is run by hand, this file builds the same environment by running that script, so both ways
use one definition: ``.airflow-home/airflow-<version>/`` under the repo, no ``AIRFLOW*`` variable from the
caller's shell, ``example_dags/`` as the DAGs folder. It must run before anything imports ``airflow``.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent


def _airflow_env() -> dict[str, str]:
    home = REPO / ".airflow-home" / f"airflow-{version('apache-airflow')}"
    out = subprocess.run(
        ["bash", str(REPO / "scripts" / "airflow-env.sh"), str(home), "env", "-0"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return dict(item.split("=", 1) for item in out.split("\0") if item)


if os.environ.get("AOAI_EVALS_AIRFLOW_ENV") != "1":
    if "airflow" in sys.modules:  # pragma: no cover - only a misconfigured plugin gets here
        raise RuntimeError("airflow was imported before tests/conftest.py could set AIRFLOW_HOME")
    os.environ.clear()
    os.environ.update(_airflow_env())

# Quiet: Airflow's own INFO chatter off; tests that check our logs use caplog.set_level.
os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
os.environ.setdefault("AIRFLOW__LOGGING__FAB_LOGGING_LEVEL", "WARNING")


def _migrate_once(home: Path) -> None:
    """``airflow db migrate`` in a subprocess, once per AIRFLOW_HOME; later sessions reuse the DB."""
    done = home / ".migrated"
    db = home / "airflow.db"
    if done.exists() and db.exists():
        return
    home.mkdir(parents=True, exist_ok=True)
    with (home / ".migrate.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel pytest processes: one migrates, the others wait
        if done.exists() and db.exists():
            return
        proc = subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        done.touch()


@pytest.fixture(scope="session", autouse=True)
def airflow_db() -> Path:
    """The session's AIRFLOW_HOME, with its metadata DB migrated (a no-op when it already is)."""
    home = Path(os.environ["AIRFLOW_HOME"])
    _migrate_once(home)
    return home


@pytest.fixture(scope="session")
def core_app(airflow_db: Path) -> Any:
    """Airflow's core API app in process, with the plugins Airflow loads (ours at /aoai-evals) and the
    simple auth manager; built once per session, since building it takes seconds."""
    from airflow.api_fastapi.app import create_app

    return create_app(apps="core")

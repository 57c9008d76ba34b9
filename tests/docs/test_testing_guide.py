"""The testing guide's quick start is a whole test file: run it as a user would, so it cannot rot.

It is written to a folder of its own and run by pytest in a child process with none of this suite's
environment (no ``AIRFLOW*`` variable, no ``PYTHONPATH``, not under this repository's conftest or pytest
settings), so it must bring its own Airflow home, database, connection and DAG, as the guide says.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .markdown import REPO, code_block

pytestmark = pytest.mark.compat


def test_quick_start_example_runs_and_passes(tmp_path: Path) -> None:
    example = tmp_path / "test_nightly_gate.py"
    example.write_text(code_block(REPO / "docs" / "testing.md", "## Quick start"))
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AIRFLOW", "PYTEST", "PYTHON")) and name != "AOAI_EVALS_AIRFLOW_ENV"
    }
    done = subprocess.run(
        [sys.executable, "-m", "pytest", example.name, "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-6000:]
    assert " passed" in out and " failed" not in out and " skipped" not in out, out[-3000:]

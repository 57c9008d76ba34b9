"""The repository needs nothing outside itself: no file may refer to a folder beside the checkout.

Development once read the API contract from a sibling folder that a user's clone never has; the tests then
failed for everyone else. The contract data now lives in ``tests/spec/``, and this test keeps it that way.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

#: Built from parts so that this file does not contain what it looks for.
NEEDLE = "/".join(("..", "shared")).encode()

#: Not the repository's content (VCS data, Airflow state, caches, build output); the walk skips them.
SKIP_DIRS = {
    ".git", ".artifacts", "node_modules", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache",
    "build", "dist", "site",
}  # fmt: skip


def _skipped(name: str) -> bool:
    return name in SKIP_DIRS or name.startswith((".venv", ".airflow-home")) or name.endswith(".egg-info")


def git_files() -> list[Path] | None:
    """What a clone would hold plus new files not ignored; None outside a git checkout (or without git)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
            check=True,
            capture_output=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    # Files deleted in the work tree but still in the index are listed too; they hold nothing.
    paths = (REPO / os.fsdecode(raw) for raw in out.split(b"\0") if raw)
    return [path for path in paths if path.is_file()]


def walked_files() -> list[Path]:
    """An unpacked sdist or a tarball has no .git: every file but the skipped directories' ones."""
    files: list[Path] = []
    for root, dirs, names in os.walk(REPO):
        dirs[:] = [d for d in dirs if not _skipped(d)]
        files.extend(Path(root, name) for name in names)
    return files


def repository_files() -> list[Path]:
    listed = git_files()
    return walked_files() if listed is None else listed


def test_no_file_refers_to_a_folder_beside_the_checkout() -> None:
    files = repository_files()
    assert any(path.name == "pyproject.toml" for path in files), "the file listing found nothing"
    offenders = sorted(str(path.relative_to(REPO)) for path in files if NEEDLE in path.read_bytes())
    assert not offenders, f"refer to {NEEDLE.decode()}, which a clone does not have: {offenders}"


def test_contract_data_is_in_the_repository() -> None:
    spec = REPO / "tests" / "spec"
    for name in ("openai-evals.openapi.yaml", "openai-evals.examples.json", "README.md"):
        assert (spec / name).is_file(), name


def test_the_walk_sees_every_file_git_lists() -> None:
    """The fallback must not skip what the git listing checks (it may see more: ignored files)."""
    listed = git_files()
    if listed is None:
        return  # no git here: the walk is the only listing, nothing to compare it with
    missing = set(listed) - set(walked_files())
    assert not missing, sorted(str(path.relative_to(REPO)) for path in missing)

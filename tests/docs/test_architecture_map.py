"""docs/architecture.md is the map a newcomer finds concepts by: every module of the package is on it, in
the table of its folder, and every module it names exists."""

from __future__ import annotations

import re

import pytest

from tests.docs.markdown import REPO, section

PACKAGE = REPO / "airflow_provider_aoai_evals"
DOC = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
# Modules listed under their package's table, named as in the table's first column.
FOLDERS = {
    "api": "### `api/` (the Evals REST contract; no Airflow)",
    "hooks": "### `hooks/` (Airflow connection -> client)",
    "export": "### `export/` (output items to bytes and files; no Airflow)",
    "ui": "### `ui/` (the Airflow UI plugin)",
    "testing": "### `testing/` (FakeEvalsServer)",
    "operators": "### `operators/`, `sensors/`, `triggers/` (Airflow tasks)",
    "sensors": "### `operators/`, `sensors/`, `triggers/` (Airflow tasks)",
    "triggers": "### `operators/`, `sensors/`, `triggers/` (Airflow tasks)",
    "": "### `operators/`, `sensors/`, `triggers/` (Airflow tasks)",
}


_TASK_FOLDERS = ("operators", "sensors", "triggers", "")


def _modules() -> list[tuple[str, str]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name in ("__init__.py", "__main__.py") or "__pycache__" in path.parts:
            continue
        folder = path.parent.relative_to(PACKAGE).as_posix()
        found.append((folder if folder != "." else "", path.name))
    return found


@pytest.mark.parametrize(("folder", "module"), _modules(), ids=lambda v: v or "top")
def test_every_module_is_on_the_map(folder: str, module: str) -> None:
    assert folder in FOLDERS, f"no table in docs/architecture.md for the folder {folder!r}"
    table = section(DOC, FOLDERS[folder])
    names = set(re.findall(r"`([\w/]+\.py)`", table))
    short = {n.rsplit("/", 1)[-1] for n in names}
    qualified = f"{folder}/{module}" if folder else module
    shared_name = sum(1 for _, other in _modules() if other == module) > 1
    listed = qualified in names or (module in short and not (shared_name and folder in _TASK_FOLDERS))
    assert listed, f"{qualified} is missing from docs/architecture.md"


def test_every_module_on_the_map_exists() -> None:
    for heading in set(FOLDERS.values()):
        for name in re.findall(r"`([\w/]+\.py)`", section(DOC, heading)):
            if "/" in name:
                assert (PACKAGE / name).exists(), name

"""One version number: ``__version__`` in the package, which the build, provider info and metadata all use.

Airflow shows provider info's ``versions``, pip shows the distribution's metadata and the User-Agent sends
``__version__``; when they were written down separately, a release could ship with them disagreeing.
"""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.version import Version

from airflow_provider_aoai_evals import __version__
from airflow_provider_aoai_evals.api.settings import USER_AGENT
from airflow_provider_aoai_evals.get_provider_info import PACKAGE_NAME, get_provider_info

REPO = Path(__file__).resolve().parent.parent


def test_version_is_a_normalised_pep_440_version() -> None:
    assert str(Version(__version__)) == __version__


def test_the_build_reads_the_version_from_the_package() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+; the suite runs on 3.11
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "version" not in pyproject["project"], "a second, static version in pyproject.toml"
    assert "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "airflow_provider_aoai_evals.__version__"
    }


def test_provider_info_and_user_agent_carry_the_version() -> None:
    assert get_provider_info()["versions"] == [__version__]
    assert USER_AGENT.endswith(f"/{__version__}")


def test_installed_metadata_has_the_version() -> None:
    """The venv's install (editable or not) was built from this __version__; `make venv` reinstalls on a bump."""
    try:
        installed = version(PACKAGE_NAME)
    except PackageNotFoundError:
        pytest.skip(f"{PACKAGE_NAME} is not installed, only importable")
    assert installed == __version__


def test_changelog_has_a_section_for_the_version() -> None:
    """A release version needs its section; a development version (``.devN``, ``rcN``) not yet."""
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert re.search(r"^## \[Unreleased\]$", changelog, re.MULTILINE)
    if Version(__version__).is_prerelease:
        return
    assert re.search(rf"^## \[{re.escape(__version__)}\]", changelog, re.MULTILINE), (
        f"CHANGELOG.md has no '## [{__version__}]' section"
    )

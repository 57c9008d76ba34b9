"""Check the files of the built sdist and wheel (``make dist``): ``python scripts/check_dist.py [DIST_DIR]``.

A wheel builds fine when a data file is missing from it, and it is then only the user's install that breaks
(a type checker that ignores the package without ``py.typed``, a plugin page without its JS). So the list of
what must be in the wheel is derived from the repository, not written here: every file of the package
directory that git tracks or would track (or, outside a git checkout, that the tree holds) must be in it,
and nothing else may be, beside the package's own ``.dist-info``. That keeps tests, benchmarks, e2e,
scripts and example DAGs out, and it makes a static asset added later under the package a required file
until ``pyproject.toml`` ships it.
"""

from __future__ import annotations

import argparse
import ast
import os
import subprocess
import sys
import tarfile
import zipfile
from email.parser import HeaderParser
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = "airflow_provider_aoai_evals"
DIST_NAME = "airflow-provider-aoai-evals"
LICENSE_EXPRESSION = "Apache-2.0"
ENTRY_POINT = f"provider_info = {PACKAGE}.get_provider_info:get_provider_info"
#: The Airflow UI plugin (docs/ui.md): without it the wheel installs, and the UI silently has no Evals page.
PLUGIN_ENTRY_POINT = f"aoai_evals_ui = {PACKAGE}.ui.plugin:AoaiEvalsUIPlugin"
#: Top-level folders of the repository that must never be installed; named so a failure says which.
NEVER_SHIPPED = ("tests", "benchmarks", "e2e", "scripts", "example_dags", "docs", "constraints")


def package_version(repo: Path) -> str:
    """``__version__`` read the way setuptools reads it for the build (statically), so no import is needed."""
    tree = ast.parse((repo / PACKAGE / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets
        ):
            value = ast.literal_eval(node.value)
            if isinstance(value, str):
                return value
    raise SystemExit(f"no __version__ string in {PACKAGE}/__init__.py")


def package_files(repo: Path) -> set[str]:
    """The package's files relative to the repository, as the wheel must hold them."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", PACKAGE],
            cwd=repo,
            check=True,
            capture_output=True,
        ).stdout
        listed = {os.fsdecode(raw) for raw in out.split(b"\0") if raw}
        # A file deleted in the work tree but still in the index is not built, so it is not required.
        return {name for name in listed if (repo / name).is_file()}
    except (OSError, subprocess.CalledProcessError):
        files: set[str] = set()
        for root, dirs, names in os.walk(repo / PACKAGE):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            files.update(
                Path(root, n).relative_to(repo).as_posix() for n in names if not n.endswith((".pyc", ".pyo"))
            )
        return files


def one(dist: Path, pattern: str) -> Path:
    found = sorted(dist.glob(pattern))
    if len(found) != 1:
        raise SystemExit(f"expected exactly one {pattern} in {dist}, found {[p.name for p in found]}")
    return found[0]


def check_metadata(kind: str, text: str, version: str, problems: list[str]) -> None:
    meta = HeaderParser().parsestr(text)
    expected = {"Name": DIST_NAME, "Version": version, "License-Expression": LICENSE_EXPRESSION}
    for field, want in expected.items():
        if meta.get(field) != want:
            problems.append(f"{kind} metadata {field} is {meta.get(field)!r}, expected {want!r}")
    if "LICENSE" not in (meta.get_all("License-File") or []):
        problems.append(f"{kind} metadata does not name LICENSE as a License-File")


def check_wheel(wheel: Path, repo: Path, version: str, problems: list[str]) -> int:
    dist_info = f"{PACKAGE}-{version}.dist-info"
    with zipfile.ZipFile(wheel) as zf:
        names = {n for n in zf.namelist() if not n.endswith("/")}
        required = package_files(repo)
        if f"{PACKAGE}/py.typed" not in required:
            problems.append(f"{PACKAGE}/py.typed is not in the repository: the package would not be typed")
        shipped = {n for n in names if n.startswith(f"{PACKAGE}/")}
        problems.extend(f"wheel lacks {n}" for n in sorted(required - shipped))
        problems.extend(
            f"wheel holds {n}, which is not a file of the package" for n in sorted(shipped - required)
        )
        for name in sorted(names - shipped):
            top = name.split("/", 1)[0]
            if top in NEVER_SHIPPED:
                problems.append(f"wheel holds {name} (nothing from {top}/ may be installed)")
            elif top != dist_info:
                problems.append(f"wheel holds {name}, outside the package and its {dist_info}")
        problems.extend(f"wheel holds bytecode {n}" for n in sorted(names) if n.endswith((".pyc", ".pyo")))
        license_name = f"{dist_info}/licenses/LICENSE"
        if license_name not in names:
            problems.append(f"wheel lacks {license_name}")
        elif zf.read(license_name) != (repo / "LICENSE").read_bytes():
            problems.append(f"{license_name} differs from the repository's LICENSE")
        for meta in ("METADATA", "entry_points.txt"):
            if f"{dist_info}/{meta}" not in names:
                problems.append(f"wheel lacks {dist_info}/{meta}")
                return len(names)
        check_metadata("wheel", zf.read(f"{dist_info}/METADATA").decode(), version, problems)
        entry_points = zf.read(f"{dist_info}/entry_points.txt").decode()
        if "[apache_airflow_provider]" not in entry_points or ENTRY_POINT not in entry_points:
            problems.append(f"wheel's entry points lack [apache_airflow_provider] {ENTRY_POINT}")
        if "[airflow.plugins]" not in entry_points or PLUGIN_ENTRY_POINT not in entry_points:
            problems.append(f"wheel's entry points lack [airflow.plugins] {PLUGIN_ENTRY_POINT}")
    return len(names)


def check_sdist(sdist: Path, repo: Path, version: str, problems: list[str]) -> int:
    root = f"{PACKAGE}-{version}"
    with tarfile.open(sdist) as tf:
        members = {m.name: m for m in tf.getmembers() if m.isfile()}
        required = {"LICENSE", "PKG-INFO", "README.md", "pyproject.toml", *package_files(repo)}
        problems.extend(f"sdist lacks {name}" for name in sorted(required) if f"{root}/{name}" not in members)
        for name in sorted(members):
            top = name.removeprefix(f"{root}/").split("/", 1)[0]
            if top in NEVER_SHIPPED:
                problems.append(f"sdist holds {name} (the sdist is the package and its metadata only)")

        def read(name: str) -> bytes:
            handle = tf.extractfile(members[f"{root}/{name}"])
            assert handle is not None
            return handle.read()

        if f"{root}/LICENSE" in members and read("LICENSE") != (repo / "LICENSE").read_bytes():
            problems.append("sdist's LICENSE differs from the repository's")
        if f"{root}/PKG-INFO" in members:
            check_metadata("sdist", read("PKG-INFO").decode(), version, problems)
    return len(members)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("dist", nargs="?", type=Path, default=REPO / "dist")
    parser.add_argument("--repo", type=Path, default=REPO, help="the checkout the files were built from")
    parser.add_argument(
        "--print-version", action="store_true", help="print the package's version, check nothing"
    )
    args = parser.parse_args(argv)
    version = package_version(args.repo)
    if args.print_version:
        print(version)
        return 0
    wheel = one(args.dist, f"{PACKAGE}-{version}-py3-none-any.whl")
    sdist = one(args.dist, f"{PACKAGE}-{version}.tar.gz")
    problems: list[str] = []
    counts = {
        wheel.name: check_wheel(wheel, args.repo, version, problems),
        sdist.name: check_sdist(sdist, args.repo, version, problems),
    }
    for problem in problems:
        print(f"FAIL {problem}", file=sys.stderr)
    if problems:
        return 1
    for name, count in counts.items():
        print(f"ok   {name}: {count} files")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

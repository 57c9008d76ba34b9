"""A destination that cannot be written fails naming ``destination`` and the path, before any API request,
leaving nothing behind; real local paths only (a read-only filesystem through a private bind mount).

Before, such an export fetched the run (and, for a folder at the destination, every item) and then failed
with a bare ``NotADirectoryError`` / ``IsADirectoryError`` / ``OSError``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_aoai_evals.api.errors import EvalsConfigError
from airflow_provider_aoai_evals.testing import FakeEvalsServer
from tests.support import served_as_default_connection

from .export_support import KEY, finished_run, jsonl_items, operator

pytestmark = pytest.mark.compat


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEvalsServer]:
    with served_as_default_connection(monkeypatch, KEY) as srv:
        yield srv


def everything(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def refused(server: FakeEvalsServer, destination: Path) -> EvalsConfigError:
    eval_id, run_id = finished_run(server, 5)
    before = server.count()
    with pytest.raises(EvalsConfigError) as info:
        operator(eval_id, run_id, destination=str(destination)).execute({})
    assert info.value.parameter == "destination"
    assert str(destination) in str(info.value)
    assert server.count() == before  # not even the run was fetched
    return info.value


@pytest.mark.parametrize("below", ["out.jsonl", "sub/out.jsonl", "sub/deeper/out.jsonl"])
def test_a_path_under_a_regular_file(server: FakeEvalsServer, tmp_path: Path, below: str) -> None:
    blocker = tmp_path / "blocker.txt"
    blocker.write_text("keep me\n")
    error = refused(server, blocker / below)
    assert f"{blocker} is a file, not a folder" in str(error)
    assert blocker.read_text() == "keep me\n" and everything(tmp_path) == ["blocker.txt"]


def test_a_path_that_is_an_existing_folder(server: FakeEvalsServer, tmp_path: Path) -> None:
    folder = tmp_path / "items.jsonl"
    (folder / "inside").mkdir(parents=True)
    error = refused(server, folder)
    assert "is an existing folder" in str(error)
    assert everything(tmp_path) == ["items.jsonl", "items.jsonl/inside"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders; see the bind-mount test")
def test_a_read_only_folder(server: FakeEvalsServer, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        for destination in (locked / "out.jsonl", locked / "sub" / "out.jsonl"):
            text = str(refused(server, destination))
            assert "not writable" in text or "Permission denied" in text
        assert everything(locked) == []
    finally:
        locked.chmod(0o755)


#: In a new mount namespace, remount "$1" read-only onto itself, then run "$2 -c $3" there.
READ_ONLY_THEN_RUN = 'mount --bind -o ro "$1" "$1" && exec "$2" -c "$3"'


def _can_bind_mount_read_only(folder: Path) -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        [
            "unshare",
            "-m",
            "sh",
            "-c",
            'mount --bind -o ro "$1" "$1" && ! touch "$1/probe"',
            "sh",
            str(folder),
        ],
        capture_output=True,
        timeout=30,
        check=False,
    )
    return probe.returncode == 0 and not (folder / "probe").exists()


@pytest.mark.parametrize("below", ["out.jsonl", "new/out.jsonl"])
def test_a_read_only_filesystem(server: FakeEvalsServer, tmp_path: Path, below: str) -> None:
    """The export runs in a child process that sees ``frozen/`` as a read-only mount (its own mount
    namespace: nothing changes for any other process); the fake, in this process, counts its requests."""
    frozen = tmp_path / "frozen"
    frozen.mkdir()
    if not _can_bind_mount_read_only(frozen):
        pytest.skip("needs unshare and the right to bind-mount (root with CAP_SYS_ADMIN)")
    eval_id, run_id = finished_run(server, 5)
    destination = frozen / below
    code = (
        "from airflow_provider_aoai_evals.api.errors import EvalsConfigError\n"
        "from airflow_provider_aoai_evals.operators.output_items import ExportEvalRunOutputItemsOperator as Op\n"
        "try:\n"
        f"    Op(task_id='export', eval_id={eval_id!r}, run_id={run_id!r}, destination={str(destination)!r})"
        ".execute({})\n"
        "except EvalsConfigError as exc:\n"
        "    print('REFUSED', exc.parameter, exc)\n"
    )
    before = server.count()
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", READ_ONLY_THEN_RUN, "sh", str(frozen), sys.executable, code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    text = done.stdout + done.stderr
    assert done.returncode == 0, text[-3000:]
    assert f"REFUSED destination Invalid 'destination': cannot write {destination}" in text, text[-3000:]
    assert "Read-only file system" in text or "not writable" in text
    assert server.count() == before
    assert everything(frozen) == []


def test_a_long_file_name_still_gets_a_temporary_file(server: FakeEvalsServer, tmp_path: Path) -> None:
    """The temporary name beside the destination must fit the filesystem's 255-byte limit too."""
    eval_id, run_id = finished_run(server, 3)
    out = tmp_path / ("x" * 245 + ".jsonl")
    result = operator(eval_id, run_id, destination=str(out)).execute({})
    assert result["count"] == 3 == len(jsonl_items(out.read_bytes()))
    assert everything(tmp_path) == [out.name]

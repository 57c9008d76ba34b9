"""ExportEvalRunOutputItemsOperator to Azure Blob Storage, for real: Azurite (the Azure Storage emulator,
installed from npm by ``scripts/azurite.sh``) on a free loopback port, written through ``ObjectStoragePath``
with the microsoft-azure provider's ``abfs://`` filesystem (adlfs).

Skipped only when npm is missing or ``AOAI_EVALS_SKIP_AZURITE=1``; a failing install or start fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_aoai_evals.api.errors import EvalsNotFoundError
from airflow_provider_aoai_evals.testing import FakeEvalsServer, Fault
from tests.support import served_as_default_connection

from .export_support import (
    KEY,
    FaultAfterFirstPage,
    csv_dicts,
    expected_statuses,
    finished_run,
    jsonl_items,
    operator,
)

# The first test may install Azurite from npm (once, cached): more time than the suite's 120 s default.
pytestmark = [pytest.mark.compat, pytest.mark.timeout(600)]
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
#: Azurite's well-known development account (public: https://learn.microsoft.com/azure/storage/common/storage-use-azurite).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
STORAGE_CONN = "azurite_blob"
_LISTENING = re.compile(r"successfully listens on (http://127\.0\.0\.1:\d+)")


@pytest.fixture(scope="session")
def azurite() -> Iterator[str]:
    """Azurite's blob endpoint (``http://127.0.0.1:PORT``), started once per session and stopped after."""
    if os.environ.get("AOAI_EVALS_SKIP_AZURITE") == "1":
        pytest.skip("AOAI_EVALS_SKIP_AZURITE=1")
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed: Azurite cannot be installed")
    script = os.path.join(REPO, "scripts", "azurite.sh")
    subprocess.run(["bash", script, "install"], check=True, capture_output=True, timeout=600)
    proc = subprocess.Popen(
        [
            "bash",
            script,
            "run",
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            "0",
            "--inMemoryPersistence",
            "--silent",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url, seen, deadline = None, [], time.monotonic() + 60
        assert proc.stdout is not None
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            match = _LISTENING.search(line)
            url = match.group(1) if match else None
        if url is None:
            raise RuntimeError(f"Azurite did not start: {''.join(seen)[-2000:]}")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch, azurite: str) -> Iterator[FakeEvalsServer]:
    """FakeEvalsServer plus both connections: the Evals API and Azurite's blob service."""
    connection_string = (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint={azurite}/{ACCOUNT};"
    )
    storage = {"conn_type": "wasb", "extra": {"connection_string": connection_string}}
    monkeypatch.setenv(f"AIRFLOW_CONN_{STORAGE_CONN.upper()}", json.dumps(storage))
    with served_as_default_connection(monkeypatch, KEY) as srv:
        yield srv


@pytest.fixture
def container(server: FakeEvalsServer) -> Iterator[Any]:
    """A fresh container (as an ObjectStoragePath), deleted after the test."""
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    name = f"exports-{uuid.uuid4().hex[:10]}"
    root = ObjectStoragePath(f"abfs://{name}", conn_id=STORAGE_CONN)
    root.fs.mkdir(name)
    yield root
    root.fs.rm(name, recursive=True)


def blobs(root: Any) -> list[str]:
    """Every blob name in the container, hidden temporary ones included."""
    container = root.path.strip("/")
    return sorted(p[len(container) + 1 :] for p in root.fs.find(container))


@pytest.mark.parametrize("n", [0, 1, 250])
def test_export_to_blob_storage(server: FakeEvalsServer, container: Any, n: int) -> None:
    eval_id, run_id = finished_run(server, n)
    dest = container / "runs" / f"{run_id}.jsonl"
    result = operator(eval_id, run_id, destination=dest).execute({})
    items = jsonl_items(dest.read_bytes())
    assert len(items) == len({i["id"] for i in items}) == n == result["count"]
    assert result["by_status"] == expected_statuses(n)
    assert result["bytes"] == dest.fs.size(dest.path) == len(dest.read_bytes())
    assert blobs(container) == [f"runs/{run_id}.jsonl"]
    assert result["path"].startswith("abfs://") and result["path"].endswith(f"runs/{run_id}.jsonl")


@pytest.mark.parametrize("status", ["pass", "fail"])
def test_status_filter_to_a_url_with_storage_conn_id(
    server: FakeEvalsServer, container: Any, status: str
) -> None:
    eval_id, run_id = finished_run(server, 250)
    url = f"abfs://{container.path.strip('/')}/{status}.csv"
    result = operator(
        eval_id, run_id, destination=url, storage_conn_id=STORAGE_CONN, status=status, format="csv"
    ).execute({})
    rows = csv_dicts(container.joinpath(f"{status}.csv").read_bytes())
    assert {r["status"] for r in rows} == {status}
    assert len({r["output_item_id"] for r in rows}) == expected_statuses(250)[status] == result["count"]
    assert blobs(container) == [f"{status}.csv"]


def test_5xx_burst_mid_export_is_survived(server: FakeEvalsServer, container: Any) -> None:
    eval_id, run_id = finished_run(server, 250)
    dest = container / "items.jsonl"
    task = FaultAfterFirstPage(
        task_id="export",
        eval_id=eval_id,
        run_id=run_id,
        destination=dest,
        server=server,
        faults=[Fault(kind="status", status=503, path_regex="/output_items", count=2)],
    )
    assert task.execute({})["count"] == 250
    assert not server.pending_faults
    assert len({i["id"] for i in jsonl_items(dest.read_bytes())}) == 250
    assert blobs(container) == ["items.jsonl"]


@pytest.mark.parametrize("existing", [False, True])
def test_permanent_error_mid_export_leaves_no_blob(
    server: FakeEvalsServer, container: Any, existing: bool
) -> None:
    eval_id, run_id = finished_run(server, 450)
    dest = container / "items.jsonl"
    if existing:
        dest.write_bytes(b"previous export\n")
    task = FaultAfterFirstPage(
        task_id="export",
        eval_id=eval_id,
        run_id=run_id,
        destination=dest,
        server=server,
        faults=[Fault(kind="status", status=404, path_regex="/output_items", count=1)],
    )
    with pytest.raises(EvalsNotFoundError):
        task.execute({})
    assert not server.pending_faults
    if existing:
        assert dest.read_bytes() == b"previous export\n"
        assert blobs(container) == ["items.jsonl"]
    else:
        assert blobs(container) == []  # neither the final blob nor the temporary one


def test_rerun_replaces_the_blob_with_the_same_items_once_each(
    server: FakeEvalsServer, container: Any
) -> None:
    eval_id, run_id = finished_run(server, 250)
    dest = container / "items.jsonl"
    operator(eval_id, run_id, destination=dest).execute({})
    first = {i["id"] for i in jsonl_items(dest.read_bytes())}
    operator(eval_id, run_id, destination=dest).execute({})
    ids = [i["id"] for i in jsonl_items(dest.read_bytes())]
    assert len(ids) == len(set(ids)) == 250 and set(ids) == first
    assert blobs(container) == ["items.jsonl"]

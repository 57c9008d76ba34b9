"""Files API uploads stream the dataset with a Content-Length; runs on the uploaded file size themselves."""

from __future__ import annotations

import io
from typing import Any

import pytest

from airflow_provider_aoai_evals.api.client import EvalsClient
from airflow_provider_aoai_evals.api.errors import (
    EvalsBadRequestError,
    EvalsConfigError,
    EvalsConnectionError,
)
from airflow_provider_aoai_evals.testing import FakeEvalsServer, Fault

from .conftest import make_settings

ROWS = b"".join(b'{"item": {"i": %d}}\n' % i for i in range(300))


@pytest.fixture
def sync_client(server: FakeEvalsServer) -> Any:
    with EvalsClient(make_settings(server)) as client:
        yield client


def test_upload_then_run_on_file(sync_client: EvalsClient, server: FakeEvalsServer, eval_id: str) -> None:
    opened: list[int] = []

    def open_stream() -> io.BytesIO:
        opened.append(1)
        return io.BytesIO(ROWS)

    uploaded = sync_client.upload_file(open_stream, filename="rows.jsonl", size=len(ROWS))
    assert uploaded.id.startswith("file-") and uploaded.bytes == len(ROWS) and uploaded.purpose == "evals"
    record = next(r for r in server.requests if r.api_path == "/files")
    assert int(record.headers["Content-Length"]) > len(ROWS) and "Transfer-Encoding" not in record.headers
    run = sync_client.create_run(
        eval_id, data_source={"type": "jsonl", "source": {"type": "file_id", "id": uploaded.id}}
    )
    server.finish_run(run.id)
    assert sync_client.get_run(eval_id, run.id).result_counts.total == 300  # type: ignore[union-attr]
    assert opened == [1]


def test_upload_not_retried_after_ambiguous_failure_but_retried_when_unsent(
    sync_client: EvalsClient, server: FakeEvalsServer
) -> None:
    server.inject(Fault(kind="status", status=429, retry_after=0.05, path_regex="^/files$"))
    sync_client.upload_file(lambda: io.BytesIO(ROWS), filename="rows.jsonl", size=len(ROWS))
    assert (
        server.count("POST", "^/files$") == 2
    )  # 429: nothing was stored, so the upload ran again (re-opened)
    server.inject(Fault(kind="drop_after", path_regex="^/files$"))
    with pytest.raises(EvalsConnectionError) as info:
        sync_client.upload_file(lambda: io.BytesIO(ROWS), filename="rows.jsonl", size=len(ROWS))
    assert info.value.request_sent
    assert len(server.files) == 2  # the dropped upload was stored once and not sent again


def test_bad_uploads(sync_client: EvalsClient, server: FakeEvalsServer) -> None:
    with pytest.raises(EvalsConfigError) as info:
        sync_client.upload_file(lambda: io.BytesIO(ROWS), filename="../rows.jsonl", size=len(ROWS))
    assert info.value.parameter == "filename" and server.count() == 0
    with pytest.raises(EvalsConnectionError, match="changed during upload"):
        sync_client.upload_file(lambda: io.BytesIO(ROWS), filename="rows.jsonl", size=len(ROWS) + 10)
    with pytest.raises(EvalsBadRequestError, match="line 1"):
        sync_client.upload_file(lambda: io.BytesIO(b"not json\n"), filename="rows.jsonl", size=9)

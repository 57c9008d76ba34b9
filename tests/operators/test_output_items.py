"""ExportEvalRunOutputItemsOperator to local files and XCom, against FakeEvalsServer over real HTTP.

Local destinations are written through ``ObjectStoragePath`` (version-sensitive), so these tests also run
on Airflow 3.1 (``-m compat``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_aoai_evals.api.errors import (
    EvalsAuthenticationError,
    EvalsConfigError,
    EvalsNotFoundError,
)
from airflow_provider_aoai_evals.export.formats import CSV_COLUMNS
from airflow_provider_aoai_evals.operators.output_items import OutputItemsTooLargeForXComError
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

pytestmark = pytest.mark.compat
ITEMS_PATH = r"/output_items$"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEvalsServer]:
    with served_as_default_connection(monkeypatch, KEY) as srv:
        yield srv


def leftovers(folder: Path) -> list[str]:
    """Everything in ``folder`` (recursively) that is not a finished export: temp files above all."""
    return sorted(
        str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name.startswith(".")
    )


# -- input checks -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"format": "xml"}, "format"),
        ({"status": "failed"}, "status"),
        ({"status": "passed"}, "status"),
        ({"destination": 42}, "destination"),
        ({"destination": {"path": "/tmp/x"}}, "destination"),
        ({"max_xcom_items": -1}, "max_xcom_items"),
        ({"max_xcom_items": "10"}, "max_xcom_items"),
    ],
)
def test_bad_static_input_fails_at_construction(kwargs: dict[str, Any], parameter: str) -> None:
    with pytest.raises(EvalsConfigError) as info:
        operator("eval_1", "evalrun_1", **kwargs)
    assert info.value.parameter == parameter and repr(parameter) in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"eval_id": "../evals"}, "eval_id"),
        ({"run_id": "run/../x"}, "run_id"),
        ({"run_id": ""}, "run_id"),
        ({"destination": "relative/out.jsonl"}, "destination"),
        ({"destination": "   "}, "destination"),
        ({"destination": "/tmp/some/dir/"}, "destination"),
    ],
)
def test_bad_rendered_input_fails_before_any_request(
    server: FakeEvalsServer, tmp_path: Path, kwargs: dict[str, Any], parameter: str
) -> None:
    args: dict[str, Any] = {
        "eval_id": "eval_1",
        "run_id": "evalrun_1",
        "destination": str(tmp_path / "x.jsonl"),
    }
    args.update(kwargs)
    task = operator(args.pop("eval_id"), args.pop("run_id"), **args)
    with pytest.raises(EvalsConfigError) as info:
        task.execute({})
    assert info.value.parameter == parameter
    assert server.count() == 0
    assert not list(tmp_path.iterdir())


def test_templated_format_and_status_are_checked_after_rendering(
    server: FakeEvalsServer, tmp_path: Path
) -> None:
    task = operator("eval_1", "evalrun_1", format="{{ params.fmt }}", destination=str(tmp_path / "x"))
    task.format = "parquet"  # what the template rendered to
    with pytest.raises(EvalsConfigError, match="'format'"):
        task.execute({})
    assert server.count() == 0


# -- exports to local files -------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 250])
@pytest.mark.parametrize("style", ["plain", "file_url", "pathlike"])
def test_export_all_items_to_a_local_file(
    server: FakeEvalsServer, tmp_path: Path, n: int, style: str
) -> None:
    eval_id, run_id = finished_run(server, n)
    out = tmp_path / "nested" / "dir" / "items.jsonl"
    destination: Any = {"plain": str(out), "file_url": f"file://{out}", "pathlike": out}[style]
    result = operator(eval_id, run_id, destination=destination).execute({})

    items = jsonl_items(out.read_bytes())
    assert len(items) == n == result["count"]
    assert len({item["id"] for item in items}) == n
    assert {item["datasource_item_id"] for item in items} == set(range(n))
    assert result["by_status"] == expected_statuses(n)
    assert result["format"] == "jsonl" and result["bytes"] == out.stat().st_size
    assert result["path"].endswith(str(out))
    assert leftovers(tmp_path) == []
    # Items as the API sent them: every field kept, no defaults added.
    if n:
        assert items[0]["object"] == "eval.run.output_item" and items[0]["run_id"] == run_id
        assert items[0]["sample"]["usage"]["total_tokens"] > 0


@pytest.mark.parametrize("status", ["pass", "fail"])
def test_status_filter(server: FakeEvalsServer, tmp_path: Path, status: str) -> None:
    eval_id, run_id = finished_run(server, 250)
    out = tmp_path / f"{status}.jsonl"
    result = operator(eval_id, run_id, destination=str(out), status=status).execute({})
    items = jsonl_items(out.read_bytes())
    assert {item["status"] for item in items} == {status}
    assert len(items) == result["count"] == expected_statuses(250)[status]
    assert result["by_status"] == {status: len(items)}
    queries = [r.query for r in server.requests if r.path.endswith("/output_items")]
    assert queries and all(q.get("status") == status and q.get("limit") == "100" for q in queries)


def test_csv_has_one_row_per_grader_result(server: FakeEvalsServer, tmp_path: Path) -> None:
    criteria = [
        {
            "type": "string_check",
            "name": "exact",
            "input": "{{sample.output_text}}",
            "reference": "{{item.ground_truth}}",
            "operation": "eq",
        },
        {
            "type": "string_check",
            "name": "loose",
            "input": "{{sample.output_text}}",
            "reference": "{{item.ground_truth}}",
            "operation": "ilike",
        },
    ]
    eval_id = str(server.add_eval(name="two graders", testing_criteria=criteria)["id"])
    from airflow_provider_aoai_evals.testing import RunScript

    run_id = str(
        server.add_run(
            eval_id, RunScript(queued_seconds=0, in_progress_seconds=0, output_items=30, error_every=10)
        )["id"]
    )
    out = tmp_path / "items.csv"
    result = operator(eval_id, run_id, destination=str(out), format="csv").execute({})
    rows = csv_dicts(out.read_bytes())
    assert out.read_text().splitlines()[0] == ",".join(CSV_COLUMNS)
    errored = [r for r in rows if r["error"]]
    graded = [r for r in rows if not r["error"]]
    assert len(errored) == 3 and all(r["grader"] == "" and r["status"] == "fail" for r in errored)
    assert len(graded) == 2 * 27 and {r["grader"].rsplit("-", 5)[0] for r in graded} == {"exact", "loose"}
    assert {r["passed"] for r in graded} == {"true", "false"}
    assert all(r["model"] and int(r["total_tokens"]) > 0 for r in graded)
    assert len({r["output_item_id"] for r in rows}) == 30 == result["count"]
    assert result["format"] == "csv" and result["bytes"] == out.stat().st_size


def test_rerun_replaces_the_file_with_the_same_items_once_each(
    server: FakeEvalsServer, tmp_path: Path
) -> None:
    eval_id, run_id = finished_run(server, 250)
    out = tmp_path / "items.jsonl"
    first = operator(eval_id, run_id, destination=str(out)).execute({})
    ids_first = [item["id"] for item in jsonl_items(out.read_bytes())]
    second = operator(eval_id, run_id, destination=str(out)).execute({})
    ids_second = [item["id"] for item in jsonl_items(out.read_bytes())]
    assert len(ids_second) == len(set(ids_second)) == 250
    assert set(ids_first) == set(ids_second)
    assert first["count"] == second["count"] and first["bytes"] == second["bytes"]
    assert leftovers(tmp_path) == []


# -- faults mid-export ------------------------------------------------------------------------------------


def test_5xx_burst_mid_export_is_survived(server: FakeEvalsServer, tmp_path: Path) -> None:
    eval_id, run_id = finished_run(server, 250)
    out = tmp_path / "items.jsonl"
    task = FaultAfterFirstPage(
        task_id="export",
        eval_id=eval_id,
        run_id=run_id,
        destination=str(out),
        server=server,
        faults=[Fault(kind="status", status=503, path_regex="/output_items", count=2)],
    )
    result = task.execute({})
    assert not server.pending_faults  # both 503s were met
    assert sum(1 for r in server.requests if r.status == 503) == 2
    items = jsonl_items(out.read_bytes())
    assert len({item["id"] for item in items}) == len(items) == 250 == result["count"]
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(("status", "error"), [(401, EvalsAuthenticationError), (404, EvalsNotFoundError)])
@pytest.mark.parametrize("existing", [False, True])
def test_permanent_error_mid_export_leaves_no_file(
    server: FakeEvalsServer, tmp_path: Path, status: int, error: type[Exception], existing: bool
) -> None:
    eval_id, run_id = finished_run(server, 450)
    out = tmp_path / "items.jsonl"
    if existing:
        out.write_bytes(b"previous export\n")
    task = FaultAfterFirstPage(
        task_id="export",
        eval_id=eval_id,
        run_id=run_id,
        destination=str(out),
        server=server,
        faults=[Fault(kind="status", status=status, path_regex="/output_items", count=1)],
    )
    with pytest.raises(error):
        task.execute({})
    assert not server.pending_faults
    # Nothing half-written at the final path: absent, or the previous file untouched; no temp file left.
    assert (out.read_bytes() == b"previous export\n") if existing else not out.exists()
    assert leftovers(tmp_path) == []


def test_run_not_found_fails_before_any_file(server: FakeEvalsServer, tmp_path: Path) -> None:
    eval_id, _ = finished_run(server, 3)
    with pytest.raises(EvalsNotFoundError):
        operator(eval_id, "evalrun_missing", destination=str(tmp_path / "x.jsonl")).execute({})
    assert not list(tmp_path.iterdir())


def test_interrupted_export_leaves_no_file(server: FakeEvalsServer, tmp_path: Path) -> None:
    """A kill as Airflow delivers it (SIGTERM -> an exception in the task's main thread), mid-export."""
    eval_id, run_id = finished_run(server, 450)
    out = tmp_path / "items.jsonl"

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt("task killed")

    previous = signal.signal(signal.SIGALRM, interrupt)
    task = FaultAfterFirstPage(
        task_id="export",
        eval_id=eval_id,
        run_id=run_id,
        destination=str(out),
        server=server,
        faults=[Fault(kind="slow", delay=3.0, path_regex="/output_items")],
    )
    try:
        signal.setitimer(signal.ITIMER_REAL, 1.0)
        with pytest.raises(KeyboardInterrupt):
            task.execute({})
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert not out.exists()
    assert leftovers(tmp_path) == []


# -- XCom mode --------------------------------------------------------------------------------------------


def test_small_run_goes_to_xcom(server: FakeEvalsServer) -> None:
    eval_id, run_id = finished_run(server, 7)
    result = operator(eval_id, run_id).execute({})
    assert result["path"] is None and result["count"] == 7 == len(result["items"])
    assert result["by_status"] == expected_statuses(7)
    assert {item["datasource_item_id"] for item in result["items"]} == set(range(7))
    assert result["bytes"] > 0


def test_xcom_csv_mode_returns_rows(server: FakeEvalsServer) -> None:
    eval_id, run_id = finished_run(server, 4)
    result = operator(eval_id, run_id, format="csv").execute({})
    assert [row["datasource_item_id"] for row in result["items"]] == [0, 1, 2, 3]
    assert set(result["items"][0]) == set(CSV_COLUMNS)


def test_xcom_limit_known_from_the_run_fails_without_fetching_items(server: FakeEvalsServer) -> None:
    eval_id, run_id = finished_run(server, 250)
    with pytest.raises(OutputItemsTooLargeForXComError) as info:
        operator(eval_id, run_id, max_xcom_items=100).execute({})
    assert "destination" in str(info.value) and "250" in str(info.value)
    assert server.count("GET", ITEMS_PATH) == 0


def test_xcom_limit_stops_as_soon_as_it_is_exceeded(server: FakeEvalsServer) -> None:
    eval_id, run_id = finished_run(server, 450)
    with pytest.raises(OutputItemsTooLargeForXComError, match="destination"):
        operator(eval_id, run_id, status="pass", max_xcom_items=10).execute({})
    # One request of 11 items settles it; never a page of 100, never the whole run.
    [request] = [r for r in server.requests if r.path.endswith("/output_items")]
    assert request.query["limit"] == "11"


def test_xcom_limit_exactly_met_succeeds(server: FakeEvalsServer) -> None:
    eval_id, run_id = finished_run(server, 30)
    result = operator(eval_id, run_id, status="fail", max_xcom_items=10).execute({})
    assert result["count"] == 10


def test_progress_is_logged(server: FakeEvalsServer, tmp_path: Path) -> None:
    """In a child process with INFO task logs (this suite runs Airflow at WARNING): pages, items, bytes."""
    eval_id, run_id = finished_run(server, 150)
    out = tmp_path / "x.jsonl"
    code = (
        "from airflow_provider_aoai_evals.operators.output_items import ExportEvalRunOutputItemsOperator as Op\n"
        f"Op(task_id='export', eval_id={eval_id!r}, run_id={run_id!r}, destination={str(out)!r}).execute({{}})\n"
    )
    env = {**os.environ, "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    text = done.stdout + done.stderr
    assert done.returncode == 0, text[-3000:]
    assert "Export progress: 1 pages, 100 items" in text
    assert "Exported 150 output items" in text and "2 pages" in text and f"{out.stat().st_size} bytes" in text
    assert KEY not in text

"""Helpers shared by the export operator's tests (plain functions, no fixtures, so other test modules in
this package are not affected): a FakeEvalsServer connection, runs of a given size, and file checks."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from airflow_provider_aoai_evals.operators.output_items import ExportEvalRunOutputItemsOperator
from airflow_provider_aoai_evals.testing import FakeEvalsServer, RunScript

KEY = "sk-export-canary-31fe"


def finished_run(server: FakeEvalsServer, n: int, **script: Any) -> tuple[str, str]:
    """A completed run with ``n`` output items: (eval_id, run_id)."""
    eval_id = str(server.add_eval(name="export")["id"])
    run = server.add_run(
        eval_id, RunScript(queued_seconds=0, in_progress_seconds=0, output_items=n, **script)
    )
    return eval_id, str(run["id"])


def operator(eval_id: str, run_id: str, **kw: Any) -> ExportEvalRunOutputItemsOperator:
    return ExportEvalRunOutputItemsOperator(task_id="export", eval_id=eval_id, run_id=run_id, **kw)


def jsonl_items(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.decode().splitlines()]


def csv_dicts(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode())))


def expected_statuses(n: int, fail_every: int = 3) -> dict[str, int]:
    fails = n // fail_every if fail_every else 0
    return {k: v for k, v in {"pass": n - fails, "fail": fails}.items() if v}


class FaultAfterFirstPage(ExportEvalRunOutputItemsOperator):
    """The operator, with faults injected into the server once the first page has been written, so the
    next page request meets them: the export is then really mid-way."""

    def __init__(self, *, server: FakeEvalsServer, faults: list[Any], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._server = server
        self._faults = faults

    def _progress(self, started: float) -> Any:
        inner = super()._progress(started)

        def on_page(stats: Any) -> None:
            if stats.pages == 1:
                for fault in self._faults:
                    self._server.inject(fault)
            inner(stats)

        return on_page

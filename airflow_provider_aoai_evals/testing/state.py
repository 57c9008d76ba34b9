"""The fake's in-memory store: evals, runs, uploaded files and the scripts queued for the next runs.

Nothing here does I/O. A single lock guards the store because the aiohttp handlers run on the server's
event-loop thread while tests mutate state from their own thread; every critical section is short and
never awaits, so the lock cannot stall the loop for long.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_aoai_evals.testing.errors import ApiError, invalid_value, not_found
from airflow_provider_aoai_evals.testing.paging import (
    ITEM_STATUS_FILTERS,
    RUN_STATUS_FILTERS,
    Page,
    item_page_indices,
    page_of,
    parse_limit,
    parse_order,
    parse_status,
)
from airflow_provider_aoai_evals.testing.records import NON_TERMINAL_STATUSES, EvalRecord, RunRecord
from airflow_provider_aoai_evals.testing.run_script import (
    UNREAD_SOURCE_ITEMS,
    RunScript,
    bind_script_outcomes,
    check_result_counts,
    item_count,
)
from airflow_provider_aoai_evals.testing.validation import (
    parse_upload_rows,
    response_data_source_config,
    validate_data_source,
    validate_eval_body,
    validate_eval_id,
    validate_metadata,
    validate_name,
)

# ApiError and UNREAD_SOURCE_ITEMS are named from here by docs/testing.md and tests, so they stay importable.
__all__ = ["UNREAD_SOURCE_ITEMS", "ApiError", "FakeState", "RunScript"]


def _new_hex() -> str:
    return uuid.uuid4().hex


@dataclass
class FakeState:
    """Everything the fake remembers. Public methods take the lock; ``_``-methods expect it held."""

    flavor: str = "openai"
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time
    default_script: RunScript = field(default_factory=RunScript)
    lock: threading.RLock = field(default_factory=threading.RLock)
    evals: dict[str, EvalRecord] = field(default_factory=dict)
    runs: dict[str, RunRecord] = field(default_factory=dict)
    runs_by_eval: dict[str, list[str]] = field(default_factory=dict)
    next_scripts: deque[RunScript] = field(default_factory=deque)
    #: Uploaded files (purpose ``evals``): their JSONL rows feed runs whose source is ``file_id``.
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    file_rows: dict[str, list[Any]] = field(default_factory=dict)
    seq: int = 0
    # Instrumentation for tests that assert paging stays O(total): items built and indices scanned.
    item_builds: int = 0
    scan_steps: int = 0

    def reset(self) -> None:
        with self.lock:
            self.evals.clear()
            self.runs.clear()
            self.runs_by_eval.clear()
            self.next_scripts.clear()
            self.files.clear()
            self.file_rows.clear()
            self.default_script = RunScript()
            self.item_builds = 0
            self.scan_steps = 0

    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    # ---- evals ----------------------------------------------------------------------------------
    def create_eval(self, body: dict[str, Any], eval_id: str | None = None) -> dict[str, Any]:
        """``eval_id`` seeds an eval under an id a DAG already names (one made in the dashboard)."""
        validate_eval_id(eval_id)
        config, criteria = validate_eval_body(body)
        metadata = validate_metadata(body.get("metadata"))
        name = validate_name(body)
        with_ids = []
        for crit in criteria:
            crit = dict(crit)
            crit.setdefault("id", f"{crit['name']}-{uuid.uuid4()}")
            with_ids.append(crit)
        with self.lock:
            if eval_id is not None and eval_id in self.evals:
                raise ApiError(400, f"Eval {eval_id!r} already exists.", param="id", code="invalid_value")
            record = EvalRecord(
                id=eval_id or f"eval_{_new_hex()}",
                name=name or "Untitled eval",
                data_source_config=response_data_source_config(config),
                testing_criteria=with_ids,
                metadata=metadata,
                created_at=int(self.wall_clock()),
                updated_at=self.clock(),
                seq=self._next_seq(),
            )
            self.evals[record.id] = record
            self.runs_by_eval[record.id] = []
            return record.to_api()

    def _get_eval(self, eval_id: str) -> EvalRecord:
        record = self.evals.get(eval_id)
        if record is None:
            raise not_found("Eval", eval_id, "eval_id")
        return record

    def get_eval(self, eval_id: str) -> dict[str, Any]:
        with self.lock:
            return self._get_eval(eval_id).to_api()

    def update_eval(self, eval_id: str, body: dict[str, Any]) -> dict[str, Any]:
        metadata = validate_metadata(body.get("metadata")) if "metadata" in body else None
        with self.lock:
            record = self._get_eval(eval_id)
            if isinstance(body.get("name"), str):
                record.name = body["name"]
            if "metadata" in body:
                record.metadata = metadata
            record.updated_at = self.clock()
            return record.to_api()

    def delete_eval(self, eval_id: str) -> dict[str, Any]:
        with self.lock:
            self._get_eval(eval_id)
            del self.evals[eval_id]
            for run_id in self.runs_by_eval.pop(eval_id, []):
                self.runs.pop(run_id, None)
            return {"object": "eval.deleted", "deleted": True, "eval_id": eval_id}

    def list_evals(self, query: dict[str, str]) -> dict[str, Any]:
        limit = parse_limit(query.get("limit"))
        order = parse_order(query.get("order"))
        order_by = query.get("order_by") or "created_at"
        if order_by not in ("created_at", "updated_at"):
            raise invalid_value(order_by, "'created_at' and 'updated_at'", "order_by")
        with self.lock:
            records = list(self.evals.values())
            if order_by == "updated_at":
                records.sort(key=lambda r: (r.updated_at, r.seq))
            else:
                records.sort(key=lambda r: (r.created_at, r.seq))
            if order == "desc":
                records.reverse()
            return page_of(records, query.get("after"), limit, lambda r: r.id, lambda r: r.to_api()).to_api()

    # ---- runs -----------------------------------------------------------------------------------
    def create_run(
        self, eval_id: str, body: dict[str, Any], script: RunScript | None = None
    ) -> dict[str, Any]:
        with self.lock:
            evaluation = self._get_eval(eval_id)
        data_source = validate_data_source(body.get("data_source"))
        metadata = validate_metadata(body.get("metadata"))
        name = validate_name(body)
        raw_source = data_source.get("source")
        source: dict[str, Any] = raw_source if isinstance(raw_source, dict) else {}
        with self.lock:
            from_queue = script is None
            if script is None:
                script = self.next_scripts[0] if self.next_scripts else self.default_script
            rows = source.get("content") if source.get("type") == "file_content" else None
            if source.get("type") == "file_id":
                rows = self.file_rows.get(str(source.get("id")), rows)
            n_items = item_count(script, rows)
            model = script.model or data_source.get("model") or "gpt-4o-mini"
            evaluation = self._get_eval(eval_id)
            criteria = evaluation.testing_criteria
            outcomes = bind_script_outcomes(script, criteria, n_items, eval_id)
            run_id = f"evalrun_{_new_hex()}"
            run = RunRecord(
                id=run_id,
                eval_id=eval_id,
                name=name or f"{model}-run",
                model=model,
                metadata=metadata,
                data_source=data_source,
                script=script,
                created_at=int(self.wall_clock()),
                created_mono=self.clock(),
                seq=self._next_seq(),
                report_url=self._report_url(eval_id, run_id),
                criteria=[(str(c.get("id") or c.get("name")), str(c.get("type"))) for c in criteria],
                rows=rows,
                n_items=n_items,
                outcomes=outcomes,
            )
            if outcomes is not None and script.result_counts is not None:
                check_result_counts(script.result_counts, run.tally(n_items))
            # Taken only now: a script refused above stays queued, as a refused request changes nothing.
            if from_queue and self.next_scripts and self.next_scripts[0] is script:
                self.next_scripts.popleft()
            run.prepare_padding()
            self.runs[run_id] = run
            self.runs_by_eval[eval_id].append(run_id)
            return run.to_api(self.clock())

    def _report_url(self, eval_id: str, run_id: str) -> str:
        if self.flavor == "azure":
            return (
                f"https://ai.azure.com/resource/evaluation/{eval_id}/run/{run_id}"
                "?wsid=/subscriptions/fake/resourceGroups/fake/providers/Microsoft.CognitiveServices/"
                "accounts/fake"
            )
        return f"https://platform.openai.com/evaluations/{eval_id}?run_id={run_id}"

    def _get_run(self, eval_id: str, run_id: str) -> RunRecord:
        self._get_eval(eval_id)
        run = self.runs.get(run_id)
        if run is None or run.eval_id != eval_id:
            raise not_found("Eval run", run_id, "run_id")
        return run

    def find_run(self, run_id: str) -> RunRecord:
        with self.lock:
            run = self.runs.get(run_id)
            if run is None:
                raise not_found("Eval run", run_id, "run_id")
            return run

    def get_run(self, eval_id: str, run_id: str, status_override: str | None = None) -> dict[str, Any]:
        with self.lock:
            return self._get_run(eval_id, run_id).to_api(self.clock(), status_override)

    def cancel_run(self, eval_id: str, run_id: str, status_override: str | None = None) -> dict[str, Any]:
        with self.lock:
            run = self._get_run(eval_id, run_id)
            now = self.clock()
            if run.status_at(now) in NON_TERMINAL_STATUSES:
                run.forced_visible = run.visible_items(now)
                run.forced_status = "canceled"
            return run.to_api(now, status_override)

    def set_run_status(self, run_id: str, status: str) -> dict[str, Any]:
        with self.lock:
            run = self.find_run(run_id)
            now = self.clock()
            if status == "canceled":
                run.forced_visible = run.visible_items(now)
            elif status in NON_TERMINAL_STATUSES:
                run.forced_visible = run.visible_items(now) if status == "in_progress" else 0
            else:
                run.forced_visible = None
            run.forced_status = status
            return run.to_api(now)

    def delete_run(self, eval_id: str, run_id: str) -> dict[str, Any]:
        with self.lock:
            self._get_run(eval_id, run_id)
            del self.runs[run_id]
            self.runs_by_eval[eval_id].remove(run_id)
        if self.flavor == "azure":
            return {"object": "eval_run.deleted", "deleted": True, "eval_run_id": run_id}
        return {"object": "eval.run.deleted", "deleted": True, "run_id": run_id}

    def list_runs(
        self, eval_id: str, query: dict[str, str], status_override: str | None = None
    ) -> dict[str, Any]:
        limit = parse_limit(query.get("limit"))
        order = parse_order(query.get("order"))
        status = parse_status(
            query.get("status"),
            RUN_STATUS_FILTERS,
            "'queued', 'in_progress', 'completed', 'canceled', and 'failed'",
        )
        with self.lock:
            self._get_eval(eval_id)
            now = self.clock()
            records = [self.runs[r] for r in self.runs_by_eval[eval_id]]  # insertion order == created order
            if order == "desc":
                records.reverse()
            keep = None if status is None else (lambda r: r.status_at(now) == status)
            return page_of(
                records,
                query.get("after"),
                limit,
                lambda r: r.id,
                lambda r: r.to_api(now, status_override),
                keep,
            ).to_api()

    # ---- output items -------------------------------------------------------------------------
    def get_output_item(self, eval_id: str, run_id: str, item_id: str) -> dict[str, Any]:
        with self.lock:
            run = self._get_run(eval_id, run_id)
            index = run.parse_item_id(item_id)
            if index is None or index >= run.visible_items(self.clock()):
                raise not_found("Output item", item_id, "output_item_id")
            self.item_builds += 1
            return run.build_item(index)

    def list_output_items(self, eval_id: str, run_id: str, query: dict[str, str]) -> dict[str, Any]:
        limit = parse_limit(query.get("limit"))
        order = parse_order(query.get("order"))
        status = parse_status(query.get("status"), ITEM_STATUS_FILTERS, "'fail' and 'pass'")
        after = query.get("after")
        with self.lock:
            run = self._get_run(eval_id, run_id)
            visible = run.visible_items(self.clock())
        picked, has_more, scanned = item_page_indices(run, visible, after, order, limit, status)
        data = [run.build_item(i) for i in picked]
        with self.lock:
            self.item_builds += len(data)
            self.scan_steps += scanned
        return Page(data, has_more).to_api()

    # ---- files ----------------------------------------------------------------------------------
    def create_file(self, filename: str, purpose: str, content: bytes) -> dict[str, Any]:
        """Store an uploaded JSONL file whose rows feed runs that name it as their ``file_id`` source."""
        rows = parse_upload_rows(filename, purpose, content)
        with self.lock:
            file_id = f"file-{_new_hex()[:24]}"
            record = {
                "id": file_id,
                "object": "file",
                "bytes": len(content),
                "created_at": int(self.wall_clock()),
                "filename": filename,
                "purpose": purpose,
                "status": "processed",
            }
            self.files[file_id] = record
            self.file_rows[file_id] = rows
            return dict(record)

    def get_file(self, file_id: str) -> dict[str, Any]:
        with self.lock:
            if file_id not in self.files:
                raise ApiError(404, f"No such File object: {file_id}", param="id", code="not_found")
            return dict(self.files[file_id])

"""In-memory state of the fake Evals service: evals, runs, scripted lifecycles and lazy output items.

Nothing here does I/O. A single lock guards the store because the aiohttp handlers run on the server's
event-loop thread while tests mutate state from their own thread; every critical section is short and
never awaits, so the lock cannot stall the loop for long.
"""

from __future__ import annotations

import math
import re
import threading
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from airflow_provider_aoai_evals.testing.outcomes import (
    OutcomeError,
    RunOutcomes,
    Tally,
    Verdict,
    bind_outcomes,
    compile_outcomes,
    pattern_verdicts,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from airflow_provider_aoai_evals.testing.outcomes import CompiledOutcomes

NON_TERMINAL_STATUSES = frozenset({"queued", "in_progress"})
RUN_STATUS_FILTERS = frozenset({"queued", "in_progress", "completed", "canceled", "failed"})
ITEM_STATUS_FILTERS = frozenset({"pass", "fail"})
MAX_LIMIT = 100
DEFAULT_LIMIT = 20
ITEM_INDEX_HEX = 8
#: Output items of a run whose source the fake cannot read (a file it never received, stored completions,
#: responses): enough for a pass rate, so a gate on such a run judges items rather than "no results".
UNREAD_SOURCE_ITEMS = 10
#: The provider's id rule (api.validation), repeated because the fake imports nothing of the provider.
_EVAL_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,255}$")

DEFAULT_TESTING_CRITERIA: list[dict[str, Any]] = [
    {
        "type": "string_check",
        "name": "exact match",
        "input": "{{sample.output_text}}",
        "reference": "{{item.ground_truth}}",
        "operation": "eq",
    }
]
DEFAULT_DATA_SOURCE_CONFIG: dict[str, Any] = {
    "type": "custom",
    "item_schema": {
        "type": "object",
        "properties": {"input": {"type": "string"}, "ground_truth": {"type": "string"}},
        "required": ["input", "ground_truth"],
    },
    "include_sample_schema": True,
}
_SYSTEM_PROMPT = (
    "Categorize a given news headline into one of the following topics: Technology, Markets, World, "
    "Business, or Sports. Respond with the chosen category as a single word."
)
_TOPICS = ("Technology", "Markets", "World", "Business", "Sports")


class ApiError(Exception):
    """An error the fake answers with the flavor's JSON error body.

    Raised deep inside state operations so validation lives next to the data it checks, and the HTTP
    layer turns it into the right status and body shape in one place.
    """

    def __init__(
        self, status: int, message: str, *, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code


@dataclass
class RunScript:
    """How one fake run behaves over time and what it reports.

    Timings are relative to the run's creation, so a status is a pure function of the clock and a run
    costs nothing while nobody looks at it. ``None`` for a count or result field means "derive it from
    the output items", which keeps result_counts, per-criterion results and items consistent unless a
    test deliberately makes them disagree.
    """

    queued_seconds: float = 0.5
    in_progress_seconds: float = 2.0
    final_status: str = "completed"
    result_counts: dict[str, int] | None = None
    per_testing_criteria_results: list[dict[str, Any]] | None = None
    null_results: bool = False
    output_items: int | None = None
    fail_every: int = 3
    error_every: int = 0
    error: dict[str, Any] | None = None
    item_bytes: int = 0
    model: str | None = None
    #: By datasource item index: "pass", "fail", "error" or {criterion name: one of those}. Rules in
    #: testing.outcomes; items past the end of the list follow fail_every / error_every.
    outcomes: list[str | dict[str, str]] | None = None

    def __post_init__(self) -> None:
        # Checked here so a typo fails where the script is written (or POSTed), not at the run it drives.
        self._compiled: tuple[list[Any], CompiledOutcomes] | None = None
        self.compiled_outcomes()

    def compiled_outcomes(self) -> CompiledOutcomes | None:
        """``outcomes`` checked and folded into codes, once per list: one script may drive many runs."""
        if self.outcomes is None:
            return None
        if self.per_testing_criteria_results is not None:
            raise OutcomeError(
                "RunScript: outcomes decide per_testing_criteria_results; script one or the other, not both"
            )
        cached = self._compiled
        if cached is None or cached[0] is not self.outcomes or len(cached[1]) != len(self.outcomes):
            cached = self._compiled = (self.outcomes, compile_outcomes(self.outcomes))
        return cached[1]

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> RunScript:
        """Build from JSON (control routes, CLI) and reject unknown keys so typos are not silently ignored."""
        if not data:
            return cls()
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ApiError(400, f"Unknown RunScript field(s): {sorted(unknown)}", param="script")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _new_hex() -> str:
    return uuid.uuid4().hex


def validate_metadata(metadata: Any, param: str = "metadata") -> dict[str, str] | None:
    """Mirror the real API's metadata limits so clients that write idempotency keys hit them here too."""
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise ApiError(
            400,
            f"Invalid type for '{param}': expected an object, but got {type(metadata).__name__} instead.",
            param=param,
            code="invalid_type",
        )
    if len(metadata) > 16:
        raise ApiError(
            400,
            f"Invalid '{param}': too many properties. Expected an object with at most 16 properties, but got "
            f"an object with {len(metadata)} properties instead.",
            param=param,
            code="object_above_max_properties",
        )
    for key, value in metadata.items():
        if len(key) > 64:
            raise ApiError(
                400,
                f"Invalid '{param}': string too long. Expected a key with maximum length 64, but got a key "
                f"with length {len(key)} instead.",
                param=f"{param}.{key[:64]}",
                code="string_above_max_length",
            )
        if not isinstance(value, str):
            raise ApiError(
                400,
                f"Invalid type for '{param}.{key}': expected a string, but got "
                f"{type(value).__name__} instead.",
                param=f"{param}.{key}",
                code="invalid_type",
            )
        if len(value) > 512:
            raise ApiError(
                400,
                f"Invalid '{param}.{key}': string too long. Expected a string with maximum length 512, but got "
                f"a string with length {len(value)} instead.",
                param=f"{param}.{key}",
                code="string_above_max_length",
            )
    return dict(metadata)


def _missing(param: str) -> ApiError:
    return ApiError(
        400, f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter"
    )


def validate_data_source(data_source: Any) -> dict[str, Any]:
    """Accept the three run data source types and the source kinds each allows, as the real API does."""
    if data_source is None:
        raise _missing("data_source")
    if not isinstance(data_source, dict):
        raise ApiError(
            400,
            "Invalid type for 'data_source': expected an object.",
            param="data_source",
            code="invalid_type",
        )
    ds_type = data_source.get("type")
    allowed_sources = {
        "jsonl": {"file_content", "file_id"},
        "completions": {"file_content", "file_id", "stored_completions"},
        "responses": {"file_content", "file_id", "responses"},
    }
    if ds_type not in allowed_sources:
        raise ApiError(
            400,
            f"Invalid value: '{ds_type}'. Supported values are: 'jsonl', 'completions', and 'responses'.",
            param="data_source.type",
            code="invalid_value",
        )
    source = data_source.get("source")
    if source is None:
        raise _missing("data_source.source")
    if not isinstance(source, dict) or source.get("type") not in allowed_sources[ds_type]:
        got = source.get("type") if isinstance(source, dict) else source
        raise ApiError(
            400,
            f"Invalid value: '{got}'. Supported values are: "
            + ", ".join(f"'{s}'" for s in sorted(allowed_sources[ds_type]))
            + ".",
            param="data_source.source.type",
            code="invalid_value",
        )
    if source["type"] == "file_content":
        content = source.get("content")
        if not isinstance(content, list):
            raise _missing("data_source.source.content")
        for i, row in enumerate(content):
            if not isinstance(row, dict) or not isinstance(row.get("item"), dict):
                raise ApiError(
                    400,
                    f"Invalid 'data_source.source.content[{i}]': each row needs an 'item' object.",
                    param=f"data_source.source.content[{i}].item",
                    code="invalid_value",
                )
    elif source["type"] == "file_id" and not isinstance(source.get("id"), str):
        raise _missing("data_source.source.id")
    return data_source


def _response_data_source_config(config: dict[str, Any]) -> dict[str, Any]:
    """Turn a create-eval data_source_config into the shape the API returns (a derived JSON schema)."""
    ds_type = config.get("type")
    if ds_type == "custom":
        properties: dict[str, Any] = {"item": config.get("item_schema") or {"type": "object"}}
        required = ["item"]
        if config.get("include_sample_schema"):
            properties["sample"] = {"type": "object"}
            required.append("sample")
        return {
            "type": "custom",
            "schema": {"type": "object", "properties": properties, "required": required},
        }
    out: dict[str, Any] = {"type": ds_type}
    if config.get("metadata") is not None:
        out["metadata"] = config["metadata"]
    out["schema"] = config.get("schema") or {
        "type": "object",
        "properties": {"item": {"type": "object"}, "sample": {"type": "object"}},
        "required": ["item", "sample"],
    }
    return out


def validate_eval_body(body: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    config = body.get("data_source_config")
    if config is None:
        raise _missing("data_source_config")
    if not isinstance(config, dict) or config.get("type") not in {"custom", "logs", "stored_completions"}:
        got = config.get("type") if isinstance(config, dict) else config
        raise ApiError(
            400,
            f"Invalid value: '{got}'. Supported values are: 'custom', 'logs', and 'stored_completions'.",
            param="data_source_config.type",
            code="invalid_value",
        )
    if config["type"] == "custom" and not isinstance(config.get("item_schema"), dict):
        raise _missing("data_source_config.item_schema")
    criteria = body.get("testing_criteria")
    if criteria is None:
        raise _missing("testing_criteria")
    if not isinstance(criteria, list):
        raise ApiError(
            400,
            "Invalid type for 'testing_criteria': expected an array.",
            param="testing_criteria",
            code="invalid_type",
        )
    for i, crit in enumerate(criteria):
        if not isinstance(crit, dict) or not crit.get("type") or not crit.get("name"):
            raise ApiError(
                400,
                f"Invalid 'testing_criteria[{i}]': each criterion needs a 'type' and a 'name'.",
                param=f"testing_criteria[{i}]",
                code="invalid_value",
            )
    return config, criteria


def eval_body(
    name: str | None = None,
    testing_criteria: list[dict[str, Any]] | None = None,
    data_source_config: dict[str, Any] | None = None,
    metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A create-eval request body with working defaults, for seeding evals without writing graders."""
    body: dict[str, Any] = {
        "name": name if name is not None else "Fake eval",
        "data_source_config": data_source_config
        if data_source_config is not None
        else DEFAULT_DATA_SOURCE_CONFIG,
        "testing_criteria": testing_criteria if testing_criteria is not None else DEFAULT_TESTING_CRITERIA,
    }
    if metadata is not None:
        body["metadata"] = metadata
    return body


def run_body(
    name: str | None = None, metadata: dict[str, str] | None = None, data_source: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A create-run body; the default data source is a file id so seeded runs echo a small object."""
    body: dict[str, Any] = {
        "data_source": data_source
        if data_source is not None
        else {"type": "jsonl", "source": {"type": "file_id", "id": "file-fake0000000000000000000000"}},
    }
    if name is not None:
        body["name"] = name
    if metadata is not None:
        body["metadata"] = metadata
    return body


@dataclass
class EvalRecord:
    id: str
    name: str
    data_source_config: dict[str, Any]
    testing_criteria: list[dict[str, Any]]
    metadata: dict[str, str] | None
    created_at: int
    updated_at: float
    seq: int

    def to_api(self) -> dict[str, Any]:
        return {
            "object": "eval",
            "id": self.id,
            "data_source_config": self.data_source_config,
            "testing_criteria": self.testing_criteria,
            "name": self.name,
            "created_at": self.created_at,
            "metadata": self.metadata if self.metadata is not None else {},
        }


@dataclass
class RunRecord:
    """One run. Its status and counts are computed on demand from the clock, never stored per tick."""

    id: str
    eval_id: str
    name: str
    model: str
    metadata: dict[str, str] | None
    data_source: dict[str, Any]
    script: RunScript
    created_at: int
    created_mono: float
    seq: int
    report_url: str
    criteria: list[tuple[str, str]]  # (criterion id as the API names it, grader type)
    rows: list[Any] | None  # the file_content rows, shared with data_source (no copy)
    n_items: int
    forced_status: str | None = None
    forced_visible: int | None = None  # item count frozen at cancel / forced non-terminal time
    pad: str = ""
    pad_ready: bool = False
    outcomes: RunOutcomes | None = None  # the script's outcomes bound to this run's eval and items

    def __post_init__(self) -> None:
        self._pattern = pattern_verdicts(len(self.criteria))

    # ---- lifecycle -------------------------------------------------------------------------------
    def status_at(self, now: float) -> str:
        if self.forced_status is not None:
            return self.forced_status
        elapsed = now - self.created_mono
        if elapsed < self.script.queued_seconds:
            return "queued"
        if elapsed < self.script.queued_seconds + self.script.in_progress_seconds:
            return "in_progress"
        return self.script.final_status

    def visible_items(self, now: float) -> int:
        """How many output items exist now: none while queued, a growing share while in progress."""
        if self.forced_visible is not None:
            return self.forced_visible
        status = self.status_at(now)
        if status == "queued":
            return 0
        if status == "in_progress":
            if self.forced_status is not None:
                return 0
            span = self.script.in_progress_seconds
            done = (now - self.created_mono - self.script.queued_seconds) / span if span > 0 else 1.0
            return min(self.n_items, max(0, math.floor(self.n_items * done)))
        return self.n_items

    # ---- lazy output items ----------------------------------------------------------------------
    def pattern_kind(self, index: int) -> str:
        """'pass', 'fail' or 'error' for item ``index``: a fixed arithmetic pattern, so no per-item state."""
        n = index + 1
        if self.script.error_every > 0 and n % self.script.error_every == 0:
            return "error"
        if self.script.fail_every > 0 and n % self.script.fail_every == 0:
            return "fail"
        return "pass"

    def verdict(self, index: int) -> Verdict:
        """The scripted outcome of item ``index`` if the script has one, else the pattern's."""
        if self.outcomes is not None and index < len(self.outcomes):
            return self.outcomes.verdict(index)
        return self._pattern[self.pattern_kind(index)]

    def item_status(self, index: int) -> str:
        return self.verdict(index).status

    def tally(self, k: int) -> Tally:
        """Counts among the first ``k`` items: scripted outcomes first, the pattern for the rest."""
        tally = Tally.empty(len(self.criteria))
        scripted = 0
        if self.outcomes is not None:
            self.outcomes.add_to(tally, k)
            scripted = min(k, len(self.outcomes))
        if k > scripted:
            p1, f1, e1 = self.counts(k)
            p0, f0, e0 = self.counts(scripted)
            tally.add(self._pattern["pass"], p1 - p0)
            tally.add(self._pattern["fail"], f1 - f0)
            tally.add(self._pattern["error"], e1 - e0)
        return tally

    def counts(self, k: int) -> tuple[int, int, int]:
        """(passed, failed, errored) of the pattern among the first ``k`` items in O(1) by
        inclusion-exclusion; ``tally`` is what a run reports."""
        e = self.script.error_every
        f = self.script.fail_every
        errored = k // e if e > 0 else 0
        if f > 0:
            both = k // math.lcm(e, f) if e > 0 else 0
            failed = k // f - both
        else:
            failed = 0
        return k - failed - errored, failed, errored

    def item_id(self, index: int) -> str:
        return f"outputitem_{self.id[-24:]}{index:0{ITEM_INDEX_HEX}x}"

    def parse_item_id(self, item_id: str) -> int | None:
        prefix = f"outputitem_{self.id[-24:]}"
        if not item_id.startswith(prefix) or len(item_id) != len(prefix) + ITEM_INDEX_HEX:
            return None
        try:
            return int(item_id[len(prefix) :], 16)
        except ValueError:
            return None

    def item_created_at(self, index: int) -> int:
        span = self.script.in_progress_seconds
        offset = int(self.script.queued_seconds + (index * span / self.n_items if self.n_items else 0))
        return self.created_at + offset

    def datasource_item(self, index: int) -> dict[str, Any]:
        if self.rows:
            item = self.rows[index % len(self.rows)].get("item")
            return item if isinstance(item, dict) else {"value": item}
        topic = _TOPICS[index % len(_TOPICS)]
        return {"input": f"Synthetic headline number {index} about {topic.lower()}", "ground_truth": topic}

    def build_item(self, index: int, model_hint: str | None = None) -> dict[str, Any]:
        verdict = self.verdict(index)
        ds_item = self.datasource_item(index)
        truth = str(ds_item.get("ground_truth", _TOPICS[index % len(_TOPICS)]))
        right = verdict.kind != "fail" and "fail" not in verdict.criteria
        answer = truth if right else _TOPICS[(_TOPICS.index(truth) + 1) % 5] if truth in _TOPICS else "?"
        results: list[dict[str, Any]] = []
        # A criterion whose grader errored gives no entry: the API requires `passed` and `score` of each.
        for (crit_id, crit_type), outcome in zip(self.criteria, verdict.criteria, strict=True):
            if outcome == "error":
                continue
            passed = outcome == "pass"
            results.append(
                {
                    "name": crit_id,
                    "type": crit_type,
                    "score": 1.0 if passed else 0.0,
                    "passed": passed,
                    "sample": None,
                }
            )
        error: dict[str, str] | None = None
        if verdict.sample_error:
            error = {"code": "server_error", "message": "The model failed to produce a sample."}
        elif verdict.kind == "error":
            failed = [
                crit_id
                for (crit_id, _t), o in zip(self.criteria, verdict.criteria, strict=True)
                if o == "error"
            ]
            error = {
                "code": "grader_error",
                "message": "Grader(s) " + ", ".join(repr(c) for c in failed) + " failed on this sample.",
            }
        user_text = str(ds_item.get("input", ds_item))
        prompt_tokens = 40 + len(user_text) // 4
        sample: dict[str, Any] = {
            "input": [
                {"role": "developer", "content": _SYSTEM_PROMPT + self.pad},
                {"role": "user", "content": user_text},
            ],
            "output": [] if verdict.sample_error else [{"role": "assistant", "content": answer}],
            "finish_reason": "" if verdict.sample_error else "stop",
            "model": self.model,
            "usage": {
                "total_tokens": prompt_tokens + 2,
                "completion_tokens": 2,
                "prompt_tokens": prompt_tokens,
                "cached_tokens": 0,
            },
            "error": error,
            "temperature": 1.0,
            "max_completion_tokens": 2048,
            "top_p": 1.0,
            "seed": 42,
        }
        return {
            "object": "eval.run.output_item",
            "id": self.item_id(index),
            "run_id": self.id,
            "eval_id": self.eval_id,
            "created_at": self.item_created_at(index),
            "status": verdict.status,
            "datasource_item_id": index,
            "datasource_item": ds_item,
            "results": results,
            "sample": sample,
        }

    # ---- API view -----------------------------------------------------------------------------
    def to_api(self, now: float, status_override: str | None = None) -> dict[str, Any]:
        status = self.status_at(now)
        terminal = status not in NON_TERMINAL_STATUSES
        k = self.visible_items(now)
        tally = self.tally(k)
        if terminal and self.script.result_counts is not None:
            result_counts: dict[str, int] = dict(self.script.result_counts)
        else:
            result_counts = tally.result_counts()
        per_criteria: list[dict[str, Any]] | None
        per_model_usage: list[dict[str, Any]] | None
        if not terminal or self.script.null_results:
            per_criteria = None
            per_model_usage = None
        else:
            if self.script.per_testing_criteria_results is not None:
                per_criteria = [dict(x) for x in self.script.per_testing_criteria_results]
            else:
                per_criteria = [
                    {"testing_criteria": crit_id, "passed": passed, "failed": failed}
                    for (crit_id, _t), (passed, failed) in zip(self.criteria, tally.criteria, strict=True)
                ]
            executed = k - tally.sample_errored
            prompt = executed * 60
            per_model_usage = (
                []
                if k == 0
                else [
                    {
                        "model_name": self.model,
                        "invocation_count": executed,
                        "prompt_tokens": prompt,
                        "completion_tokens": executed * 2,
                        "total_tokens": prompt + executed * 2,
                        "cached_tokens": 0,
                    }
                ]
            )
        error = None
        if status == "failed":
            error = self.script.error or {
                "code": "internal_error",
                "message": "The eval run failed due to an internal error.",
            }
        return {
            "object": "eval.run",
            "id": self.id,
            "eval_id": self.eval_id,
            "report_url": self.report_url,
            "status": status_override if status_override is not None else status,
            "model": self.model,
            "name": self.name,
            "created_at": self.created_at,
            "result_counts": result_counts,
            "per_model_usage": per_model_usage,
            "per_testing_criteria_results": per_criteria,
            "data_source": self.data_source,
            "metadata": self.metadata if self.metadata is not None else {},
            "error": error,
        }


@dataclass
class Page:
    """One list page; ``data`` is already in API shape."""

    data: list[dict[str, Any]]
    has_more: bool

    def to_api(self) -> dict[str, Any]:
        return {
            "object": "list",
            "data": self.data,
            "first_id": self.data[0]["id"] if self.data else None,
            "last_id": self.data[-1]["id"] if self.data else None,
            "has_more": self.has_more,
        }


def parse_limit(raw: str | None) -> int:
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    try:
        limit = int(raw)
    except ValueError:
        raise ApiError(
            400,
            f"Invalid 'limit': expected an integer, but got '{raw}' instead.",
            param="limit",
            code="invalid_type",
        ) from None
    if limit < 1 or limit > MAX_LIMIT:
        raise ApiError(
            400,
            f"Invalid 'limit': integer out of range. Expected a value between 1 and {MAX_LIMIT}, "
            f"but got {limit} instead.",
            param="limit",
            code="integer_out_of_range",
        )
    return limit


def parse_order(raw: str | None) -> str:
    if raw is None or raw == "":
        return "asc"
    if raw not in ("asc", "desc"):
        raise ApiError(
            400,
            f"Invalid value: '{raw}'. Supported values are: 'asc' and 'desc'.",
            param="order",
            code="invalid_value",
        )
    return raw


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
        if eval_id is not None and (not isinstance(eval_id, str) or not _EVAL_ID_PATTERN.match(eval_id)):
            raise ApiError(400, f"{eval_id!r} is not a valid eval id.", param="id", code="invalid_value")
        config, criteria = validate_eval_body(body)
        metadata = validate_metadata(body.get("metadata"))
        name = body.get("name")
        if name is not None and not isinstance(name, str):
            raise ApiError(
                400, "Invalid type for 'name': expected a string.", param="name", code="invalid_type"
            )
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
                data_source_config=_response_data_source_config(config),
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
            raise ApiError(404, f"Eval with id '{eval_id}' not found.", param="eval_id", code="not_found")
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
            raise ApiError(
                400,
                f"Invalid value: '{order_by}'. Supported values are: 'created_at' and 'updated_at'.",
                param="order_by",
                code="invalid_value",
            )
        with self.lock:
            records = list(self.evals.values())
            if order_by == "updated_at":
                records.sort(key=lambda r: (r.updated_at, r.seq))
            else:
                records.sort(key=lambda r: (r.created_at, r.seq))
            if order == "desc":
                records.reverse()
            return _page_of(records, query.get("after"), limit, lambda r: r.id, lambda r: r.to_api()).to_api()

    # ---- runs -----------------------------------------------------------------------------------
    def create_run(
        self, eval_id: str, body: dict[str, Any], script: RunScript | None = None
    ) -> dict[str, Any]:
        with self.lock:
            evaluation = self._get_eval(eval_id)
        data_source = validate_data_source(body.get("data_source"))
        metadata = validate_metadata(body.get("metadata"))
        name = body.get("name")
        if name is not None and not isinstance(name, str):
            raise ApiError(
                400, "Invalid type for 'name': expected a string.", param="name", code="invalid_type"
            )
        raw_source = data_source.get("source")
        source: dict[str, Any] = raw_source if isinstance(raw_source, dict) else {}
        with self.lock:
            from_queue = script is None
            if script is None:
                script = self.next_scripts[0] if self.next_scripts else self.default_script
            rows = source.get("content") if source.get("type") == "file_content" else None
            if source.get("type") == "file_id":
                rows = self.file_rows.get(str(source.get("id")), rows)
            n_items = _item_count(script, rows)
            model = script.model or data_source.get("model") or "gpt-4o-mini"
            evaluation = self._get_eval(eval_id)
            criteria = evaluation.testing_criteria
            outcomes = _bind_script_outcomes(script, criteria, n_items, eval_id)
            run_id = f"evalrun_{_new_hex()}"
            if self.flavor == "azure":
                report_url = (
                    f"https://ai.azure.com/resource/evaluation/{eval_id}/run/{run_id}"
                    "?wsid=/subscriptions/fake/resourceGroups/fake/providers/Microsoft.CognitiveServices/"
                    "accounts/fake"
                )
            else:
                report_url = f"https://platform.openai.com/evaluations/{eval_id}?run_id={run_id}"
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
                report_url=report_url,
                criteria=[(str(c.get("id") or c.get("name")), str(c.get("type"))) for c in criteria],
                rows=rows,
                n_items=n_items,
                outcomes=outcomes,
            )
            if outcomes is not None and script.result_counts is not None:
                _check_result_counts(script.result_counts, run.tally(n_items))
            # Taken only now: a script refused above stays queued, as a refused request changes nothing.
            if from_queue and self.next_scripts and self.next_scripts[0] is script:
                self.next_scripts.popleft()
            self._prepare_padding(run)
            self.runs[run_id] = run
            self.runs_by_eval[eval_id].append(run_id)
            return run.to_api(self.clock())

    # ---- files ----------------------------------------------------------------------------------
    def create_file(self, filename: str, purpose: str, content: bytes) -> dict[str, Any]:
        """Store an uploaded JSONL file; each non-empty line must be a JSON object with an ``item``."""
        import json

        if purpose != "evals":
            raise ApiError(400, f"Invalid purpose {purpose!r} for this fake: use 'evals'.", param="purpose")
        rows: list[Any] = []
        for number, line in enumerate(content.decode("utf-8", "replace").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                raise ApiError(400, f"Invalid JSON on line {number} of {filename}.", param="file") from None
            if not isinstance(row, dict) or "item" not in row:
                raise ApiError(400, f"Line {number} of {filename} has no 'item' object.", param="file")
            rows.append(row)
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

    def _prepare_padding(self, run: RunRecord) -> None:
        """Measure item 0 once and pad every item's prompt to reach ``item_bytes`` (shared string, O(1))."""
        if run.script.item_bytes <= 0 or run.n_items == 0:
            return
        import json

        base = len(json.dumps(run.build_item(0)))
        run.pad = " " + "x" * max(0, run.script.item_bytes - base - 1) if run.script.item_bytes > base else ""

    def _get_run(self, eval_id: str, run_id: str) -> RunRecord:
        self._get_eval(eval_id)
        run = self.runs.get(run_id)
        if run is None or run.eval_id != eval_id:
            raise ApiError(404, f"Eval run with id '{run_id}' not found.", param="run_id", code="not_found")
        return run

    def find_run(self, run_id: str) -> RunRecord:
        with self.lock:
            run = self.runs.get(run_id)
            if run is None:
                raise ApiError(
                    404, f"Eval run with id '{run_id}' not found.", param="run_id", code="not_found"
                )
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
        status = query.get("status")
        if status is not None and status not in RUN_STATUS_FILTERS:
            raise ApiError(
                400,
                f"Invalid value: '{status}'. Supported values are: 'queued', 'in_progress', "
                "'completed', 'canceled', and 'failed'.",
                param="status",
                code="invalid_value",
            )
        with self.lock:
            self._get_eval(eval_id)
            now = self.clock()
            records = [self.runs[r] for r in self.runs_by_eval[eval_id]]  # insertion order == created order
            if order == "desc":
                records.reverse()
            keep = None if status is None else (lambda r: r.status_at(now) == status)
            return _page_of(
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
                raise ApiError(
                    404,
                    f"Output item with id '{item_id}' not found.",
                    param="output_item_id",
                    code="not_found",
                )
            self.item_builds += 1
            return run.build_item(index)

    def list_output_items(self, eval_id: str, run_id: str, query: dict[str, str]) -> dict[str, Any]:
        limit = parse_limit(query.get("limit"))
        order = parse_order(query.get("order"))
        status = query.get("status")
        if status is not None and status not in ITEM_STATUS_FILTERS:
            raise ApiError(
                400,
                f"Invalid value: '{status}'. Supported values are: 'fail' and 'pass'.",
                param="status",
                code="invalid_value",
            )
        after = query.get("after")
        with self.lock:
            run = self._get_run(eval_id, run_id)
            visible = run.visible_items(self.clock())
        if after:
            cursor = run.parse_item_id(after)
            if cursor is None or cursor >= visible:
                raise ApiError(
                    400,
                    f"Invalid 'after': no output item with id '{after}' in this run.",
                    param="after",
                    code="invalid_value",
                )
        else:
            cursor = -1 if order == "asc" else visible
        step = 1 if order == "asc" else -1
        stop = visible if order == "asc" else -1
        matches = _matching_indices(run, range(cursor + step, stop, step), status)
        picked: list[int] = []
        scanned = 0
        has_more = False
        for index, steps in matches:
            scanned = steps
            if len(picked) == limit:
                has_more = True
                break
            picked.append(index)
        else:
            scanned = abs(stop - cursor) - 1
        data = [run.build_item(i) for i in picked]
        with self.lock:
            self.item_builds += len(data)
            self.scan_steps += scanned
        return Page(data, has_more).to_api()


def _item_count(script: RunScript, rows: list[Any] | None) -> int:
    """Explicit ``output_items`` first; else the rows the fake holds (inline or uploaded to it); else the
    scripted ``result_counts.total``; else one item per scripted outcome; else a default, so an unread
    source still yields items to grade."""
    if script.output_items is not None:
        return script.output_items
    if rows is not None:
        return len(rows)
    total = (script.result_counts or {}).get("total")
    if isinstance(total, int) and not isinstance(total, bool) and total >= 0:
        return total
    if script.outcomes is not None:
        return len(script.outcomes)
    return UNREAD_SOURCE_ITEMS


def _bind_script_outcomes(
    script: RunScript, criteria: list[dict[str, Any]], n_items: int, eval_id: str
) -> RunOutcomes | None:
    """The script's outcomes for a run of ``eval_id``; a script that does not fit it is a 400, naming why."""
    try:
        compiled = script.compiled_outcomes()
        if compiled is None:
            return None
        pairs = [(str(c.get("id") or c.get("name")), str(c.get("name"))) for c in criteria]
        return bind_outcomes(compiled, pairs, n_items, eval_id)
    except OutcomeError as exc:
        raise ApiError(400, str(exc), param="script", code="invalid_value") from None


def _check_result_counts(scripted: dict[str, int], tally: Tally) -> None:
    """Scripted counts beside outcomes may only restate them (plus extra keys such as ``skipped``)."""
    derived = tally.result_counts()
    wrong = {key: value for key, value in scripted.items() if key in derived and value != derived[key]}
    if wrong:
        raise ApiError(
            400,
            f"RunScript.result_counts {wrong} disagree with what its outcomes give this run: {derived}; "
            "drop result_counts (outcomes derive them) or make them agree",
            param="script",
            code="invalid_value",
        )


def _matching_indices(run: RunRecord, indices: range, status: str | None) -> Iterator[tuple[int, int]]:
    """Yield (index, steps scanned so far) lazily so a page never looks further than one match past its end."""
    for steps, index in enumerate(indices, start=1):
        if status is None or run.item_status(index) == status:
            yield index, steps


def _page_of(
    records: list[Any],
    after: str | None,
    limit: int,
    key: Callable[[Any], str],
    render: Callable[[Any], dict[str, Any]],
    keep: Callable[[Any], bool] | None = None,
) -> Page:
    """Page an ordered list. The cursor is located in the unfiltered order, so a filter whose membership
    changes between pages (a run finishing) does not make a valid cursor unknown."""
    start = 0
    if after:
        for pos, record in enumerate(records):
            if key(record) == after:
                start = pos + 1
                break
        else:
            raise ApiError(
                400,
                f"Invalid 'after': no object with id '{after}' in this list.",
                param="after",
                code="invalid_value",
            )
    picked: list[Any] = []
    has_more = False
    for record in records[start:]:
        if keep is not None and not keep(record):
            continue
        if len(picked) == limit:
            has_more = True
            break
        picked.append(record)
    return Page([render(r) for r in picked], has_more)

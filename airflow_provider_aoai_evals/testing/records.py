"""What the fake keeps of one eval and one run, and how a run looks at a given moment.

A run stores only what it was created with; its status, counts and output items are computed on demand
from the clock and its script, so a run costs nothing between reads and its items take no memory until
a page of them is built.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from airflow_provider_aoai_evals.testing.outcomes import RunOutcomes, Tally, Verdict, pattern_verdicts
from airflow_provider_aoai_evals.testing.run_script import RunScript

NON_TERMINAL_STATUSES = frozenset({"queued", "in_progress"})
ITEM_INDEX_HEX = 8
_SYSTEM_PROMPT = (
    "Categorize a given news headline into one of the following topics: Technology, Markets, World, "
    "Business, or Sports. Respond with the chosen category as a single word."
)
_TOPICS = ("Technology", "Markets", "World", "Business", "Sports")


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

    def prepare_padding(self) -> None:
        """Measure item 0 once and pad every item's prompt to reach ``item_bytes`` (shared string, O(1))."""
        if self.script.item_bytes <= 0 or self.n_items == 0:
            return
        base = len(json.dumps(self.build_item(0)))
        self.pad = (
            " " + "x" * max(0, self.script.item_bytes - base - 1) if self.script.item_bytes > base else ""
        )

    # ---- API view -----------------------------------------------------------------------------
    def usage(self, k: int, tally: Tally) -> list[dict[str, Any]]:
        """``per_model_usage`` after ``k`` graded items: the script's tokens per item that made a call."""
        if k == 0:
            return []
        executed = k - tally.sample_errored
        prompt = executed * self.script.prompt_tokens_per_item
        completion = executed * self.script.completion_tokens_per_item
        return [
            {
                "model_name": self.model,
                "invocation_count": executed,
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
                "cached_tokens": 0,
            }
        ]

    def to_api(self, now: float, status_override: str | None = None) -> dict[str, Any]:
        status = self.status_at(now)
        terminal = status not in NON_TERMINAL_STATUSES
        k = self.visible_items(now)
        tally = self.tally(k)
        if terminal and self.script.result_counts is not None:
            result_counts: dict[str, int] = dict(self.script.result_counts)
        else:
            result_counts = tally.result_counts()
        per_criteria: list[dict[str, Any]] | None = None
        per_model_usage: list[dict[str, Any]] | None = None
        if terminal and not self.script.null_results:
            if self.script.per_testing_criteria_results is not None:
                per_criteria = [dict(x) for x in self.script.per_testing_criteria_results]
            else:
                per_criteria = [
                    {"testing_criteria": crit_id, "passed": passed, "failed": failed}
                    for (crit_id, _t), (passed, failed) in zip(self.criteria, tally.criteria, strict=True)
                ]
        if (terminal or self.script.usage_while_running) and not self.script.null_results:
            per_model_usage = self.usage(k, tally)
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

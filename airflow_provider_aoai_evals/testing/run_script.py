"""RunScript, how a test tells one fake run what to do, and what a script decides when its run is created.

A script is written before its run exists and may drive many runs, so it is checked on its own when it is
built and fitted to each run (its eval's criteria, its item count) only when that run is created.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from airflow_provider_aoai_evals.testing.errors import ApiError
from airflow_provider_aoai_evals.testing.outcomes import (
    OutcomeError,
    RunOutcomes,
    Tally,
    bind_outcomes,
    compile_outcomes,
)

if TYPE_CHECKING:
    from airflow_provider_aoai_evals.testing.outcomes import CompiledOutcomes

#: Output items of a run whose source the fake cannot read (a file it never received, stored completions,
#: responses): enough for a pass rate, so a gate on such a run judges items rather than "no results".
UNREAD_SOURCE_ITEMS = 10


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
    #: Tokens each graded item adds to ``per_model_usage`` (items whose sample errored made no call).
    prompt_tokens_per_item: int = 60
    completion_tokens_per_item: int = 2
    #: Report ``per_model_usage`` while queued or in progress too, growing as items are graded, as a token
    #: budget needs to see it. Off by default: the fake has reported null until a run ends, and tests of
    #: that stay as they are.
    usage_while_running: bool = False

    def __post_init__(self) -> None:
        # Checked here so a typo fails where the script is written (or POSTed), not at the run it drives.
        for name in ("prompt_tokens_per_item", "completion_tokens_per_item"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ApiError(
                    400, f"RunScript.{name} must be a whole number >= 0, got {value!r}", param="script"
                )
        if not isinstance(self.usage_while_running, bool):
            raise ApiError(400, "RunScript.usage_while_running must be true or false", param="script")
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


def item_count(script: RunScript, rows: list[Any] | None) -> int:
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


def bind_script_outcomes(
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


def check_result_counts(scripted: dict[str, int], tally: Tally) -> None:
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

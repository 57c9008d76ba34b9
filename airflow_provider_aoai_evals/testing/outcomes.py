"""Scripted per-item outcomes (``RunScript.outcomes``): what each datasource item scores, by index.

Two stages, because a script is written before the run it will drive exists:

* ``compile_outcomes`` checks the list on its own (values, types) when the script is built, and folds it
  into one small code per item plus a table of the distinct entries. A 100,000-item list becomes 100 kB of
  codes and a handful of table rows, and no item is built until somebody reads it.
* ``bind_outcomes`` resolves criterion names against the eval and the item count of the run when the run
  is created, turning each distinct entry into a ``Verdict``.

Rules (docs/testing.md, "Per-item outcomes"):

* ``"pass"``: every criterion passes. ``"fail"``: the first criterion fails and the others pass, exactly
  like an item ``fail_every`` fails. ``"error"``: the sample itself errored, so no grader ran (no
  ``results``, ``sample.error`` set), exactly like ``error_every``.
* A ``{criterion: outcome}`` dict sets criteria one by one; criteria it does not name pass. The item is
  errored if any criterion errored, else failed if any failed, else passed. An errored criterion has no
  entry in ``results`` (the API requires ``passed`` and ``score`` of each entry, and a grader that errored
  has neither); ``sample.error`` names it so an errored item is always recognisable by ``sample.error``.
* Per-criterion counts tally the ``results`` entries: an errored criterion counts as neither passed nor
  failed, and the other criteria of the same item still count.
* A list shorter than the run leaves the remaining items to ``fail_every`` / ``error_every``; a longer
  one is refused.

Nothing here imports the rest of the fake, so errors are ``ValueError`` and the store turns them into the
API's 400 body.
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

OUTCOME_VALUES = ("pass", "fail", "error")
_HINT = "use 'pass', 'fail' or 'error'"

#: One distinct entry of a compiled list: an outcome string, or a dict's items sorted by criterion name.
Entry: TypeAlias = "str | tuple[tuple[str, str], ...]"
#: Codes fit a byte unless a list has more than 256 distinct entries (many criteria in many combinations).
Codes: TypeAlias = "bytes | array[int]"


class OutcomeError(ValueError):
    """A scripted outcome that cannot be followed; the message names the item index and what to write."""


@dataclass(frozen=True)
class CompiledOutcomes:
    """A checked outcome list: ``codes[i]`` indexes ``entries``; ``first_seen`` points errors at an item."""

    codes: Codes
    entries: tuple[Entry, ...]
    first_seen: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.codes)


@dataclass(frozen=True)
class Verdict:
    """What one output item reports: its overall kind and each criterion's outcome, in the eval's order."""

    kind: str
    criteria: tuple[str, ...]
    sample_error: bool = False

    @property
    def status(self) -> str:
        # The API's item status (and its filter) knows only pass and fail: an errored item is a "fail".
        return "pass" if self.kind == "pass" else "fail"


def pattern_verdicts(n_criteria: int) -> dict[str, Verdict]:
    """The three verdicts of the ``fail_every`` / ``error_every`` pattern, which bare strings reuse.

    A failing item fails only its first criterion, so per-criterion pass rates differ usefully.
    """
    return {
        "pass": Verdict("pass", ("pass",) * n_criteria),
        "fail": Verdict("fail", ("fail",) + ("pass",) * (n_criteria - 1) if n_criteria else ()),
        "error": Verdict("error", ("error",) * n_criteria, sample_error=True),
    }


@dataclass
class Tally:
    """Counts over a prefix of a run's items; ``criteria[pos]`` is (passed, failed) for that criterion."""

    passed: int = 0
    failed: int = 0
    errored: int = 0
    sample_errored: int = 0
    criteria: list[list[int]] = field(default_factory=list)

    @classmethod
    def empty(cls, n_criteria: int) -> Tally:
        return cls(criteria=[[0, 0] for _ in range(n_criteria)])

    def add(self, verdict: Verdict, times: int) -> None:
        if times == 0:
            return
        if verdict.kind == "pass":
            self.passed += times
        elif verdict.kind == "fail":
            self.failed += times
        else:
            self.errored += times
        if verdict.sample_error:
            self.sample_errored += times
            return
        for pos, outcome in enumerate(verdict.criteria):
            if outcome == "pass":
                self.criteria[pos][0] += times
            elif outcome == "fail":
                self.criteria[pos][1] += times

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.errored

    def result_counts(self) -> dict[str, int]:
        return {"total": self.total, "errored": self.errored, "failed": self.failed, "passed": self.passed}


def compile_outcomes(outcomes: Any) -> CompiledOutcomes:
    """Check ``outcomes`` without an eval and fold it into codes; raises ``OutcomeError`` naming the item."""
    if isinstance(outcomes, (str, bytes, bytearray)) or not isinstance(outcomes, Sequence):
        raise OutcomeError(
            "RunScript.outcomes must be a list with one entry per datasource item: 'pass', 'fail', 'error' "
            f"or a {{criterion name: outcome}} dict; got {type(outcomes).__name__}"
        )
    table: dict[Entry, int] = {}
    entries: list[Entry] = []
    first_seen: list[int] = []
    codes: bytearray | array[int] = bytearray(len(outcomes))
    for index, raw in enumerate(outcomes):
        key = _entry_key(index, raw)
        code = table.get(key)
        if code is None:
            code = table[key] = len(entries)
            entries.append(key)
            first_seen.append(index)
            if code == 256 and isinstance(codes, bytearray):
                codes = array("H", list(codes))  # from a list: bytes would be read as raw 16-bit words
        codes[index] = code
    frozen: Codes = bytes(codes) if isinstance(codes, bytearray) else codes
    return CompiledOutcomes(frozen, tuple(entries), tuple(first_seen))


def _entry_key(index: int, raw: Any) -> Entry:
    if isinstance(raw, str):
        if raw not in OUTCOME_VALUES:
            raise OutcomeError(f"RunScript.outcomes[{index}] is {raw!r}: {_HINT}")
        return raw
    if isinstance(raw, Mapping):
        for name, value in raw.items():
            if not isinstance(name, str) or not name:
                raise OutcomeError(
                    f"RunScript.outcomes[{index}] has the key {name!r}: keys are criterion names (strings)"
                )
            if value not in OUTCOME_VALUES:
                raise OutcomeError(f"RunScript.outcomes[{index}][{name!r}] is {value!r}: {_HINT}")
        return tuple(sorted(raw.items()))
    raise OutcomeError(
        f"RunScript.outcomes[{index}] is {raw!r} ({type(raw).__name__}): give 'pass', 'fail', 'error' "
        "or a {criterion name: outcome} dict"
    )


@dataclass(frozen=True)
class RunOutcomes:
    """A compiled list bound to one run: a verdict per code and how many items carry each code."""

    codes: Codes
    verdicts: tuple[Verdict, ...]
    totals: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.codes)

    def verdict(self, index: int) -> Verdict:
        return self.verdicts[self.codes[index]]

    def add_to(self, tally: Tally, k: int) -> None:
        """Add the first ``k`` scripted items; one C-speed count per distinct entry, never per item."""
        k = min(k, len(self.codes))
        if k == len(self.codes):
            counts: Sequence[int] = self.totals
        elif isinstance(self.codes, bytes):
            counts = [self.codes.count(code, 0, k) for code in range(len(self.verdicts))]
        else:
            prefix = self.codes[:k]
            counts = [prefix.count(code) for code in range(len(self.verdicts))]
        for verdict, times in zip(self.verdicts, counts, strict=True):
            tally.add(verdict, times)


def bind_outcomes(
    compiled: CompiledOutcomes, criteria: Sequence[tuple[str, str]], n_items: int, eval_id: str
) -> RunOutcomes:
    """Resolve names against ``criteria`` ((id, name) pairs, in the eval's order) for a run of ``n_items``."""
    if len(compiled) > n_items:
        raise OutcomeError(
            f"RunScript.outcomes has {len(compiled)} entries but this run has {n_items} output items; give "
            "at most one outcome per datasource item (set output_items, or send more rows, for more items)"
        )
    by_id = {crit_id: pos for pos, (crit_id, _name) in enumerate(criteria)}
    by_name: dict[str, list[int]] = {}
    for pos, (_crit_id, name) in enumerate(criteria):
        by_name.setdefault(name, []).append(pos)
    known = ", ".join(repr(name) for _id, name in criteria) or "none"
    patterns = pattern_verdicts(len(criteria))
    verdicts: list[Verdict] = []
    for entry, index in zip(compiled.entries, compiled.first_seen, strict=True):
        if isinstance(entry, str):
            verdicts.append(patterns[entry])
            continue
        per_criterion = ["pass"] * len(criteria)
        for name, outcome in entry:
            if name in by_id:
                pos = by_id[name]
            elif len(by_name.get(name, ())) == 1:
                pos = by_name[name][0]
            elif name in by_name:
                raise OutcomeError(
                    f"RunScript.outcomes[{index}] names criterion {name!r}, which eval {eval_id} has "
                    f"{len(by_name[name])} times; name it by its id ('{criteria[by_name[name][0]][0]}')"
                )
            else:
                raise OutcomeError(
                    f"RunScript.outcomes[{index}] names criterion {name!r}, which eval {eval_id} does not "
                    f"have; its criteria: {known}"
                )
            per_criterion[pos] = outcome
        kind = "error" if "error" in per_criterion else "fail" if "fail" in per_criterion else "pass"
        verdicts.append(Verdict(kind, tuple(per_criterion)))
    totals = tuple(compiled.codes.count(code) for code in range(len(verdicts)))
    return RunOutcomes(compiled.codes, tuple(verdicts), totals)

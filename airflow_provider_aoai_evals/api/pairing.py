"""Pairing the output items of two runs over the same dataset, item by item, with bounded memory.

Two runs of one eval grade the same data source rows; an output item names its row by
``datasource_item_id``. Comparing the runs row by row (did this item flip from pass to fail?) is far
more sensitive than comparing two pass rates, because most items agree and only the flips carry
evidence (``stats.mcnemar_exact_p``). This module only counts; ``stats.compare_runs`` decides.

Memory: a run can have 100,000s of items and they arrive a page at a time, so one run (the baseline) is
kept as ``datasource_item_id -> int`` whose bits hold its outcomes, and the other run is streamed past
it. Nothing of an item's contents is kept. A caller that needs to know *which* items flipped (a file of
them for a person to read) passes ``Pairer(on_flip=...)`` and is told as each candidate item is paired.

What an item's outcome is, how it is packed into bits, and the digest of its row are
``item_outcomes``'s. A criterion an item was not graded by in one of the runs (errored items have no
results) is left out of that criterion's pairs, as ``passed / (passed + failed)`` leaves it out of the
rate, and counted as ``one_sided``.

Nothing is dropped silently: items found in one run only are counted (``missing_in_candidate``,
``missing_in_baseline``), and an item without a ``datasource_item_id`` (or with one seen twice in a
run) makes the runs unpairable, with the reason, since pairs could then not be trusted. Pairing also
trusts that item 7 of both runs is the same row, so each run's row digests are summed as it is read, and
runs whose ids all matched but whose digests differ are unpairable too (``DIFFERENT_ROWS``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_aoai_evals.api.item_outcomes import (
    ERRORED_BIT,
    ERRORED_STATUSES,
    FIRST_CRITERION_BIT,
    MATCHED_BIT,
    PASSED_BIT,
    CriterionTable,
    item_errored,
    item_outcome,
    item_passed,
    row_digest,
)
from airflow_provider_aoai_evals.api.models import OutputItem

#: With the outcome helpers of ``item_outcomes`` that callers have always imported from here.
__all__ = [
    "DIFFERENT_ROWS",
    "ERRORED_STATUSES",
    "FAIL_TO_PASS",
    "PASS_TO_FAIL",
    "BaselineOutcomes",
    "CriterionPairs",
    "Flip",
    "PairedCounts",
    "Pairer",
    "Pairing",
    "item_errored",
    "item_passed",
    "pair_items",
]

#: Directions of a flip, as ``Flip`` reports them.
PASS_TO_FAIL = "pass_to_fail"
FAIL_TO_PASS = "fail_to_pass"


@dataclass(frozen=True)
class PairedCounts:
    """The paired 2x2 table of one figure (overall, or one criterion) over matched items."""

    both_passed: int = 0
    pass_to_fail: int = 0
    fail_to_pass: int = 0
    both_failed: int = 0

    @property
    def n(self) -> int:
        return self.both_passed + self.pass_to_fail + self.fail_to_pass + self.both_failed

    @property
    def baseline_passed(self) -> int:
        return self.both_passed + self.pass_to_fail

    @property
    def candidate_passed(self) -> int:
        return self.both_passed + self.fail_to_pass

    def to_xcom(self) -> dict[str, int]:
        return {
            "n": self.n,
            "both_passed": self.both_passed,
            "pass_to_fail": self.pass_to_fail,
            "fail_to_pass": self.fail_to_pass,
            "both_failed": self.both_failed,
        }


@dataclass(frozen=True)
class CriterionPairs:
    """One criterion's pairs. ``one_sided``: matched items graded by it in one run only."""

    name: str
    counts: PairedCounts
    one_sided: int = 0

    def to_xcom(self) -> dict[str, Any]:
        return {"name": self.name, **self.counts.to_xcom(), "one_sided": self.one_sided}


@dataclass(frozen=True)
class Pairing:
    """The outcome of pairing two runs. With ``unpairable_reason`` set, every count is 0.

    ``matched`` items are in both runs; ``overall`` and ``criteria`` count only those.
    ``errored_baseline`` / ``errored_candidate`` count every errored item each run listed.
    """

    baseline_run_id: str | None
    candidate_run_id: str | None
    unpairable_reason: str | None
    matched: int
    missing_in_candidate: int
    missing_in_baseline: int
    errored_baseline: int
    errored_candidate: int
    overall: PairedCounts
    criteria: tuple[CriterionPairs, ...] = field(default_factory=tuple)

    @property
    def pairable(self) -> bool:
        return self.unpairable_reason is None

    @property
    def unmatched(self) -> int:
        return self.missing_in_candidate + self.missing_in_baseline

    def criterion(self, name: str) -> CriterionPairs | None:
        return next((c for c in self.criteria if c.name == name), None)

    def to_xcom(self) -> dict[str, Any]:
        return {
            "baseline_run_id": self.baseline_run_id,
            "candidate_run_id": self.candidate_run_id,
            "pairable": self.pairable,
            "unpairable_reason": self.unpairable_reason,
            "matched": self.matched,
            "missing_in_candidate": self.missing_in_candidate,
            "missing_in_baseline": self.missing_in_baseline,
            "errored_baseline": self.errored_baseline,
            "errored_candidate": self.errored_candidate,
            "overall": self.overall.to_xcom(),
            "criteria": [c.to_xcom() for c in self.criteria],
        }


@dataclass(frozen=True)
class Flip:
    """A matched item whose outcome changed between the runs, as ``Pairer(on_flip=...)`` reports it.

    ``overall`` is ``"pass_to_fail"``, ``"fail_to_pass"``, or None when the item's own outcome held and
    only criteria changed (it failed before on one criterion and now on another). ``criteria`` maps the
    criteria graded in both runs that changed (keyed as in ``Pairing.criteria``) to their direction.
    ``candidate`` is the candidate's item, so a caller can keep what it needs of it without holding pages.
    """

    datasource_item_id: int
    overall: str | None
    criteria: Mapping[str, str]
    candidate: OutputItem


def _direction(baseline_passed: bool, candidate_passed: bool) -> str | None:
    if baseline_passed == candidate_passed:
        return None
    return PASS_TO_FAIL if baseline_passed else FAIL_TO_PASS


DIFFERENT_ROWS = (
    "runs have different rows: items with the same datasource_item_id hold different data source rows "
    "(did the runs read different files?), so they cannot be paired"
)


class BaselineOutcomes:
    """One run's per-item outcomes, filled a page at a time: ``add(page.data)`` for every page."""

    def __init__(self, run_id: str | None = None) -> None:
        self.run_id = run_id
        self.unpairable_reason: str | None = None
        self._table = CriterionTable()
        self._items: dict[int, int] = {}
        self.errored = 0
        #: the sum of the items' 64-bit row digests: equal for equal sets of rows, in any order
        self.rows = 0

    def __len__(self) -> int:
        return len(self._items)

    def add(self, items: Iterable[OutputItem]) -> None:
        for item in items:
            if self.unpairable_reason is not None:
                return
            key = item.datasource_item_id
            if key is None:
                self._unpairable(f"no datasource_item_id on output item {item.id} of run {self.run_id}")
            elif key in self._items:
                self._unpairable(f"datasource_item_id {key} appears twice in run {self.run_id}")
            else:
                outcome = item_outcome(item, self._table)
                self._items[key] = outcome
                self.errored += bool(outcome & ERRORED_BIT)
                self.rows += row_digest(item)

    def _unpairable(self, reason: str) -> None:
        self.unpairable_reason = reason
        self._items.clear()  # nothing will be paired: give the memory back now


class Pairer:
    """Streams the candidate run past a ``BaselineOutcomes``: ``add(page.data)``, then ``result()``.

    ``on_flip`` is called for each matched item that flipped, overall or on a criterion, as it is paired:
    the counts say how many flipped, this says which, without keeping a list of either run. Flips reported
    before the runs turn out unpairable (an id seen twice) are void: ``result().pairable`` says so.
    """

    def __init__(
        self,
        baseline: BaselineOutcomes,
        candidate_run_id: str | None = None,
        *,
        on_flip: Callable[[Flip], None] | None = None,
    ) -> None:
        self.baseline = baseline
        self.candidate_run_id = candidate_run_id
        self._on_flip = on_flip
        self._criterion_names: dict[int, str] = {}
        self._reason: str | None = None
        #: candidate ids the baseline lacks; kept so that a repeated one is still caught
        self._only_candidate: set[int] = set()
        self._overall = [0, 0, 0, 0]  # both passed, pass->fail, fail->pass, both failed
        self._criteria: dict[int, list[int]] = {}  # index -> the same four, then one_sided
        self._matched = 0
        self._errored = 0
        self._rows = 0  # the candidate's digest of matched items, as ``BaselineOutcomes.rows``

    def add(self, items: Iterable[OutputItem]) -> None:
        table = self.baseline._table
        stored = self.baseline._items
        for item in items:
            if self.unpairable_reason is not None:
                return
            key = item.datasource_item_id
            if key is None:
                self._unpairable(
                    f"no datasource_item_id on output item {item.id} of run {self.candidate_run_id}"
                )
                return
            outcome = item_outcome(item, table)
            self._errored += bool(outcome & ERRORED_BIT)
            before = stored.get(key)
            if before is None:
                if key in self._only_candidate:
                    self._unpairable(f"datasource_item_id {key} appears twice in run {self.candidate_run_id}")
                    return
                self._only_candidate.add(key)
                continue
            if before & MATCHED_BIT:
                self._unpairable(f"datasource_item_id {key} appears twice in run {self.candidate_run_id}")
                return
            stored[key] = before | MATCHED_BIT
            self._matched += 1
            self._rows += row_digest(item)
            self._tally(self._overall, bool(before & PASSED_BIT), bool(outcome & PASSED_BIT))
            graded = (before | outcome) >> FIRST_CRITERION_BIT
            i = 0
            while graded:
                if graded & 1:  # the criterion's "graded" bit, of either run
                    self._criterion(i, before, outcome)
                graded >>= 2
                i += 1
            if self._on_flip is not None:
                self._report_flip(key, item, before, outcome)

    def _report_flip(self, key: int, item: OutputItem, before: int, outcome: int) -> None:
        assert self._on_flip is not None
        overall = _direction(bool(before & PASSED_BIT), bool(outcome & PASSED_BIT))
        criteria: dict[str, str] = {}
        both = (before & outcome) >> FIRST_CRITERION_BIT  # a "graded" bit survives if set in both runs
        i = 0
        while both:
            if both & 1:
                shift = FIRST_CRITERION_BIT + 2 * i + 1  # the criterion's "passed" bit
                direction = _direction(bool(before >> shift & 1), bool(outcome >> shift & 1))
                if direction is not None:
                    criteria[self._criterion_name(i)] = direction
            both >>= 2
            i += 1
        if overall is not None or criteria:
            self._on_flip(Flip(key, overall, criteria, item))

    def _criterion_name(self, i: int) -> str:
        if i not in self._criterion_names:  # the table grew since the last flip
            self._criterion_names = self.baseline._table.names()
        return self._criterion_names[i]

    def _criterion(self, i: int, before: int, outcome: int) -> None:
        shift = FIRST_CRITERION_BIT + 2 * i
        old, new = (before >> shift) & 3, (outcome >> shift) & 3
        counts = self._criteria.setdefault(i, [0, 0, 0, 0, 0])
        if old & 1 and new & 1:
            self._tally(counts, bool(old & 2), bool(new & 2))
        else:
            counts[4] += 1

    @staticmethod
    def _tally(counts: list[int], baseline_passed: bool, candidate_passed: bool) -> None:
        if baseline_passed:
            counts[0 if candidate_passed else 1] += 1  # both passed, or pass -> fail
        else:
            counts[2 if candidate_passed else 3] += 1  # fail -> pass, or both failed

    @property
    def unpairable_reason(self) -> str | None:
        return self.baseline.unpairable_reason or self._reason

    def _unpairable(self, reason: str) -> None:
        self._reason = reason
        self._only_candidate.clear()

    def result(self) -> Pairing:
        if (
            self.unpairable_reason is None
            and not self._only_candidate
            and self._matched == len(self.baseline)
            and self._rows != self.baseline.rows
        ):
            self._unpairable(DIFFERENT_ROWS)
        names = self.baseline._table.names()
        criteria = tuple(
            sorted(
                (
                    CriterionPairs(name=names[i], counts=PairedCounts(*counts[:4]), one_sided=counts[4])
                    for i, counts in self._criteria.items()
                ),
                key=lambda c: c.name,
            )
        )
        ok = self.unpairable_reason is None
        return Pairing(
            baseline_run_id=self.baseline.run_id,
            candidate_run_id=self.candidate_run_id,
            unpairable_reason=self.unpairable_reason,
            matched=self._matched if ok else 0,
            missing_in_candidate=len(self.baseline) - self._matched if ok else 0,
            missing_in_baseline=len(self._only_candidate) if ok else 0,
            errored_baseline=self.baseline.errored if ok else 0,
            errored_candidate=self._errored if ok else 0,
            overall=PairedCounts(*self._overall) if ok else PairedCounts(),
            criteria=criteria if ok else (),
        )


def pair_items(
    baseline: Iterable[OutputItem],
    candidate: Iterable[OutputItem],
    *,
    baseline_run_id: str | None = None,
    candidate_run_id: str | None = None,
) -> Pairing:
    """Pair two runs' items. Pass generators (for example over the client's pages) to keep memory to
    the baseline's compact map: the candidate's items are looked at once and let go."""
    outcomes = BaselineOutcomes(baseline_run_id)
    outcomes.add(baseline)
    pairer = Pairer(outcomes, candidate_run_id)
    pairer.add(candidate)
    return pairer.result()

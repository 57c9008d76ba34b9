"""One output item's outcome, packed into a few bits of an int, and its row digest.

Pairing two runs (``pairing``) must hold one of them whole while the other streams past, and a run can
have 100,000s of items. So an item is kept as one int whose bits hold its outcome overall and per
criterion, and nothing of its contents; this module defines those bits and how they are read.

What an item's outcome is (the pass-rate policy of ``summary.py``, per item):

* **errored**: ``status`` is ``"error"`` or ``"errored"``, or ``sample.error`` carries a code or a message.
  The API and FakeEvalsServer mark a sample that failed to run as ``status: "fail"`` with an empty
  ``results`` list and ``sample.error`` set; both forms count. Errored is **not passed**;
* **passed**: ``status`` is ``"pass"`` and the item is not errored. Any other status (``"fail"``, an
  unknown one, none) is not passed;
* **per criterion**: a result whose ``passed`` is true or false, keyed by the name the user gave
  (``summary.criterion_name``: ``"exact-label-<uuid>"`` -> ``"exact-label"``). Two results of one item
  with the same name are keyed by their full ids instead, so neither hides the other.

Pairing trusts that item 7 of both runs is the same row. Two runs over different files of the same length
would pair row 7 of one with row 7 of the other, and McNemar would then test flips between unrelated
rows. So each run's ``(datasource_item_id, datasource_item)`` pairs are also folded into an
order-independent digest (the sum of each item's 64-bit ``row_digest``), which the pairer compares. Equal
digests mean equal rows up to a ~2**-64 chance, at O(1) memory where a per-item check would hold every
row's hash.
"""

from __future__ import annotations

import json
from hashlib import blake2b

from airflow_provider_aoai_evals.api.models import OutputItem
from airflow_provider_aoai_evals.api.summary import criterion_name

ERRORED_STATUSES = frozenset({"error", "errored"})

# Bits of one item's outcome. Criterion i (by its index in the shared name table) uses two bits from
# FIRST_CRITERION_BIT + 2*i: "graded" and, above it, "passed".
MATCHED_BIT = 1  # baseline only: the candidate had this item too (set by the pairer)
PASSED_BIT = 2
ERRORED_BIT = 4
FIRST_CRITERION_BIT = 3


def item_errored(item: OutputItem) -> bool:
    """Whether the item's sample failed to run (see the module docstring for both ways it is marked)."""
    if (item.status or "").lower() in ERRORED_STATUSES:
        return True
    error = (item.sample or {}).get("error")
    return isinstance(error, dict) and bool(error.get("code") or error.get("message"))


def item_passed(item: OutputItem) -> bool:
    """Whether the item passed; errored items did not."""
    return item.status == "pass" and not item_errored(item)


class CriterionTable:
    """Criterion key -> index, shared by both runs so that one bit position means one criterion."""

    #: Result names seen; every item repeats the same few, so the uuid is stripped once per name.
    _NAME_CACHE_LIMIT = 4096

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self._names: dict[str, str] = {}

    def _name(self, full: str) -> str:
        name = self._names.get(full)
        if name is None:
            name = criterion_name(full)
            if len(self._names) < self._NAME_CACHE_LIMIT:
                self._names[full] = name
        return name

    def bits(self, item: OutputItem) -> int:
        graded = [(r.name, r.passed) for r in item.results if r.name and isinstance(r.passed, bool)]
        names = [self._name(full) for full, _ in graded]
        unique = len(set(names)) == len(names)
        outcome = 0
        for (full, passed), name in zip(graded, names, strict=True):
            key = name if unique or names.count(name) == 1 else full
            i = self.index.get(key)
            if i is None:
                i = self.index[key] = len(self.index)
            outcome |= (3 if passed else 1) << (FIRST_CRITERION_BIT + 2 * i)  # graded, and passed
        return outcome

    def names(self) -> dict[int, str]:
        """Index -> criterion key, the inverse of ``index``."""
        return {i: key for key, i in self.index.items()}


def item_outcome(item: OutputItem, table: CriterionTable) -> int:
    """The item's outcome bits: errored, passed, and each criterion's graded and passed."""
    outcome = (ERRORED_BIT if item_errored(item) else 0) | (PASSED_BIT if item_passed(item) else 0)
    return outcome | table.bits(item)


def row_digest(item: OutputItem) -> int:
    """A 64-bit hash of the item's id and data source row; runs sum these over their items."""
    row = json.dumps(item.datasource_item, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return int.from_bytes(
        blake2b(f"{item.datasource_item_id}\0{row}".encode(), digest_size=8).digest(), "little"
    )

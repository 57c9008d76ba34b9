"""Pairing two runs' output items by datasource_item_id: flips, errored items, gaps, and bounded memory."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from airflow_provider_aoai_evals.api.auth import ApiKeyAuth
from airflow_provider_aoai_evals.api.client import EvalsClient
from airflow_provider_aoai_evals.api.models import OutputItem
from airflow_provider_aoai_evals.api.pairing import (
    DIFFERENT_ROWS,
    FAIL_TO_PASS,
    PASS_TO_FAIL,
    BaselineOutcomes,
    Flip,
    PairedCounts,
    Pairer,
    item_errored,
    item_passed,
    pair_items,
)
from airflow_provider_aoai_evals.api.settings import ClientSettings
from airflow_provider_aoai_evals.testing import FakeEvalsServer, RunScript

UUID = "2eaf2d8d-d649-4335-8148-9535a7ca73c2"
UUID2 = "0b1c2d3e-aaaa-bbbb-cccc-1234567890ab"
SECRET_ROW = "row text that must never reach XCom"


def item(
    index: int | None,
    status: str | None = "pass",
    criteria: Mapping[str, bool | None] | None = None,
    *,
    sample_error: dict[str, Any] | None = None,
) -> OutputItem:
    results = [{"name": name, "passed": passed, "score": 1.0} for name, passed in (criteria or {}).items()]
    return OutputItem.model_validate(
        {
            "id": f"outputitem_{index}",
            "status": status,
            "datasource_item_id": index,
            "datasource_item": {"input": SECRET_ROW},
            "results": results,
            "sample": {"output": [{"role": "assistant", "content": SECRET_ROW}], "error": sample_error},
        }
    )


def test_errored_items_are_recognised_both_ways_and_never_pass() -> None:
    by_sample = item(1, "fail", sample_error={"code": "server_error", "message": "no sample"})
    by_status = item(2, "error")
    grader_error = item(3, "fail", {f"tone-{UUID}": True}, sample_error={"code": "grader_error"})
    assert item_errored(by_sample) and item_errored(by_status) and item_errored(grader_error)
    assert not item_passed(by_sample) and not item_passed(by_status)
    # A status of "pass" with an error in the sample is still an error (the sample did not run).
    odd = item(4, "pass", sample_error={"message": "timeout"})
    assert item_errored(odd) and not item_passed(odd)
    # An empty error object (code and message blank) is not an error.
    assert not item_errored(item(5, "pass", sample_error={"code": "", "message": ""}))
    assert item_passed(item(5, "pass", sample_error={"code": "", "message": ""}))
    # Unknown or missing statuses are not passes.
    assert not item_passed(item(6, None)) and not item_passed(item(7, "weird"))


def test_flips_overall_and_per_criterion_matched_by_the_name_the_user_gave() -> None:
    exact, tone = f"exact-{UUID}", f"tone-{UUID}"
    # The candidate belongs to another eval: same names, different uuids.
    exact2, tone2 = f"exact-{UUID2}", f"tone-{UUID2}"
    baseline = [
        item(0, "pass", {exact: True, tone: True}),
        item(1, "pass", {exact: True, tone: True}),
        item(2, "fail", {exact: False, tone: True}),
        item(3, "pass", {exact: True, tone: True}),
        item(4, "fail", {exact: True, tone: False}),
        item(5, "pass", {exact: True, tone: True}),
    ]
    candidate = [
        item(5, "fail", sample_error={"code": "server_error", "message": "x"}),  # errored: pass -> fail
        item(3, "pass", {exact2: True, tone2: True}),
        item(1, "fail", {exact2: False, tone2: True}),
        item(0, "pass", {exact2: True, tone2: True}),
        item(4, "pass", {exact2: True, tone2: True}),
        item(2, "pass", {exact2: True, tone2: True}),
    ]
    p = pair_items(baseline, candidate, baseline_run_id="evalrun_b", candidate_run_id="evalrun_c")
    assert p.pairable and p.matched == 6 and p.unmatched == 0
    assert p.overall == PairedCounts(both_passed=2, pass_to_fail=2, fail_to_pass=2, both_failed=0)
    assert (p.errored_baseline, p.errored_candidate) == (0, 1)
    by_name = {c.name: c for c in p.criteria}
    assert set(by_name) == {"exact", "tone"}
    # Item 5 errored in the candidate: no grade, so it is left out of each criterion and counted.
    assert by_name["exact"].counts == PairedCounts(3, 1, 1, 0) and by_name["exact"].one_sided == 1
    assert by_name["tone"].counts == PairedCounts(4, 0, 1, 0) and by_name["tone"].one_sided == 1


def test_items_in_one_run_only_are_counted_not_dropped() -> None:
    baseline = [item(i) for i in range(5)]
    candidate = [item(i) for i in (1, 2, 3, 7, 8, 9)]
    p = pair_items(baseline, candidate)
    assert p.pairable and p.matched == 3
    assert (p.missing_in_candidate, p.missing_in_baseline, p.unmatched) == (2, 3, 5)
    assert p.overall.n == 3


@pytest.mark.parametrize(
    ("baseline", "candidate", "reason"),
    [
        (
            [item(0), item(None)],
            [item(0)],
            "no datasource_item_id on output item outputitem_None of run evalrun_b",
        ),
        (
            [item(0)],
            [item(0), item(None)],
            "no datasource_item_id on output item outputitem_None of run evalrun_c",
        ),
        ([item(0), item(0)], [item(0)], "datasource_item_id 0 appears twice in run evalrun_b"),
        ([item(0)], [item(0), item(0)], "datasource_item_id 0 appears twice in run evalrun_c"),
        ([item(0)], [item(9), item(9)], "datasource_item_id 9 appears twice in run evalrun_c"),
    ],
)
def test_ids_that_do_not_identify_items_make_the_runs_unpairable(
    baseline: list[OutputItem], candidate: list[OutputItem], reason: str
) -> None:
    p = pair_items(baseline, candidate, baseline_run_id="evalrun_b", candidate_run_id="evalrun_c")
    assert not p.pairable and p.unpairable_reason == reason
    assert p.matched == 0 and p.overall == PairedCounts() and p.criteria == ()


def test_results_without_a_verdict_and_repeated_names_are_handled() -> None:
    a, b = f"check-{UUID}", f"check-{UUID2}"
    baseline = [item(0, "pass", {a: True, b: True, "unnamed-verdict": None})]
    candidate = [item(0, "fail", {a: True, b: False})]
    p = pair_items(baseline, candidate)
    # Two criteria named "check": keyed by their full ids, so neither hides the other.
    assert {c.name: c.counts for c in p.criteria} == {
        a: PairedCounts(1, 0, 0, 0),
        b: PairedCounts(0, 1, 0, 0),
    }


def test_random_runs_agree_with_a_plain_count() -> None:
    rng = random.Random(14)
    for _ in range(50):
        n = rng.randint(1, 300)
        names = [f"c{j}-{UUID}" for j in range(rng.randint(0, 4))]

        def draw(names: list[str] = names) -> tuple[str, dict[str, bool]]:
            kind = rng.choice(["pass", "pass", "fail", "error"])
            grades: dict[str, bool] = {}
            if kind != "error":
                grades = {name: rng.random() < 0.8 for name in names if rng.random() < 0.9}
            return kind, grades

        old = {i: draw() for i in range(n)}
        new = {i: draw() for i in range(n)}

        def as_item(i: int, kind: str, grades: dict[str, bool]) -> OutputItem:
            if kind == "error":
                return item(i, "fail", sample_error={"code": "server_error", "message": "x"})
            return item(i, kind, grades)

        order = list(range(n))
        rng.shuffle(order)  # output items come in no guaranteed order
        p = pair_items((as_item(i, *old[i]) for i in range(n)), (as_item(i, *new[i]) for i in order))
        cells = [0, 0, 0, 0]
        for i in range(n):
            was, now = old[i][0] == "pass", new[i][0] == "pass"
            cells[(0 if was else 2) + (0 if now else 1)] += 1
        assert p.overall == PairedCounts(*cells)
        for c in p.criteria:
            name = f"{c.name}-{UUID}"
            both = [
                (old[i][1][name], new[i][1][name])
                for i in range(n)
                if name in old[i][1] and name in new[i][1]
            ]
            expected = PairedCounts(
                sum(x and y for x, y in both),
                sum(x and not y for x, y in both),
                sum(not x and y for x, y in both),
                sum(not x and not y for x, y in both),
            )
            one_sided = sum((name in old[i][1]) != (name in new[i][1]) for i in range(n))
            assert (c.counts, c.one_sided) == (expected, one_sided)


def test_candidate_is_streamed_and_only_compact_outcomes_are_kept() -> None:
    """The baseline is held as ints; the candidate's items are consumed one by one and let go."""
    baseline = BaselineOutcomes("evalrun_b")
    for start in range(0, 1000, 100):  # page by page
        baseline.add(
            item(i, "pass" if i % 3 else "fail", {f"exact-{UUID}": bool(i % 3)})
            for i in range(start, start + 100)
        )
    assert len(baseline) == 1000
    assert all(type(v) is int for v in baseline._items.values())

    seen: list[int] = []

    def pages() -> Iterator[list[OutputItem]]:
        for start in range(0, 1000, 100):
            seen.append(start)
            yield [item(i, "pass", {f"exact-{UUID}": True}) for i in range(start, start + 100)]

    pairer = Pairer(baseline, "evalrun_c")
    for page in pages():
        pairer.add(page)
    p = pairer.result()
    assert seen == list(range(0, 1000, 100))
    assert p.overall == PairedCounts(both_passed=666, pass_to_fail=0, fail_to_pass=334, both_failed=0)


def test_to_xcom_is_json_and_carries_no_item_contents() -> None:
    p = pair_items(
        [item(0, "pass", {f"exact-{UUID}": True}), item(1)],
        [item(0, "fail", {f"exact-{UUID}": False}), item(2)],
        baseline_run_id="evalrun_b",
        candidate_run_id="evalrun_c",
    )
    text = json.dumps(p.to_xcom())
    assert SECRET_ROW not in text and "outputitem_" not in text
    assert json.loads(text)["overall"] == {
        "n": 1,
        "both_passed": 0,
        "pass_to_fail": 1,
        "fail_to_pass": 0,
        "both_failed": 0,
    }
    assert json.loads(text)["missing_in_candidate"] == 1 and json.loads(text)["missing_in_baseline"] == 1


GRADERS = [
    {
        "type": "string_check",
        "name": "exact",
        "input": "{{sample.output_text}}",
        "reference": "{{item.ground_truth}}",
        "operation": "eq",
    },
    {
        "type": "string_check",
        "name": "tone",
        "input": "{{sample.output_text}}",
        "reference": "calm",
        "operation": "ilike",
    },
]


def test_pairs_the_fake_servers_runs_page_by_page() -> None:
    """The documented baseline/candidate pair of docs/testing.md, read through the client in pages of 2."""
    rows = [{"item": {"input": f"headline {i}", "ground_truth": "World"}} for i in range(6)]
    source = {"type": "jsonl", "source": {"type": "file_content", "content": rows}}
    with FakeEvalsServer(api_key="sk-test") as server:
        ev = server.add_eval(name="headlines", testing_criteria=GRADERS)
        base = server.add_run(
            ev["id"],
            RunScript(
                queued_seconds=0,
                in_progress_seconds=0,
                outcomes=["pass", "pass", "fail", "pass", {"tone": "fail"}, "pass"],
            ),
            data_source=source,
        )
        cand = server.add_run(
            ev["id"],
            RunScript(
                queued_seconds=0,
                in_progress_seconds=0,
                outcomes=["pass", "fail", "pass", "pass", {"tone": "error"}, "error"],
            ),
            data_source=source,
        )
        settings = ClientSettings.build(flavor="openai", base_url=server.base_url, auth=ApiKeyAuth("sk-test"))
        with EvalsClient(settings) as client:
            outcomes = BaselineOutcomes(base["id"])
            for page in client.list_output_item_pages(ev["id"], base["id"], limit=2):
                outcomes.add(page.data)
            pairer = Pairer(outcomes, cand["id"])
            for page in client.list_output_item_pages(ev["id"], cand["id"], limit=2, order="desc"):
                pairer.add(page.data)
    p = pairer.result()
    assert p.pairable and p.matched == 6 and p.unmatched == 0
    # 1 regressed, 2 was fixed, 5 errored (pass -> fail); 4 failed before and errored now (its tone grader).
    assert p.overall == PairedCounts(both_passed=2, pass_to_fail=2, fail_to_pass=1, both_failed=1)
    assert (p.errored_baseline, p.errored_candidate) == (0, 2)
    by_name = {c.name: c for c in p.criteria}
    # "fail" fails the first criterion (exact) only; item 5 errored, item 4's tone errored.
    assert by_name["exact"].counts == PairedCounts(3, 1, 1, 0) and by_name["exact"].one_sided == 1
    assert by_name["tone"].counts == PairedCounts(4, 0, 0, 0) and by_name["tone"].one_sided == 2


def test_pairing_20000_random_items_counts_every_one() -> None:
    """A run of realistic size: every item matched and counted (speed is measured in benchmarks/)."""
    rng = random.Random(20_000)
    names = [f"exact-{UUID}", f"tone-{UUID}"]

    def run_items() -> list[OutputItem]:
        return [
            item(i, "pass" if rng.random() < 0.8 else "fail", {n: rng.random() < 0.8 for n in names})
            for i in range(20_000)
        ]

    baseline, candidate = run_items(), run_items()
    p = pair_items(baseline, candidate)
    assert p.matched == 20_000 and p.overall.n == 20_000 and len(p.criteria) == 2
    expected = [0, 0, 0, 0]
    for b, c in zip(baseline, candidate, strict=True):
        expected[(b.status != "pass") * 2 + (c.status != "pass")] += 1
    both_passed, pass_to_fail, fail_to_pass, both_failed = expected
    assert p.overall == PairedCounts(both_passed, pass_to_fail, fail_to_pass, both_failed)


def test_same_ids_over_different_rows_are_not_paired() -> None:
    """Two files of the same length: ids 0..n-1 in both, but row 3 of one is not row 3 of the other."""
    baseline = [item(i) for i in range(5)]
    other = [item(i) for i in range(5)]
    other[3] = OutputItem.model_validate(
        {**other[3].model_dump(), "datasource_item": {"input": "another row"}}
    )
    p = pair_items(baseline, other)
    assert not p.pairable and p.unpairable_reason == DIFFERENT_ROWS
    assert (p.matched, p.overall) == (0, PairedCounts())
    # The same rows listed in another order pair as usual.
    assert pair_items(baseline, list(reversed(baseline))).matched == 5


def test_on_flip_names_exactly_the_items_the_counts_count() -> None:
    rng = random.Random(141)
    names = [f"exact-{UUID}", f"tone-{UUID}"]

    def draw(i: int) -> OutputItem:
        kind = rng.choice(["pass", "pass", "fail", "error"])
        if kind == "error":
            return item(i, "fail", sample_error={"code": "server_error", "message": "x"})
        grades = {n: rng.random() < 0.7 for n in names if rng.random() < 0.9}
        return item(i, "pass" if kind == "pass" and all(grades.values()) else "fail", grades)

    old, new = [draw(i) for i in range(500)], [draw(i) for i in range(500)]
    flips: list[Flip] = []
    baseline = BaselineOutcomes("evalrun_b")
    baseline.add(old)
    pairer = Pairer(baseline, "evalrun_c", on_flip=flips.append)
    pairer.add(reversed(new))
    p = pairer.result()

    by_id = {f.datasource_item_id: f for f in flips}
    assert len(by_id) == len(flips)  # each item reported once
    assert all(f.candidate is new[f.datasource_item_id] for f in flips)
    for direction, count in ((PASS_TO_FAIL, p.overall.pass_to_fail), (FAIL_TO_PASS, p.overall.fail_to_pass)):
        ids = {i for i, f in by_id.items() if f.overall == direction}
        assert len(ids) == count
        assert all(item_passed(old[i]) == (direction == PASS_TO_FAIL) != item_passed(new[i]) for i in ids)
    for c in p.criteria:
        flipped = [f.criteria[c.name] for f in flips if c.name in f.criteria]
        assert flipped.count(PASS_TO_FAIL) == c.counts.pass_to_fail
        assert flipped.count(FAIL_TO_PASS) == c.counts.fail_to_pass
    # Items that flipped on a criterion only (failed before on one, now on another) are reported too.
    assert any(f.overall is None and f.criteria for f in flips)
    assert all(f.overall is not None or f.criteria for f in flips)

"""EvalRunCompareOperator against FakeEvalsServer over real HTTP, with runs whose flips are known.

The runs are built with ``RunScript(outcomes=[...])`` (docs/testing.md), so every count, p-value and line of
the flips file below is worked out by hand from the scripts, not from the code under test. The flips file
goes through ``ObjectStoragePath`` and the baseline lookup through the client's paging, both version-
sensitive, so most of these tests also run on Airflow 3.1 (``-m compat``).
"""

from __future__ import annotations

import http.client
import json
import math
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from airflow.providers.common.compat.sdk import AirflowSkipException, ObjectStoragePath

from airflow_provider_aoai_evals.api.errors import EvalsBadRequestError, EvalsConfigError
from airflow_provider_aoai_evals.api.pairing import FAIL_TO_PASS, PASS_TO_FAIL
from airflow_provider_aoai_evals.operators.compare import EvalRunCompareOperator
from airflow_provider_aoai_evals.operators.quality_gate import EvalGateFailed, EvalRunCheckOperator
from airflow_provider_aoai_evals.testing import FakeEvalsServer, Fault, RunScript
from tests.integration.hostile import Reply, Request, hostile, respond
from tests.support import connection_json, served_as_default_connection

KEY = "sk-compare-canary-7d21"
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
N = 40

# The baseline: every item passes but 30-33, which fail "exact" (a "fail" fails the first criterion).
BASELINE: list[str | dict[str, str]] = ["fail" if 30 <= i <= 33 else "pass" for i in range(N)]
# The candidate, item by item against the baseline:
#   0-4   "fail"           pass -> fail overall and on exact
#   5-6   {"tone": "fail"} pass -> fail overall and on tone
#   30    "pass"           fail -> pass overall and on exact
#   31    {"tone": "fail"} failed before (exact) and now (tone): no overall flip; exact fail -> pass,
#                          tone pass -> fail
#   35    "error"          pass -> fail overall (errored is not passed); graded by neither criterion now,
#                          so one-sided on both
CANDIDATE = list(BASELINE)
CANDIDATE[0:5] = ["fail"] * 5
CANDIDATE[5:7] = [{"tone": "fail"}] * 2
CANDIDATE[30] = "pass"
CANDIDATE[31] = {"exact": "pass", "tone": "fail"}
CANDIDATE[35] = "error"
FLIPPED = {
    **dict.fromkeys(range(7), PASS_TO_FAIL),
    30: FAIL_TO_PASS,
    31: None,
    35: PASS_TO_FAIL,
}

pytestmark = pytest.mark.compat


def exact_binomial_p(b: int, c: int) -> float:
    """Two-sided exact McNemar p, from its definition: 2 * P(X <= min(b, c)) for X ~ Binomial(b + c, 1/2)."""
    n, k = b + c, min(b, c)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / (1 << n))


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEvalsServer]:
    with served_as_default_connection(monkeypatch, KEY) as srv:
        yield srv


def rows(n: int, tag: str = "") -> dict[str, Any]:
    content = [{"item": {"input": f"headline {i}{tag}", "ground_truth": "World"}} for i in range(n)]
    return {"type": "jsonl", "source": {"type": "file_content", "content": content}}


def new_eval(server: FakeEvalsServer) -> str:
    return str(server.add_eval(name="headlines", testing_criteria=GRADERS)["id"])


def add_run(
    server: FakeEvalsServer,
    eval_id: str,
    outcomes: list[Any] | None,
    source: dict[str, Any] | None = None,
    **script: Any,
) -> str:
    run = server.add_run(
        eval_id,
        RunScript(queued_seconds=0, in_progress_seconds=0, outcomes=outcomes, **script),
        data_source=source if source is not None else rows(len(outcomes or [])),
    )
    return str(run["id"])


def pair(server: FakeEvalsServer) -> tuple[str, str, str]:
    """The documented pair of runs: (eval_id, baseline_run_id, run_id)."""
    eval_id = new_eval(server)
    return eval_id, add_run(server, eval_id, BASELINE), add_run(server, eval_id, CANDIDATE)


def compare(
    eval_id: str, run_id: str, baseline_run_id: str = "previous", **kw: Any
) -> EvalRunCompareOperator:
    return EvalRunCompareOperator(
        task_id="compare", eval_id=eval_id, run_id=run_id, baseline_run_id=baseline_run_id, **kw
    )


def read_items(server: FakeEvalsServer, eval_id: str, run_id: str) -> dict[int, dict[str, Any]]:
    """A run's items as the API sends them, by datasource_item_id: the oracle for the flips file."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port)
    conn.request(
        "GET",
        f"/v1/evals/{eval_id}/runs/{run_id}/output_items?limit=100",
        headers={"Authorization": f"Bearer {KEY}"},
    )
    page = json.loads(conn.getresponse().read())
    assert not page["has_more"]
    return {item["datasource_item_id"]: item for item in page["data"]}


def leftovers(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*"))


# -- the comparison -----------------------------------------------------------------------------------------


def test_flips_counts_and_exact_p_values_overall_and_per_criterion(server: FakeEvalsServer) -> None:
    eval_id, baseline_id, run_id = pair(server)
    result = compare(eval_id, run_id, baseline_id).execute({})

    assert json.loads(json.dumps(result)) == result  # XCom-safe as it stands
    assert result["paired"] is True and result["test"] == "mcnemar-exact"
    assert result["reason"] == f"paired by datasource_item_id ({N} items)"
    assert (result["eval_id"], result["candidate_run_id"], result["baseline_run_id"]) == (
        eval_id,
        run_id,
        baseline_id,
    )
    assert (result["matched"], result["missing_in_candidate"], result["missing_in_baseline"]) == (N, 0, 0)
    assert (result["flips_path"], result["flips"]) == (None, None)

    overall = result["overall"]
    # Overall: 0-6 and 35 pass -> fail (8), 30 fail -> pass (1); p = 2 * (C(9,0) + C(9,1)) / 2**9.
    assert (overall["pass_to_fail"], overall["fail_to_pass"]) == (8, 1)
    assert overall["p_value"] == pytest.approx(20 / 512, rel=1e-12) == exact_binomial_p(8, 1)
    assert overall["baseline"]["passed"] == 36 and overall["candidate"]["passed"] == 29
    assert overall["difference"] == pytest.approx(-7 / N)
    assert overall["low"] < overall["difference"] < overall["high"] < 0
    assert overall["interval_method"] == "newcombe-paired"
    for side in ("baseline", "candidate"):
        rate = overall[side]
        assert rate["n"] == N and rate["method"] == "wilson" and rate["confidence"] == 0.95
        assert rate["low"] < rate["rate"] < rate["high"]

    by_name = {c["name"]: c for c in result["criteria"]}
    assert set(by_name) == {"exact", "tone"}
    exact, tone = by_name["exact"], by_name["tone"]
    # exact: 0-4 pass -> fail, 30 and 31 fail -> pass; 35 graded in the baseline only.
    assert (exact["pass_to_fail"], exact["fail_to_pass"]) == (5, 2)
    assert exact["p_value"] == pytest.approx(58 / 128, rel=1e-12) == exact_binomial_p(5, 2)
    assert exact["reason"].endswith("; 1 item graded by it in one run only left out")
    # tone: 5, 6 and 31 pass -> fail, none back; p = 2 / 2**3.
    assert (tone["pass_to_fail"], tone["fail_to_pass"]) == (3, 0)
    assert tone["p_value"] == pytest.approx(0.25, rel=1e-12) == exact_binomial_p(3, 0)

    pairing = result["pairing"]
    assert pairing["pairable"] and pairing["errored_candidate"] == 1 and pairing["errored_baseline"] == 0
    assert {c["name"]: c["one_sided"] for c in pairing["criteria"]} == {"exact": 1, "tone": 1}

    # The readable summary (also logged): what was paired, then one line per check with the estimate,
    # interval, p, flips, test and why.
    head, *checks = result["summary"]
    assert head == (
        f"eval run {run_id} against baseline {baseline_id}: paired by datasource_item_id (40 items); "
        "40 matched, 0 missing from the run, 0 missing from the baseline; errored items: 0 in the baseline, "
        "1 in the run"
    )
    low, high = overall["low"] * 100, overall["high"] * 100
    assert checks[0] == (
        f"pass_rate: 90.0% -> 72.5% (-17.5 points, 95% CI {low:+.1f} to {high:+.1f}), p=0.03906, "
        "8 pass_to_fail / 1 fail_to_pass; mcnemar-exact: paired by datasource_item_id (40 items)"
    )
    # Per criterion over the 39 items graded by it in both runs (35 errored in the candidate):
    # exact 35/39 -> 32/39, tone 39/39 -> 36/39.
    assert checks[1].startswith("exact: 89.7% -> 82.1% (-7.7 points, 95% CI ")
    assert ", p=0.4531, 5 pass_to_fail / 2 fail_to_pass; mcnemar-exact: " in checks[1]
    assert checks[2].startswith("tone: 100.0% -> 92.3% (-7.7 points, 95% CI ")
    assert ", p=0.25, 3 pass_to_fail / 0 fail_to_pass; mcnemar-exact: " in checks[2]
    assert len(checks) == 3


def test_confidence_sets_every_interval(server: FakeEvalsServer) -> None:
    eval_id, baseline_id, run_id = pair(server)
    wide = compare(eval_id, run_id, baseline_id, confidence=0.99).execute({})["overall"]
    narrow = compare(eval_id, run_id, baseline_id, confidence=0.8).execute({})["overall"]
    assert wide["confidence"] == 0.99 and narrow["confidence"] == 0.8
    assert wide["low"] < narrow["low"] < narrow["high"] < wide["high"]
    assert wide["p_value"] == narrow["p_value"]  # the test does not depend on the level


@pytest.mark.parametrize(
    ("baseline_rows", "candidate_rows", "missing"),
    [(N, N - 5, (5, 0)), (N - 5, N, (0, 5))],
    ids=["fewer-in-candidate", "more-in-candidate"],
)
def test_runs_over_different_datasets_are_compared_unpaired_and_say_why(
    server: FakeEvalsServer,
    tmp_path: Path,
    baseline_rows: int,
    candidate_rows: int,
    missing: tuple[int, int],
) -> None:
    eval_id = new_eval(server)
    baseline_id = add_run(server, eval_id, BASELINE[:baseline_rows])
    run_id = add_run(server, eval_id, CANDIDATE[:candidate_rows])
    out = tmp_path / "flips.jsonl"
    result = compare(eval_id, run_id, baseline_id, destination=str(out)).execute({})

    assert result["paired"] is False and result["test"] == "two-proportions-z"
    in_candidate, in_baseline = missing
    assert result["reason"] == (
        f"runs have different datasets: 5 items unmatched ({in_candidate} missing from the candidate, "
        f"{in_baseline} missing from the baseline)"
    )
    assert (result["missing_in_candidate"], result["missing_in_baseline"]) == missing
    assert result["matched"] == N - 5
    assert result["overall"]["interval_method"] == "newcombe-hybrid-score"
    assert result["overall"]["pass_to_fail"] is None  # no paired test, so no flips claimed
    assert 0 < result["overall"]["p_value"] < 1
    assert all(c["test"] == "two-proportions-z" for c in result["criteria"])
    # The pairing still counted the matched items, for a person to read.
    assert result["pairing"]["overall"]["n"] == N - 5
    # No flips file: without a paired comparison no item is known to have flipped.
    assert (result["flips_path"], result["flips"]) == (None, None)
    assert not out.exists() and leftovers(tmp_path) == []


def test_runs_over_different_rows_of_the_same_length_are_not_paired(server: FakeEvalsServer) -> None:
    """Same ids 0..39 but other rows: pairing them would test flips between unrelated rows."""
    eval_id = new_eval(server)
    baseline_id = add_run(server, eval_id, BASELINE)
    run_id = add_run(server, eval_id, CANDIDATE, rows(N, tag=" (other file)"))
    result = compare(eval_id, run_id, baseline_id).execute({})
    assert result["paired"] is False and result["test"] == "two-proportions-z"
    assert result["reason"].startswith("runs have different rows: items with the same datasource_item_id")
    assert result["pairing"]["pairable"] is False
    assert result["pairing"]["unpairable_reason"] == result["reason"]
    assert result["matched"] is None  # nothing was paired
    assert result["summary"][0].endswith(
        f"not paired ({result['reason']}); - matched, - missing from the run, - missing from the baseline; "
        "errored items: 0 in the baseline, 0 in the run"
    )


def test_the_gate_does_not_pair_different_rows_either(server: FakeEvalsServer) -> None:
    """The gate's regression test pairs as the compare operator does: the same refusal, the same reason."""
    eval_id = new_eval(server)
    baseline_id = add_run(server, eval_id, BASELINE)
    run_id = add_run(server, eval_id, CANDIDATE, rows(N, tag=" (other file)"))
    gate = EvalRunCheckOperator(
        task_id="gate",
        eval_id=eval_id,
        run_id=run_id,
        baseline_run_id=baseline_id,
        max_regression=0.02,
        regression_alpha=0.05,
    )
    pushed: dict[str, Any] = {}

    class Ti:  # outside a task runner; the DAG tests run gates through dag.test()
        def xcom_push(self, key: str, value: Any) -> None:
            pushed[key] = value

    # 90% -> 72.5% is significant even as two samples (p = 0.045), so the gate still fails.
    with pytest.raises(EvalGateFailed, match="runs have different rows"):
        gate.execute(cast(Any, {"ti": Ti()}))
    verdict = pushed["verdict"]
    comparison = verdict["comparison"]
    assert comparison["paired"] is False and comparison["test"] == "two-proportions-z"
    assert comparison["reason"] == compare(eval_id, run_id, baseline_id).execute({})["reason"]
    assert comparison["reason"].startswith("runs have different rows")
    check = next(c for c in verdict["checks"] if c["name"] == "regression:pass_rate")
    assert check["evidence"]["test"] == "two-proportions-z" and check["evidence"]["pass_to_fail"] is None


def test_errored_items_are_counted_not_passed(server: FakeEvalsServer) -> None:
    eval_id = new_eval(server)
    baseline_id = add_run(server, eval_id, ["pass", "error", "pass", "error"])
    run_id = add_run(server, eval_id, ["error", "pass", "pass", "error"])
    result = compare(eval_id, run_id, baseline_id).execute({})
    assert (
        result["paired"] and result["overall"]["pass_to_fail"] == 1 and result["overall"]["fail_to_pass"] == 1
    )
    assert (result["pairing"]["errored_baseline"], result["pairing"]["errored_candidate"]) == (2, 2)
    assert result["pairing"]["overall"]["both_failed"] == 1  # item 3: errored in both


# -- the flips file -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["plain", "file_url", "object_storage_path"])
def test_flips_file_holds_both_sides_and_the_direction(
    server: FakeEvalsServer, tmp_path: Path, style: str
) -> None:
    eval_id, baseline_id, run_id = pair(server)
    out = tmp_path / "nested" / "flips.jsonl"
    destination: Any = {
        "plain": str(out),
        "file_url": f"file://{out}",
        "object_storage_path": ObjectStoragePath(f"file://{out}"),
    }[style]
    result = compare(eval_id, run_id, baseline_id, destination=destination).execute({})

    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert result["flips"] == len(lines) == len(FLIPPED) and result["flips_path"].endswith(str(out))
    assert leftovers(tmp_path) == []
    by_id = {line["datasource_item_id"]: line for line in lines}
    assert {i: line["direction"] for i, line in by_id.items()} == FLIPPED
    assert by_id[31]["criteria"] == {"exact": FAIL_TO_PASS, "tone": PASS_TO_FAIL}
    assert by_id[0]["criteria"] == {"exact": PASS_TO_FAIL}
    assert by_id[5]["criteria"] == {"tone": PASS_TO_FAIL}
    assert by_id[35]["criteria"] == {}  # errored now: no grader ran, so no criterion flipped

    old, new = read_items(server, eval_id, baseline_id), read_items(server, eval_id, run_id)
    for i, line in by_id.items():
        assert (
            line["item"] == old[i]["datasource_item"] == {"input": f"headline {i}", "ground_truth": "World"}
        )
        for side, items, rid in (("baseline", old, baseline_id), ("candidate", new, run_id)):
            api = items[i]
            got = line[side]
            assert got["run_id"] == rid and got["output_item_id"] == api["id"]
            assert got["status"] == api["status"]
            expected_text = "\n".join(m["content"] for m in api["sample"]["output"]) or None
            assert got["output_text"] == expected_text
            assert got["results"] == api["results"]
            assert got["error"] == api["sample"]["error"]
    assert by_id[35]["candidate"]["output_text"] is None
    assert by_id[35]["candidate"]["error"]["code"] == "server_error"
    assert {r["passed"] for r in by_id[0]["baseline"]["results"]} == {True}
    # The file is as long as the flips the comparison counted, overall and on criteria only.
    overall = result["overall"]
    assert sum(1 for line in lines if line["direction"]) == overall["pass_to_fail"] + overall["fail_to_pass"]


def test_no_flips_writes_an_empty_file_without_reading_the_baseline_again(
    server: FakeEvalsServer, tmp_path: Path
) -> None:
    eval_id = new_eval(server)
    baseline_id = add_run(server, eval_id, BASELINE)
    run_id = add_run(server, eval_id, BASELINE)
    out = tmp_path / "flips.jsonl"
    result = compare(eval_id, run_id, baseline_id, destination=str(out)).execute({})
    assert result["overall"]["p_value"] == 1.0 and result["flips"] == 0
    assert out.read_bytes() == b""
    assert server.count(path_regex=f"{baseline_id}/output_items") == 1


class FailsInTheSecondPass(EvalRunCompareOperator):
    """The operator, with the API failing once the second pass has written its first page of flips."""

    def __init__(self, *, server: FakeEvalsServer, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._server = server
        self._writing = False

    def _write_flips(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self._writing = True
        return super()._write_flips(*args, **kwargs)

    def _pages(self, *args: Any, **kwargs: Any) -> Iterator[list[Any]]:
        for page in super()._pages(*args, **kwargs):
            yield page
            if self._writing:  # the page's flips are written by now; later requests fail for good
                self._server.inject(Fault(kind="status", status=400, path_regex="/output_items$", count=None))


def test_a_failure_while_writing_leaves_no_partial_file(server: FakeEvalsServer, tmp_path: Path) -> None:
    eval_id = new_eval(server)
    # Five pages, flips on the first and the last: with one page read ahead, the fault injected after the
    # first page meets the fourth page's request at the latest.
    n = 450
    baseline_id = add_run(server, eval_id, ["pass"] * n)
    run_id = add_run(server, eval_id, ["fail"] + ["pass"] * (n - 2) + ["fail"])
    out = tmp_path / "flips.jsonl"
    out.write_text("yesterday's flips\n")
    task = FailsInTheSecondPass(
        server=server,
        task_id="compare",
        eval_id=eval_id,
        run_id=run_id,
        baseline_run_id=baseline_id,
        destination=str(out),
    )
    with pytest.raises(EvalsBadRequestError):
        task.execute({})
    # It failed in the second pass (five pages each pass), once item 0's line was written.
    assert server.count(path_regex=f"{baseline_id}/output_items") > 5 + 1
    assert out.read_text() == "yesterday's flips\n"  # the old file, whole; never a part of the new one
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda tmp: tmp / "a-file" / "flips.jsonl", "is a file, not a folder"),
        (lambda tmp: tmp, "is an existing folder"),
    ],
    ids=["file-in-the-way", "folder"],
)
def test_a_destination_that_cannot_take_a_file_fails_before_any_request(
    server: FakeEvalsServer, tmp_path: Path, make: Any, problem: str
) -> None:
    (tmp_path / "a-file").write_text("x")
    eval_id, baseline_id, run_id = pair(server)
    server.reset()
    with pytest.raises(EvalsConfigError, match=problem) as info:
        compare(eval_id, run_id, baseline_id, destination=str(make(tmp_path))).execute({})
    assert info.value.parameter == "destination"
    assert server.count() == 0


# -- which baseline ---------------------------------------------------------------------------------------


def test_previous_is_the_latest_completed_run_before_this_one(server: FakeEvalsServer) -> None:
    eval_id = new_eval(server)
    state = server._state
    state.wall_clock = lambda: time.time() - 7200
    oldest = add_run(server, eval_id, CANDIDATE)  # would compare as "no flips" with the run
    state.wall_clock = lambda: time.time() - 3600
    baseline_id = add_run(server, eval_id, BASELINE)
    state.wall_clock = lambda: time.time() - 1800
    other_model = add_run(server, eval_id, CANDIDATE, model="gpt-4.1")
    failed = add_run(server, eval_id, CANDIDATE, final_status="failed")
    state.wall_clock = time.time
    run_id = add_run(server, eval_id, CANDIDATE)
    state.wall_clock = lambda: time.time() + 60
    later = add_run(server, eval_id, CANDIDATE)  # created after the run: never its baseline
    state.wall_clock = time.time
    assert len({oldest, baseline_id, other_model, failed, run_id, later}) == 6

    same_model = compare(eval_id, run_id, baseline_same_model=True).execute({})
    assert same_model["baseline_run_id"] == baseline_id
    assert same_model["overall"]["pass_to_fail"] == 8
    # Without the model filter the run of another model, created later, is the previous completed one.
    assert compare(eval_id, run_id).execute({})["baseline_run_id"] == other_model


def test_previous_with_no_earlier_run_fails_or_skips_when_allowed(server: FakeEvalsServer) -> None:
    eval_id = new_eval(server)
    run_id = add_run(server, eval_id, CANDIDATE)
    with pytest.raises(EvalsConfigError, match="allow_missing_baseline=True") as info:
        compare(eval_id, run_id).execute({})
    assert info.value.parameter == "baseline_run_id"
    assert f"no completed run of eval {eval_id} before run {run_id}" in str(info.value)
    with pytest.raises(AirflowSkipException, match="No baseline run"):
        compare(eval_id, run_id, allow_missing_baseline=True).execute({})
    assert server.count(path_regex="/output_items") == 0


def test_previous_with_a_metadata_key_picks_runs_with_the_same_value(server: FakeEvalsServer) -> None:
    eval_id = new_eval(server)
    state = server._state
    state.wall_clock = lambda: time.time() - 3600
    same = server.add_run(
        eval_id,
        RunScript(queued_seconds=0, in_progress_seconds=0, outcomes=BASELINE),
        data_source=rows(N),
        metadata={"dataset": "headlines-v2"},
    )["id"]
    state.wall_clock = lambda: time.time() - 60
    server.add_run(
        eval_id,
        RunScript(queued_seconds=0, in_progress_seconds=0, outcomes=BASELINE),
        data_source=rows(N),
        metadata={"dataset": "headlines-v1"},
    )
    state.wall_clock = time.time
    run_id = server.add_run(
        eval_id,
        RunScript(queued_seconds=0, in_progress_seconds=0, outcomes=CANDIDATE),
        data_source=rows(N),
        metadata={"dataset": "headlines-v2"},
    )["id"]
    result = compare(eval_id, run_id, baseline_metadata_key="dataset").execute({})
    assert result["baseline_run_id"] == same


# -- bad input ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("confidence", [0.5, 1, 1.0, 95, 0, -0.9, float("nan"), True, "0.95", None])
def test_confidence_outside_one_half_to_one_fails_at_construction(confidence: Any) -> None:
    with pytest.raises(EvalsConfigError) as info:
        compare("eval_1", "evalrun_1", confidence=confidence)
    assert info.value.parameter == "confidence" and "between 0.5 and 1" in str(info.value)


def test_a_destination_of_the_wrong_type_fails_at_construction() -> None:
    with pytest.raises(EvalsConfigError) as info:
        compare("eval_1", "evalrun_1", destination=42)
    assert info.value.parameter == "destination"


@pytest.mark.parametrize(
    ("kwargs", "parameter", "problem"),
    [
        ({"baseline_run_id": "evalrun_1"}, "baseline_run_id", "is run evalrun_1 itself"),
        ({"baseline_run_id": ""}, "baseline_run_id", "must be a run id or 'previous'"),
        ({"baseline_run_id": "None"}, "baseline_run_id", "is the text 'None'"),
        ({"run_id": "None"}, "run_id", "is the text 'None'"),
        ({"eval_id": "../evals"}, "eval_id", ""),
        ({"baseline_run_id": "run/../x"}, "baseline_run_id", ""),
        ({"destination": "relative/flips.jsonl"}, "destination", "is a relative path"),
        ({"destination": "/tmp/some/dir/"}, "destination", "names a directory"),
    ],
)
def test_bad_rendered_input_fails_before_any_request(
    server: FakeEvalsServer, kwargs: dict[str, Any], parameter: str, problem: str
) -> None:
    args: dict[str, Any] = {"eval_id": "eval_1", "run_id": "evalrun_1", "baseline_run_id": "evalrun_0"}
    args.update(kwargs)
    with pytest.raises(EvalsConfigError, match=re.escape(problem) if problem else None) as info:
        compare(args.pop("eval_id"), args.pop("run_id"), **args).execute({})
    assert info.value.parameter == parameter
    assert server.count() == 0


def test_templated_ids_that_pulled_nothing_are_refused_quoting_the_template(server: FakeEvalsServer) -> None:
    task = compare("eval_1", "{{ ti.xcom_pull(task_ids='start', key='run_id') }}", "previous")
    task.render_template_fields(cast("Any", {"ti": _NoXCom()}))
    with pytest.raises(EvalsConfigError, match="rendered as 'None': the template pulled nothing") as info:
        task.execute({})
    assert info.value.parameter == "run_id" and "task_ids='start'" in str(info.value)
    assert server.count() == 0


class _NoXCom:
    def xcom_pull(self, **_: Any) -> None:
        return None


def test_a_baseline_of_another_eval_is_refused(server: FakeEvalsServer) -> None:
    eval_id = new_eval(server)
    run_id = add_run(server, eval_id, CANDIDATE)
    other_eval = new_eval(server)
    foreign = add_run(server, other_eval, BASELINE)
    # The fake, like the API, answers 404 for a run asked for under another eval.
    with pytest.raises(EvalsConfigError, match=f"baseline run {foreign} of eval {eval_id} does not exist"):
        compare(eval_id, run_id, foreign).execute({})


def test_a_run_the_api_says_belongs_to_another_eval_is_refused(
    server: FakeEvalsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An API (or a proxy) that answers for a run of another eval under this eval's path: the run's own
    ``eval_id`` decides, since pairing the two would compare items graded by different criteria."""
    eval_id = new_eval(server)
    run_id = add_run(server, eval_id, CANDIDATE)
    other_eval = new_eval(server)
    foreign = add_run(server, other_eval, BASELINE)

    def forward(request: Request) -> Reply:
        target = request.target.replace(
            f"/evals/{eval_id}/runs/{foreign}", f"/evals/{other_eval}/runs/{foreign}"
        )
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request(request.method, target, headers={"Authorization": request.headers["authorization"]})
        response = conn.getresponse()
        return respond(response.status, response.read())

    with hostile(forward) as proxy:
        monkeypatch.setenv(
            "AIRFLOW_CONN_AOAI_EVALS_DEFAULT", connection_json(server).replace(server.url, proxy.url)
        )
        with pytest.raises(EvalsConfigError) as info:
            compare(eval_id, run_id, foreign).execute({})
    assert info.value.parameter == "baseline_run_id"
    assert f"run {foreign} belongs to eval {other_eval}, not {eval_id}" in str(info.value)
    assert server.count(path_regex="/output_items") == 0


@pytest.mark.parametrize("side", ["baseline", "candidate"])
def test_a_run_without_output_items_is_refused_naming_it(server: FakeEvalsServer, side: str) -> None:
    eval_id = new_eval(server)
    empty: dict[str, Any] = {
        "output_items": 0,
        "fail_every": 0,
        "source": {"type": "jsonl", "source": {"type": "file_id", "id": "file-x"}},
    }
    if side == "baseline":
        baseline_id = add_run(server, eval_id, None, **empty)
        run_id = add_run(server, eval_id, CANDIDATE)
    else:
        baseline_id = add_run(server, eval_id, BASELINE)
        run_id = add_run(server, eval_id, None, **empty)
    with pytest.raises(EvalsConfigError, match="has no output items") as info:
        compare(eval_id, run_id, baseline_id).execute({})
    assert info.value.parameter == ("baseline_run_id" if side == "baseline" else "run_id")


@pytest.mark.parametrize("side", ["baseline", "candidate"])
def test_a_run_that_has_not_completed_is_refused_naming_it(server: FakeEvalsServer, side: str) -> None:
    eval_id = new_eval(server)
    baseline_id = add_run(server, eval_id, BASELINE)
    run_id = add_run(server, eval_id, CANDIDATE)
    server.set_run_status(baseline_id if side == "baseline" else run_id, "in_progress")
    with pytest.raises(EvalsConfigError, match="is 'in_progress', not 'completed'") as info:
        compare(eval_id, run_id, baseline_id).execute({})
    assert info.value.parameter == ("baseline_run_id" if side == "baseline" else "run_id")
    assert server.count(path_regex="/output_items") == 0


# -- lineage -----------------------------------------------------------------------------------------------


def test_lineage_reads_both_runs_and_writes_the_flips_file(server: FakeEvalsServer, tmp_path: Path) -> None:
    from openlineage.client.serde import Serde

    eval_id, baseline_id, run_id = pair(server)
    out = tmp_path / "flips.jsonl"
    task = compare(eval_id, run_id, baseline_id, destination=str(out))
    task.execute({})
    reported = task.get_openlineage_facets_on_complete(None)
    api = "openai://" + server.base_url.split("://", 1)[1].split("/", 1)[0]
    assert [(d.namespace, d.name) for d in reported.inputs] == [
        (api, f"evals/{eval_id}/runs/{run_id}"),
        (api, f"evals/{eval_id}/runs/{baseline_id}"),
    ]
    [output] = reported.outputs
    assert (output.namespace, output.name) == ("file", str(out))
    statistics = Serde.to_dict(output)["outputFacets"]["outputStatistics"]
    assert statistics["rowCount"] == len(FLIPPED) and statistics["size"] == out.stat().st_size
    facet = Serde.to_dict(reported.run_facets["aoaiEvalsRun"])
    assert (facet["evalId"], facet["runId"], facet["status"]) == (eval_id, run_id, "completed")
    assert "headline" not in json.dumps(facet)  # never a row


def test_lineage_without_a_file_names_only_the_inputs(server: FakeEvalsServer) -> None:
    eval_id, baseline_id, run_id = pair(server)
    task = compare(eval_id, run_id, baseline_id)
    task.execute({})
    reported = task.get_openlineage_facets_on_complete(None)
    assert len(reported.inputs) == 2 and reported.outputs == []

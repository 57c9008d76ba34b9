"""Per-item outcomes (``RunScript.outcomes``): runs whose items pass, fail or error exactly as scripted.

Everything is read back through the provider's own ``EvalsClient`` over loopback, in both flavors, so a
test here proves what a user's comparison of two runs would see: counts, per-criterion counts and output
items that agree with each other and with the script, paired by ``datasource_item_id``.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest
import requests

from airflow_provider_aoai_evals.api.auth import ApiKeyAuth
from airflow_provider_aoai_evals.api.client import EvalsClient
from airflow_provider_aoai_evals.api.errors import EvalsBadRequestError
from airflow_provider_aoai_evals.api.retry import RetryPolicy
from airflow_provider_aoai_evals.api.settings import ClientSettings
from airflow_provider_aoai_evals.testing import RunScript
from airflow_provider_aoai_evals.testing.state import ApiError
from tests.docs.markdown import REPO, code_block
from tests.testing.fake_helpers import API_KEY

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from airflow_provider_aoai_evals.api.models import EvalRun, OutputItem
    from airflow_provider_aoai_evals.testing import FakeEvalsServer

CRITERIA = [
    {
        "type": "string_check",
        "name": "exact",
        "input": "{{sample.output_text}}",
        "reference": "x",
        "operation": "eq",
    },
    {
        "type": "string_check",
        "name": "tone",
        "input": "{{sample.output_text}}",
        "reference": "x",
        "operation": "like",
    },
]
CONFIG = {"type": "custom", "item_schema": {"type": "object"}, "include_sample_schema": True}
INSTANT = {"queued_seconds": 0.0, "in_progress_seconds": 0.0}
#: One entry of each kind, then a dict naming both criteria and an empty dict (everything passes).
MIXED: list[str | dict[str, str]] = [
    "pass",
    "fail",
    {"tone": "fail"},
    {"exact": "error"},
    "error",
    {"exact": "fail", "tone": "fail"},
    {},
    {"exact": "pass", "tone": "error"},
]
#: What MIXED gives, item by item: (status, sample.error code or None, {criterion: passed} per result).
MIXED_ITEMS: list[tuple[str, str | None, dict[str, bool]]] = [
    ("pass", None, {"exact": True, "tone": True}),
    ("fail", None, {"exact": False, "tone": True}),
    ("fail", None, {"exact": True, "tone": False}),
    ("fail", "grader_error", {"tone": True}),
    ("fail", "server_error", {}),
    ("fail", None, {"exact": False, "tone": False}),
    ("pass", None, {"exact": True, "tone": True}),
    ("fail", "grader_error", {"exact": True}),
]


def fast(outcomes: list[str | dict[str, str]] | None = None, **script: Any) -> RunScript:
    """A run that completes at once, so a test reads its final counts without waiting."""
    return RunScript(queued_seconds=0.0, in_progress_seconds=0.0, outcomes=outcomes, **script)


def rows(n: int, tag: str = "q") -> list[dict[str, Any]]:
    return [{"item": {"input": f"{tag} {i}", "ground_truth": "World"}} for i in range(n)]


def inline(content: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "jsonl", "source": {"type": "file_content", "content": content}}


@pytest.fixture
def client(server: FakeEvalsServer) -> Iterator[EvalsClient]:
    settings = ClientSettings.build(
        flavor=server.flavor,
        base_url=server.base_url,
        auth=ApiKeyAuth(API_KEY, header="bearer" if server.flavor == "openai" else "api-key"),
        retry=RetryPolicy(max_attempts=2, initial_delay=0.01, max_delay=0.02),
        read_timeout=10.0,
    )
    with EvalsClient(settings) as evals:
        yield evals


@pytest.fixture
def eval_id(server: FakeEvalsServer) -> str:
    return str(server.add_eval(name="outcomes", testing_criteria=CRITERIA, data_source_config=CONFIG)["id"])


def criterion(testing_criteria_id: str | None) -> str:
    """``exact-<uuid4>`` -> ``exact``: the API's naming, which the fake follows."""
    assert testing_criteria_id is not None
    match = re.fullmatch(
        r"(.+)-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", testing_criteria_id
    )
    assert match, testing_criteria_id
    return match.group(1)


def per_criterion(run: EvalRun) -> dict[str, tuple[int, int]]:
    assert run.per_testing_criteria_results is not None
    return {criterion(r.testing_criteria): (r.passed, r.failed) for r in run.per_testing_criteria_results}


def counts(run: EvalRun) -> tuple[int, int, int, int]:
    assert run.result_counts is not None
    rc = run.result_counts
    return rc.total, rc.passed, rc.failed, rc.errored


def summary(item: OutputItem) -> tuple[str, str | None, dict[str, bool]]:
    error = (item.sample or {}).get("error")
    verdicts = {criterion(r.name): bool(r.passed) for r in item.results}
    for result in item.results:
        assert result.score == (1.0 if result.passed else 0.0)
    return str(item.status), error["code"] if error else None, verdicts


def tally_items(items: list[OutputItem]) -> tuple[tuple[int, int, int, int], dict[str, tuple[int, int]]]:
    """Counts and per-criterion counts as a client would derive them from the items alone."""
    errored = sum((i.sample or {}).get("error") is not None for i in items)
    passed = sum(i.status == "pass" for i in items)
    crit: dict[str, list[int]] = {"exact": [0, 0], "tone": [0, 0]}
    for item in items:
        for result in item.results:
            crit[criterion(result.name)][0 if result.passed else 1] += 1
    totals = (len(items), passed, len(items) - passed - errored, errored)
    return totals, {name: (p, f) for name, (p, f) in crit.items()}


# ---- the rules ------------------------------------------------------------------------------------------
def test_counts_per_criterion_and_items_agree_with_the_outcomes(
    server: FakeEvalsServer, client: EvalsClient, eval_id: str
) -> None:
    content = rows(len(MIXED))
    run_id = server.add_run(eval_id, fast(MIXED), data_source=inline(content))["id"]
    run = client.get_run(eval_id, run_id)
    assert run.status == "completed"
    assert counts(run) == (8, 2, 3, 3)
    # Errored criteria count neither way; the other criteria of an errored item still count.
    assert per_criterion(run) == {"exact": (4, 2), "tone": (4, 2)}
    items = list(client.list_output_items(eval_id, run_id))
    assert [summary(i) for i in items] == MIXED_ITEMS
    assert [i.datasource_item_id for i in items] == list(range(len(MIXED)))
    assert [i.datasource_item for i in items] == [row["item"] for row in content]
    assert tally_items(items) == (counts(run), per_criterion(run))
    # A grader error leaves the sample's answer in place and names the grader; a sample error has none.
    grader, sampler = items[3].sample or {}, items[4].sample or {}
    assert grader["output"] and "exact-" in grader["error"]["message"]
    assert sampler["output"] == []
    assert run.per_model_usage is not None
    assert run.per_model_usage[0].invocation_count == len(MIXED) - 1  # only the sample error made no call


def test_status_filter_and_single_item_reads_follow_the_outcomes(
    server: FakeEvalsServer, client: EvalsClient, eval_id: str
) -> None:
    run_id = server.add_run(eval_id, fast(MIXED), data_source=inline(rows(8)))["id"]
    passing = [i.datasource_item_id for i in client.list_output_items(eval_id, run_id, status="pass")]
    failing = [i.datasource_item_id for i in client.list_output_items(eval_id, run_id, status="fail")]
    assert passing == [0, 6]
    assert failing == [1, 2, 3, 4, 5, 7]
    every = list(client.list_output_items(eval_id, run_id, order="desc", limit=3))
    assert [i.datasource_item_id for i in every] == list(range(7, -1, -1))
    one = client.get_output_item(eval_id, run_id, every[4].id)
    assert summary(one) == MIXED_ITEMS[3]


def test_a_short_list_leaves_the_rest_to_the_pattern(
    server: FakeEvalsServer, client: EvalsClient, eval_id: str
) -> None:
    script = fast(["fail", "fail"], fail_every=3, error_every=5)
    run_id = server.add_run(eval_id, script, data_source=inline(rows(10)))["id"]
    items = list(client.list_output_items(eval_id, run_id))
    # Items 0-1 as scripted; from item 2 on, every 3rd fails and every 5th errors, counted from item 0.
    assert [summary(i)[:2] for i in items] == [
        ("fail", None),
        ("fail", None),
        ("fail", None),
        ("pass", None),
        ("fail", "server_error"),
        ("fail", None),
        ("pass", None),
        ("pass", None),
        ("fail", None),
        ("fail", "server_error"),
    ]
    run = client.get_run(eval_id, run_id)
    assert counts(run) == (10, 3, 5, 2)
    assert tally_items(items) == (counts(run), per_criterion(run))


def test_a_criterion_by_id_and_an_eval_without_criteria(server: FakeEvalsServer, client: EvalsClient) -> None:
    ev = server.add_eval(testing_criteria=CRITERIA, data_source_config=CONFIG)
    tone_id = ev["testing_criteria"][1]["id"]
    script = fast([{tone_id: "fail"}])
    run_id = server.add_run(ev["id"], script, data_source=inline(rows(1)))["id"]
    [item] = client.list_output_items(ev["id"], run_id)
    assert summary(item) == ("fail", None, {"exact": True, "tone": False})
    # No criteria: a string "fail" still fails the item (with no results to show for it).
    bare = server.add_eval(testing_criteria=[], data_source_config=CONFIG)
    run_id = server.add_run(bare["id"], fast(["pass", "fail"]), data_source=inline(rows(2)))["id"]
    run = client.get_run(bare["id"], run_id)
    assert counts(run) == (2, 1, 1, 0)
    assert run.per_testing_criteria_results == []


def test_the_guide_example_runs_as_written() -> None:
    example = code_block(REPO / "docs" / "testing.md", "### Per-item outcomes")
    exec(compile(example, "docs/testing.md (Per-item outcomes)", "exec"), {"__name__": "guide_example"})


# ---- pairs of runs ---------------------------------------------------------------------------------------
def by_index(items: Iterable[OutputItem]) -> dict[int, OutputItem]:
    """Items keyed by ``datasource_item_id``: how a comparison pairs the items of two runs."""
    paired: dict[int, OutputItem] = {}
    for item in items:
        assert item.datasource_item_id is not None
        paired[item.datasource_item_id] = item
    return paired


def upload(client: EvalsClient, content: list[dict[str, Any]]) -> str:
    data = "".join(json.dumps(row) + "\n" for row in content).encode()
    return client.upload_file(lambda: io.BytesIO(data), filename="rows.jsonl", size=len(data)).id


@pytest.mark.parametrize("source", ["file_content", "uploaded file_id", "unread file_id"])
def test_baseline_and_candidate_pair_by_datasource_item_id(
    server: FakeEvalsServer, client: EvalsClient, eval_id: str, source: str
) -> None:
    content = rows(6, "headline")
    if source == "file_content":
        data_source = inline(content)
    elif source == "uploaded file_id":
        data_source = {"type": "jsonl", "source": {"type": "file_id", "id": upload(client, content)}}
    else:  # a file the fake never received: one synthetic item per outcome
        data_source = {"type": "jsonl", "source": {"type": "file_id", "id": "file-abc123"}}
    baseline: list[str | dict[str, str]] = ["pass", "pass", "fail", "pass", {"tone": "fail"}, "pass"]
    candidate: list[str | dict[str, str]] = ["pass", "fail", "pass", "pass", "pass", "error"]
    runs = []
    for outcomes in (baseline, candidate):
        server.script_next_runs(fast(outcomes))
        runs.append(client.create_run(eval_id, data_source=data_source).id)
    base, cand = (by_index(client.list_output_items(eval_id, r)) for r in runs)
    assert list(base) == list(cand) == list(range(6))
    assert all(base[i].datasource_item == cand[i].datasource_item for i in base)
    if source != "unread file_id":
        assert [base[i].datasource_item for i in range(6)] == [row["item"] for row in content]
    flips = {i: (base[i].status, cand[i].status) for i in base if base[i].status != cand[i].status}
    assert flips == {1: ("pass", "fail"), 2: ("fail", "pass"), 4: ("fail", "pass"), 5: ("pass", "fail")}
    assert (cand[5].sample or {})["error"] is not None
    assert [counts(client.get_run(eval_id, r)) for r in runs] == [(6, 4, 2, 0), (6, 4, 1, 1)]


# ---- while a run progresses ---------------------------------------------------------------------------
class StepClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_items_and_counts_grow_with_the_outcomes_while_in_progress(
    server: FakeEvalsServer, client: EvalsClient, eval_id: str
) -> None:
    clock = StepClock()
    server._state.clock = clock  # the store reads this clock for every status, so the test steps it
    script = RunScript(queued_seconds=1, in_progress_seconds=8, outcomes=MIXED)
    run_id = server.add_run(eval_id, script, data_source=inline(rows(8)))["id"]
    assert counts(client.get_run(eval_id, run_id)) == (0, 0, 0, 0)
    clock.now += 1 + 4  # half way through grading: the first 4 items exist
    run = client.get_run(eval_id, run_id)
    assert run.status == "in_progress"
    assert counts(run) == (4, 1, 2, 1)
    assert run.per_testing_criteria_results is None
    items = list(client.list_output_items(eval_id, run_id))
    assert [summary(i) for i in items] == MIXED_ITEMS[:4]
    assert tally_items(items)[0] == counts(run)
    clock.now += 4
    run = client.get_run(eval_id, run_id)
    assert run.status == "completed"
    assert counts(run) == (8, 2, 3, 3)


def test_a_canceled_run_keeps_the_outcomes_of_the_items_it_graded(
    server: FakeEvalsServer, client: EvalsClient, eval_id: str
) -> None:
    clock = StepClock()
    server._state.clock = clock
    run_id = server.add_run(
        eval_id,
        RunScript(queued_seconds=0, in_progress_seconds=8, outcomes=MIXED),
        data_source=inline(rows(8)),
    )["id"]
    clock.now += 5
    canceled = client.cancel_run(eval_id, run_id)
    assert canceled.status == "canceled"
    assert counts(canceled) == (5, 1, 2, 2)
    assert per_criterion(canceled) == {"exact": (2, 1), "tone": (3, 1)}
    assert tally_items(list(client.list_output_items(eval_id, run_id))) == (
        counts(canceled),
        per_criterion(canceled),
    )


# ---- scripts given from outside the process -----------------------------------------------------------
def test_control_routes_take_outcomes(server: FakeEvalsServer, client: EvalsClient, eval_id: str) -> None:
    answer = requests.post(
        server.url + "/_fake/script", json={"script": {**INSTANT, "outcomes": MIXED}, "count": 1}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["script"]["outcomes"] == MIXED
    scripted = client.create_run(eval_id, data_source=inline(rows(8))).id
    assert [summary(i) for i in client.list_output_items(eval_id, scripted)] == MIXED_ITEMS
    seeded = requests.post(
        server.url + "/_fake/runs",
        json={
            "eval_id": eval_id,
            "script": {**INSTANT, "outcomes": ["fail", {"tone": "error"}]},
            "data_source": inline(rows(2)),
        },
        timeout=10,
    )
    assert seeded.status_code == 200, seeded.text
    assert counts(client.get_run(eval_id, seeded.json()["id"])) == (2, 0, 1, 1)


def test_the_cli_takes_outcomes_in_its_script() -> None:
    script = json.dumps({**INSTANT, "outcomes": ["fail", "pass", "error"]})
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_aoai_evals.testing",
            "--port",
            "0",
            "--seed-eval",
            "e",
            "--script",
            script,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split(" on ")[1].split(" ")[0]
        headers = {"Authorization": "Bearer sk-test"}
        eval_id = requests.get(url + "/v1/evals", headers=headers, timeout=10).json()["data"][0]["id"]
        body = {"data_source": {"type": "jsonl", "source": {"type": "file_id", "id": "file-x"}}}
        run = requests.post(url + f"/v1/evals/{eval_id}/runs", json=body, headers=headers, timeout=10).json()
        assert run["result_counts"] == {"total": 3, "errored": 1, "failed": 1, "passed": 1}
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_cli_refuses_a_bad_outcome_in_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "airflow_provider_aoai_evals.testing", "--script", '{"outcomes": ["passed"]}'],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "RunScript.outcomes[0] is 'passed': use 'pass', 'fail' or 'error'" in done.stderr
    assert "Traceback" not in done.stderr


# ---- refused scripts --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("outcomes", "message"),
    [
        ("pass", "must be a list with one entry per datasource item"),
        (["pass", "passed"], "RunScript.outcomes[1] is 'passed': use 'pass', 'fail' or 'error'"),
        ([{"exact": "ok"}], "RunScript.outcomes[0]['exact'] is 'ok': use 'pass', 'fail' or 'error'"),
        ([True], "RunScript.outcomes[0] is True (bool)"),
        ([{1: "pass"}], "RunScript.outcomes[0] has the key 1"),
    ],
)
def test_a_malformed_list_is_refused_where_the_script_is_written(
    server: FakeEvalsServer, outcomes: Any, message: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        RunScript(outcomes=outcomes)
    if isinstance(outcomes, list) and any(isinstance(o, dict) and 1 in o for o in outcomes):
        return  # JSON has no integer keys
    answer = requests.post(server.url + "/_fake/script", json={"script": {"outcomes": outcomes}}, timeout=10)
    assert answer.status_code == 400
    assert message in answer.json()["error"]["message"]


def test_outcomes_and_scripted_per_criterion_results_are_one_or_the_other() -> None:
    with pytest.raises(ValueError, match="outcomes decide per_testing_criteria_results"):
        RunScript(outcomes=["pass"], per_testing_criteria_results=[])


@pytest.mark.parametrize(
    ("script", "message"),
    [
        (
            RunScript(outcomes=["pass"] * 4),
            "RunScript.outcomes has 4 entries but this run has 3 output items",
        ),
        (
            RunScript(outcomes=["pass", {"tonne": "fail"}]),
            "RunScript.outcomes[1] names criterion 'tonne', which eval {eval_id} does not have; its criteria: "
            "'exact', 'tone'",
        ),
        (
            RunScript(outcomes=["pass", "fail"], result_counts={"total": 3, "passed": 3}),
            "RunScript.result_counts {'passed': 3} disagree with what its outcomes give this run: "
            "{'total': 3, 'errored': 0, 'failed': 2, 'passed': 1}",
        ),
    ],
)
def test_a_script_that_does_not_fit_the_run_is_refused_and_stays_queued(
    server: FakeEvalsServer, client: EvalsClient, eval_id: str, script: RunScript, message: str
) -> None:
    message = message.replace("{eval_id}", eval_id)
    with pytest.raises(ApiError, match=re.escape(message)):
        server.add_run(eval_id, script, data_source=inline(rows(3)))
    server.script_next_runs(script)
    with pytest.raises(EvalsBadRequestError, match=re.escape(message)):
        client.create_run(eval_id, data_source=inline(rows(3)))
    assert server._state.next_scripts[0] is script  # a refused request changed nothing
    assert list(client.list_runs(eval_id)) == []


def test_duplicate_criterion_names_need_the_id(server: FakeEvalsServer) -> None:
    ev = server.add_eval(testing_criteria=[CRITERIA[0], CRITERIA[0]], data_source_config=CONFIG)
    with pytest.raises(ApiError, match=r"which eval .* has 2 times; name it by its id"):
        server.add_run(ev["id"], RunScript(outcomes=[{"exact": "fail"}]), data_source=inline(rows(1)))
    second = ev["testing_criteria"][1]["id"]
    run = server.add_run(ev["id"], fast([{second: "fail"}]), data_source=inline(rows(1)))
    assert [r["failed"] for r in run["per_testing_criteria_results"]] == [0, 1]


def test_scripted_counts_that_agree_are_kept_with_their_extra_keys(
    server: FakeEvalsServer, eval_id: str
) -> None:
    counts_ = {"total": 3, "errored": 1, "failed": 1, "passed": 1, "skipped": 2}
    run = server.add_run(
        eval_id,
        fast(["pass", "fail", "error"], result_counts=counts_),
        data_source=inline(rows(3)),
    )
    assert run["result_counts"] == counts_


def test_without_outcomes_nothing_changes(server: FakeEvalsServer, eval_id: str) -> None:
    script = fast(output_items=4, result_counts={"total": 10, "passed": 7, "failed": 2, "errored": 1})
    run = server.add_run(eval_id, script)
    assert run["result_counts"] == {"total": 10, "passed": 7, "failed": 2, "errored": 1}
    assert RunScript().outcomes is None
    assert RunScript.from_dict({"outcomes": None}) == RunScript()


# ---- size -------------------------------------------------------------------------------------------------
def test_a_100k_item_run_keeps_one_byte_per_outcome_and_builds_no_item(
    server: FakeEvalsServer, client: EvalsClient, eval_id: str
) -> None:
    n = 100_000
    outcomes: list[str | dict[str, str]] = ["pass"] * n
    outcomes[99_998] = {"tone": "fail"}
    outcomes[99_999] = "error"
    script = fast(outcomes)
    first = server.add_run(eval_id, script)["id"]
    second = server.add_run(eval_id, script)["id"]
    state = server._state
    assert state.item_builds == 0
    bound = [state.runs[r].outcomes for r in (first, second)]
    assert bound[0] is not None and bound[1] is not None
    assert isinstance(bound[0].codes, bytes) and len(bound[0].codes) == n
    assert bound[0].codes is bound[1].codes  # compiled once per script, shared by its runs
    run = client.get_run(eval_id, first)
    assert counts(run) == (n, n - 2, 1, 1)
    assert per_criterion(run) == {"exact": (n - 1, 0), "tone": (n - 2, 1)}
    tail = list(client.list_output_items(eval_id, first, status="fail", order="desc", limit=2))
    assert [i.datasource_item_id for i in tail] == [99_999, 99_998]
    assert state.item_builds == 2


def test_more_than_256_distinct_entries_still_fit(server: FakeEvalsServer) -> None:
    names = [f"c{i}" for i in range(9)]
    ev = server.add_eval(
        testing_criteria=[
            {"type": "string_check", "name": n, "input": "a", "reference": "a", "operation": "eq"}
            for n in names
        ],
        data_source_config=CONFIG,
    )
    many = [
        {name: "fail" if code >> bit & 1 else "pass" for bit, name in enumerate(names)} for code in range(300)
    ]
    run = server.add_run(ev["id"], fast(list(many)), data_source=inline(rows(300)))
    assert run["result_counts"] == {"total": 300, "errored": 0, "failed": 299, "passed": 1}
    by_bit = {criterion(r["testing_criteria"]): r["failed"] for r in run["per_testing_criteria_results"]}
    assert by_bit == {name: sum(code >> bit & 1 for code in range(300)) for bit, name in enumerate(names)}
    # Part way through, the two-byte codes are counted over the prefix only.
    halfway = server._state.runs[run["id"]].tally(150)
    assert (halfway.passed, halfway.failed) == (1, 149)
    assert [f for _p, f in halfway.criteria] == [sum(c >> bit & 1 for c in range(150)) for bit in range(9)]

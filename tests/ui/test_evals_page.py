"""The Evals page in the real core API app, with the real auth manager, against FakeEvalsServer."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_aoai_evals.api.stats import estimate_rate
from airflow_provider_aoai_evals.testing import Fault, RunScript

from .conftest import CONN_ID, KEY
from .html_dom import by_class, parse

pytestmark = pytest.mark.compat

GRADERS = [
    {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}",
     "reference": "{{item.label}}", "operation": "eq"},
    {"type": "string_check", "name": "tone", "input": "{{sample.output_text}}",
     "reference": "{{item.label}}", "operation": "eq"},
]  # fmt: skip


def page(eval_id: str) -> str:
    return f"/aoai-evals/connections/{CONN_ID}/evals/{eval_id}"


def api_rates(run: dict[str, Any]) -> dict[str, Any]:
    """The rates as the API reports them: result_counts and per_testing_criteria_results."""
    rc = run["result_counts"]
    executed = rc["passed"] + rc["failed"] + rc["errored"]
    return {
        "pass_rate": rc["passed"] / executed,
        "errored_rate": rc["errored"] / executed,
        "passed": rc["passed"],
        "n": executed,
        "criteria": {
            r["testing_criteria"]: r["passed"] / (r["passed"] + r["failed"])
            for r in run["per_testing_criteria_results"]
        },
    }


def test_chart_has_one_point_per_run_with_the_rates_the_api_reports(server, admin):
    ev = server.add_eval(name="drift", testing_criteria=GRADERS)
    scripts: list[list[Any]] = [
        ["pass"] * 8 + ["fail"] * 2,
        ["pass"] * 5 + ["fail"] * 4 + ["error"],
        [{"exact": "pass", "tone": "fail"}] * 3 + ["pass"] * 6 + ["error"] * 1,
        ["fail"] * 10,
    ]
    ids = []
    for outcomes in scripts:
        script = RunScript(queued_seconds=0, in_progress_seconds=0, outcomes=outcomes)
        ids.append(server.add_run(ev["id"], script, name="nightly")["id"])

    answer = admin.get(page(ev["id"]))
    assert answer.status_code == 200, answer.text
    points = by_class(answer.text, "run-point", "circle")
    assert sorted(p.attrs["data-run-id"] for p in points) == sorted(ids)
    rows = by_class(answer.text, "run", "tr")
    assert sorted(r.attrs["data-run-id"] for r in rows) == sorted(ids)
    criterion_points = by_class(answer.text, "criterion-point", "circle")
    for point in points:
        run = server.get_run(point.attrs["data-run-id"])
        want = api_rates(run)
        assert float(point.attrs["data-pass-rate"]) == pytest.approx(want["pass_rate"])
        assert float(point.attrs["data-errored-rate"] or 0) == pytest.approx(want["errored_rate"])
        band = estimate_rate(want["passed"], want["n"])
        assert float(point.attrs["data-low"]) == pytest.approx(band.low)
        assert float(point.attrs["data-high"]) == pytest.approx(band.high)
        mine = {
            c.attrs["data-criterion"]: float(c.attrs["data-pass-rate"])
            for c in criterion_points
            if c.attrs["data-run-id"] == run["id"]
        }
        assert mine.keys() == {name.rsplit("-", 1)[0] for name in want["criteria"]} or len(mine) == 2
        assert sorted(mine.values()) == pytest.approx(sorted(want["criteria"].values()))
    row_rates = {r.attrs["data-run-id"]: float(r.attrs["data-pass-rate"]) for r in rows}
    assert row_rates == {i: pytest.approx(api_rates(server.get_run(i))["pass_rate"]) for i in ids}
    assert answer.text.count('class="band"') == 1
    assert KEY not in answer.text


def test_a_thousand_runs_take_ten_list_requests_then_none_within_the_ttl(server, admin):
    ev = server.add_eval(name="big")
    script = RunScript(queued_seconds=0, in_progress_seconds=0, output_items=4, fail_every=4)
    for _ in range(1005):  # more than the page shows: it must not ask for an 11th page to find out
        server.add_run(ev["id"], script)
    before = server.count("GET", r"/runs$")

    first = admin.get(page(ev["id"]))
    assert first.status_code == 200
    assert len(by_class(first.text, "run-point", "circle")) == 1000
    assert by_class(first.text, "truncated")
    assert server.count("GET", r"/runs$") - before <= 10
    sent = server.count()

    second = admin.get(page(ev["id"]))
    assert second.status_code == 200
    assert server.count() == sent  # nothing at all: the eval and its runs come from the cache
    assert len(by_class(second.text, "run-point", "circle")) == 1000


def test_ttl_zero_turns_the_cache_off(server, admin, monkeypatch):
    monkeypatch.setenv("AIRFLOW__AOAI_EVALS__UI_CACHE_TTL_SECONDS", "0")
    ev = server.add_eval(name="uncached")
    server.add_run(ev["id"], RunScript(queued_seconds=0, in_progress_seconds=0))
    admin.get(page(ev["id"]))
    sent = server.count("GET", r"/runs$")
    admin.get(page(ev["id"]))
    assert server.count("GET", r"/runs$") == 2 * sent


def test_a_run_name_with_markup_renders_as_text(server, admin):
    evil = "<script>alert(1)</script>"
    ev = server.add_eval(name=f'eval {evil}"')
    server.add_run(
        ev["id"],
        RunScript(queued_seconds=0, in_progress_seconds=0, model=f"m{evil}"),
        name=evil,
        metadata={"note": evil},
    )
    answer = admin.get(page(ev["id"]))
    assert answer.status_code == 200
    assert "<script" not in answer.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in answer.text
    (cell,) = by_class(answer.text, "run-name", "td")
    assert cell.text == evil  # the text a browser shows
    evals = admin.get(f"/aoai-evals/connections/{CONN_ID}")
    assert "<script" not in evals.text and "&lt;script&gt;" in evals.text
    assert "script-src" not in answer.headers["content-security-policy"]  # no script may run at all
    assert "default-src 'none'" in answer.headers["content-security-policy"]


def test_runs_link_to_their_report_and_the_task_instance_that_created_them(server, admin):
    ev = server.add_eval(name="links")
    key = "nightly/run_eval/manual__2025-06-01T00:00:00+00:00/-1|try=2"
    run = server.add_run(
        ev["id"],
        RunScript(queued_seconds=0, in_progress_seconds=0),
        metadata={"airflow_idempotency_key": key},
    )
    answer = admin.get(page(ev["id"]))
    assert len(by_class(answer.text, "run", "tr")) == 1
    links = {
        a.attrs["class"]: a.attrs["href"] for a in parse(answer.text) if a.tag == "a" and "class" in a.attrs
    }
    assert links["report"] == run["report_url"]
    assert (
        links["task-instance"]
        == "/dags/nightly/runs/manual__2025-06-01T00%3A00%3A00%2B00%3A00/tasks/run_eval"
    )


def test_the_connection_picker_lists_readable_aoai_evals_connections(server, admin, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_SOME_HTTP", "http://example.invalid")
    answer = admin.get("/aoai-evals/")
    assert answer.status_code == 200
    listed = {a.attrs["data-connection-id"] for a in parse(answer.text) if "data-connection-id" in a.attrs}
    assert CONN_ID in listed and "some_http" not in listed
    picked = admin.get("/aoai-evals/", params={"connection_id": CONN_ID, "eval_id": "eval_x"})
    assert picked.status_code == 303
    assert picked.headers["location"] == f"/aoai-evals/connections/{CONN_ID}/evals/eval_x"


def test_the_evals_list_links_each_eval(server, admin):
    ids = [server.add_eval(name=f"e{i}")["id"] for i in range(3)]
    answer = admin.get(f"/aoai-evals/connections/{CONN_ID}")
    assert answer.status_code == 200
    assert {
        r.attrs["data-eval-id"] for r in parse(answer.text) if r.tag == "tr" and "data-eval-id" in r.attrs
    } == set(ids)


def test_an_api_failure_renders_as_a_message(server, admin):
    ev = server.add_eval(name="broken")
    server.inject(Fault(kind="status", status=403, path_regex=r"/runs$", count=None,
                        message="Project does not have access to evals", code="forbidden"))  # fmt: skip
    answer = admin.get(page(ev["id"]))
    assert answer.status_code == 502
    assert len(by_class(answer.text, "error", "section")) == 1
    assert by_class(answer.text, "error-status")[0].text == "403"
    assert "Project does not have access to evals" in by_class(answer.text, "error-message")[0].text
    assert by_class(answer.text, "error-request-id")[0].text.strip()
    assert "Traceback" not in answer.text and KEY not in answer.text


def test_an_unknown_connection_renders_as_a_message(server, admin):
    answer = admin.get("/aoai-evals/connections/no_such_conn/evals/eval_x")
    assert answer.status_code == 404
    assert by_class(answer.text, "error", "section")
    assert "Traceback" not in answer.text


def test_no_data_source_contents_reach_the_page(server, admin):
    ev = server.add_eval(name="inline")
    rows = [{"item": {"input": f"SECRET-ROW-{i}", "label": "x"}} for i in range(5)]
    source = {"type": "jsonl", "source": {"type": "file_content", "content": rows}}
    server.add_run(ev["id"], RunScript(queued_seconds=0, in_progress_seconds=0), data_source=source)
    answer = admin.get(page(ev["id"]))
    assert answer.status_code == 200
    assert len(by_class(answer.text, "run", "tr")) == 1
    assert "SECRET-ROW" not in answer.text


def test_an_id_that_is_not_an_id_is_refused_before_any_request(server, admin):
    answer = admin.get(page("eval..x"))
    assert answer.status_code == 400
    assert by_class(answer.text, "error", "section")
    assert server.count() == 0

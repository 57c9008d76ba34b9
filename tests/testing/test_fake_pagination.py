"""Cursor pagination of output items and runs, including a lazy 100,000-item run."""

from __future__ import annotations

import gc
import tracemalloc

import pytest

from airflow_provider_aoai_evals.testing import FakeEvalsServer, RunScript
from tests.testing.fake_helpers import FAST, Api


def page_all(api: Api, path: str, **params: object) -> tuple[list[dict], int]:
    seen: list[dict] = []
    pages = 0
    after = None
    while True:
        query = dict(params)
        if after:
            query["after"] = after
        page = api.ok("GET", path, params=query)
        pages += 1
        seen.extend(page["data"])
        if page["data"]:
            assert page["first_id"] == page["data"][0]["id"]
            assert page["last_id"] == page["data"][-1]["id"]
        if not page["has_more"] or not page["data"]:
            return seen, pages
        after = page["last_id"]


@pytest.fixture
def run250(server: FakeEvalsServer, api: Api) -> str:
    ev = api.create_eval()
    run = server.add_run(ev["id"], RunScript(queued_seconds=0, in_progress_seconds=3, output_items=250))
    server.finish_run(run["id"])  # items keep created_at spread over the 3 s, but all exist now
    return f"/evals/{ev['id']}/runs/{run['id']}/output_items"


@pytest.mark.parametrize(("limit", "pages"), [(100, 3), (None, 13)])
def test_every_item_once_both_orders(api: Api, run250: str, limit: int | None, pages: int) -> None:
    params = {} if limit is None else {"limit": limit}
    asc, asc_pages = page_all(api, run250, **params)
    desc, desc_pages = page_all(api, run250, order="desc", **params)
    assert asc_pages == desc_pages == pages
    ids = [i["id"] for i in asc]
    assert len(ids) == len(set(ids)) == 250
    assert [i["id"] for i in desc] == ids[::-1]
    keys = [(i["created_at"], i["id"]) for i in asc]
    assert keys == sorted(keys)
    assert all(isinstance(i["created_at"], int) for i in asc)
    assert [i["datasource_item_id"] for i in asc] == list(range(250))


def test_status_filter(api: Api, run250: str) -> None:
    everything, _ = page_all(api, run250, limit=100)
    for status in ("pass", "fail"):
        for order in ("asc", "desc"):
            got, _ = page_all(api, run250, limit=7, status=status, order=order)
            expected = [i["id"] for i in everything if i["status"] == status]
            assert [i["id"] for i in got] == (expected if order == "asc" else expected[::-1])
    assert len([i for i in everything if i["status"] == "fail"]) == 83  # every 3rd of 250


def test_bad_list_params(server: FakeEvalsServer, api: Api, run250: str) -> None:
    for params, param in (
        ({"limit": 101}, "limit"),
        ({"limit": 0}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"status": "failed"}, "status"),
        ({"status": "passed"}, "status"),
        ({"order": "up"}, "order"),
        ({"after": "outputitem_bogus"}, "after"),
    ):
        response = api.call("GET", run250, params=params)
        assert response.status_code == 400, params
        assert response.json()["error"]["param"] == param
    assert len(api.ok("GET", run250, params={"limit": 100})["data"]) == 100


def test_items_appear_while_in_progress(server: FakeEvalsServer, api: Api) -> None:
    ev = api.create_eval()
    run = server.add_run(ev["id"], RunScript(queued_seconds=60, output_items=50))
    path = f"/evals/{ev['id']}/runs/{run['id']}/output_items"
    assert api.ok("GET", path)["data"] == []
    server.finish_run(run["id"])
    assert len(api.ok("GET", path, params={"limit": 100})["data"]) == 50


def test_empty_list_envelope(server: FakeEvalsServer, api: Api) -> None:
    ev = api.create_eval()
    page = api.ok("GET", f"/evals/{ev['id']}/runs")
    # Known deviation: the fake sends null first_id/last_id on an empty page.
    assert page == {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}


def test_runs_list_paging_order_and_status_filter(server: FakeEvalsServer, api: Api) -> None:
    ev = api.create_eval()
    ids = []
    for i in range(45):
        script = FAST if i % 3 else RunScript(queued_seconds=60)
        ids.append(server.add_run(ev["id"], script, name=f"r{i}")["id"])
    path = f"/evals/{ev['id']}/runs"
    asc, pages = page_all(api, path)
    assert [r["id"] for r in asc] == ids
    assert pages == 3
    desc, _ = page_all(api, path, order="desc", limit=10)
    assert [r["id"] for r in desc] == ids[::-1]
    queued, _ = page_all(api, path, status="queued", limit=4)
    assert [r["id"] for r in queued] == ids[::3]
    completed, _ = page_all(api, path, status="completed", limit=100)
    assert len(completed) == 30
    assert api.call("GET", path, params={"status": "done"}).status_code == 400
    assert api.call("GET", path, params={"limit": 101}).status_code == 400


def test_lazy_100k_run_pages_in_linear_work_and_bounded_memory(openai_server: FakeEvalsServer) -> None:
    api = Api(openai_server)
    ev = api.create_eval()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        run = openai_server.add_run(
            ev["id"],
            RunScript(queued_seconds=0, in_progress_seconds=0, output_items=100_000, item_bytes=2048),
        )
        created_cost = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert created_cost < 512 * 1024  # a 100k-item run is O(1): nothing per item is stored
    assert run["result_counts"] == {"total": 100_000, "errored": 0, "failed": 33_333, "passed": 66_667}

    state = openai_server._state  # instrumentation counters: items built and indices scanned
    path = f"/evals/{ev['id']}/runs/{run['id']}/output_items"
    # Jump deep into the run with a cursor: the server builds only the page, never the prefix.
    deep = api.ok("GET", path, params={"limit": 100, "after": run_item_id(run["id"], 99_849)})
    assert [i["datasource_item_id"] for i in deep["data"]] == list(range(99_850, 99_950))
    assert state.item_builds == 100
    assert state.scan_steps <= 101
    size = len(api.call("GET", path, params={"limit": 1}).content)
    assert 1900 < size < 2300  # item_bytes pads to ~2 KB

    # Page the failures from the end to the start: total work stays linear in the run size.
    state.item_builds = state.scan_steps = 0
    fails, pages = page_all(api, path, limit=100, status="fail", order="desc")
    assert len(fails) == 33_333
    assert pages == 334
    assert len({i["id"] for i in fails}) == 33_333
    assert state.item_builds == 33_333
    assert state.scan_steps <= 100_000 + 3 * pages


def run_item_id(run_id: str, index: int) -> str:
    return f"outputitem_{run_id[-24:]}{index:08x}"

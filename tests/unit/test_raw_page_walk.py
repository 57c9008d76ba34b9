"""The raw page walk asks for each page before the one before it is scanned, on the cursor its envelope
claims, and keeps every correctness rule of a walk by scanned cursors: over loopback to a scripted server
(``tests.integration.hostile``), through the export's read-ahead thread where the export uses one.

Pages here are padded past ``raw_items.DEFER_MIN_BYTES``: smaller bodies are scanned at once, and never
guessed at.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from airflow_provider_aoai_evals.api.auth import ApiKeyAuth
from airflow_provider_aoai_evals.api.client import EvalsClient
from airflow_provider_aoai_evals.api.errors import EvalsPermanentError, EvalsServerError
from airflow_provider_aoai_evals.api.raw_items import DEFER_MIN_BYTES, RawItemPage
from airflow_provider_aoai_evals.api.retry import RetryPolicy
from airflow_provider_aoai_evals.api.settings import ClientSettings
from airflow_provider_aoai_evals.export import encoder_for, stream_pages
from airflow_provider_aoai_evals.export.read_ahead import read_ahead
from tests.integration.hostile import HostileServer, Reply, Request, hostile, respond

FAST = RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.05)
PER_PAGE = 10
WAIT = 10.0  # seconds: only ever reached when the behaviour under test is missing


def item(n: int) -> dict[str, Any]:
    return {"object": "eval.run.output_item", "id": f"outputitem_{n}", "status": "pass" if n % 2 else "fail",
            "datasource_item_id": n, "sample": {"output_text": "x" * 2000}}  # fmt: skip


def ids(first: int, last: int) -> list[str]:
    return [f"outputitem_{n}" for n in range(first, last + 1)]


def body(first: int, last: int, *, has_more: bool, last_id: str | None = "auto", **extra: Any) -> bytes:
    """A page of items ``first``..``last`` (none when ``last < first``), as the API lays its envelope out."""
    data = [item(n) for n in range(first, last + 1)]
    claimed = (data[-1]["id"] if data else None) if last_id == "auto" else last_id
    page = {"object": "list", **extra, "data": data, "first_id": data[0]["id"] if data else None,
            "last_id": claimed, "has_more": has_more}  # fmt: skip
    raw = json.dumps(page).encode()
    assert len(raw) >= DEFER_MIN_BYTES
    return raw


def settings(server: HostileServer, **kw: Any) -> ClientSettings:
    kw.setdefault("retry", FAST)
    return ClientSettings.build(
        flavor="azure",
        base_url=server.url,
        auth=ApiKeyAuth("sk-walk", header="api-key"),
        read_timeout=5.0,
        **kw,
    )


def afters(server: HostileServer) -> list[str | None]:
    """The ``after`` of every request the server received, in order."""
    return [r.query.get("after") for r in server.requests]


def by_cursor(
    pages: dict[str | None, bytes], hooks: dict[str | None, Callable[[], None]] | None = None
) -> Any:
    """A server answering each ``after`` with its page; a hook runs (in the server) before answering."""

    def handler(request: Request) -> Reply:
        after = request.query.get("after")
        if hooks and after in hooks:
            hooks[after]()
        return respond(200, pages[after])

    return handler


def exported(
    pages: Iterable[RawItemPage], before_scan: Callable[[int], None] = lambda i: None
) -> list[list[str]]:
    """The ids of each page as the export's consumer reads them, through its read-ahead thread;
    ``before_scan(i)`` runs before page ``i`` (from 0) is read."""
    seen: list[list[str]] = []
    with read_ahead(pages) as ahead:
        for i, page in enumerate(ahead):
            before_scan(i)
            seen.append([raw.id for raw in page.data])
    return seen


def waits_for(event: threading.Event, only: int) -> Callable[[int], None]:
    def before_scan(i: int) -> None:
        if i == only:
            assert event.wait(WAIT), "the next page was never asked for while this one was unscanned"

    return before_scan


def test_the_next_page_is_asked_for_before_this_one_is_scanned() -> None:
    handed: list[RawItemPage] = []
    stored, asked = threading.Event(), threading.Event()
    scanned_when_asked: list[bool] = []

    def on_second_request() -> None:
        assert stored.wait(WAIT)
        scanned_when_asked.append(handed[0].scanned)
        asked.set()

    pages = {None: body(1, 10, has_more=True), "outputitem_10": body(11, 20, has_more=False)}
    with (
        hostile(by_cursor(pages, {"outputitem_10": on_second_request})) as server,
        EvalsClient(settings(server)) as client,
    ):
        seen: list[str] = []
        with read_ahead(client.list_raw_output_item_pages("eval_1", "evalrun_1")) as ahead:
            for i, page in enumerate(ahead):
                if i == 0:
                    handed.append(page)
                    stored.set()
                    assert asked.wait(WAIT)
                seen.extend(raw.id for raw in page.data)
        assert afters(server) == [None, "outputitem_10"]
    assert scanned_when_asked == [False]  # the request for page 2 reached the server before page 1's scan
    assert seen == ids(1, 20)


def test_a_stale_last_id_is_guessed_then_corrected_and_no_item_is_seen_twice() -> None:
    guessed = threading.Event()
    pages = {
        None: body(1, 10, has_more=True, last_id="outputitem_5"),  # stale: the page goes on to 10
        "outputitem_5": body(6, 15, has_more=True),  # the answer to the guess: items 6-10 again
        "outputitem_10": body(11, 20, has_more=False),
    }
    with (
        hostile(by_cursor(pages, {"outputitem_5": guessed.set})) as server,
        EvalsClient(settings(server)) as client,
    ):
        seen = exported(client.list_raw_output_item_pages("eval_1", "evalrun_1"), waits_for(guessed, 0))
        assert afters(server) == [None, "outputitem_5", "outputitem_10"]  # the guess, then the correction
    assert seen == [ids(1, 10), ids(11, 20)]


def test_a_guess_the_server_refuses_is_dropped_when_it_was_wrong() -> None:
    guessed = threading.Event()

    def handler(request: Request) -> Reply:
        after = request.query.get("after")
        if after == "outputitem_3":
            guessed.set()
            return respond(400, {"error": {"message": "no such item", "param": "after"}})
        return respond(200, {None: body(1, 10, has_more=True, last_id="outputitem_3"),
                             "outputitem_10": body(11, 12, has_more=False, padding="p" * DEFER_MIN_BYTES)}[after])  # fmt: skip

    with hostile(handler) as server, EvalsClient(settings(server)) as client:
        seen = exported(client.list_raw_output_item_pages("eval_1", "evalrun_1"), waits_for(guessed, 0))
        assert afters(server) == [None, "outputitem_3", "outputitem_10"]
    assert seen == [ids(1, 10), ids(11, 12)]


def test_a_null_last_id_is_not_guessed_at_and_does_not_end_the_export() -> None:
    pages = {
        None: body(1, 10, has_more=True, last_id=None),
        "outputitem_10": body(11, 20, has_more=True, last_id=None),
        "outputitem_20": body(21, 30, has_more=False, last_id=None),
    }
    with hostile(by_cursor(pages)) as server, EvalsClient(settings(server)) as client:
        seen = exported(client.list_raw_output_item_pages("eval_1", "evalrun_1"))
        assert afters(server) == [None, "outputitem_10", "outputitem_20"]
    assert [i for page in seen for i in page] == ids(1, 30)


def test_an_empty_page_claiming_more_ends_the_walk_after_the_guess_it_made() -> None:
    guessed = threading.Event()
    counter = iter(range(10_000))

    def handler(request: Request) -> Reply:
        if request.query.get("after") is not None:
            guessed.set()
        claimed = f"outputitem_{next(counter)}"
        return respond(200, body(1, 0, has_more=True, last_id=claimed, padding="p" * DEFER_MIN_BYTES))

    with hostile(handler) as server, EvalsClient(settings(server)) as client:
        seen = exported(client.list_raw_output_item_pages("eval_1", "evalrun_1"), waits_for(guessed, 0))
        assert afters(server) == [None, "outputitem_0"]  # the guess, dropped: nothing after it
    assert seen == [[]]


def test_a_page_the_consumer_has_scanned_needs_no_guess() -> None:
    pages = {
        None: body(1, 10, has_more=True, last_id="outputitem_5"),
        "outputitem_10": body(11, 20, has_more=False, last_id="outputitem_12"),
    }
    with hostile(by_cursor(pages)) as server, EvalsClient(settings(server)) as client:
        seen = [
            [raw.id for raw in page.data] for page in client.list_raw_output_item_pages("eval_1", "evalrun_1")
        ]
        assert afters(server) == [None, "outputitem_10"]
    assert seen == [ids(1, 10), ids(11, 20)]


def test_a_page_sent_again_with_a_stale_last_id_is_not_read_twice(caplog: pytest.LogCaptureFixture) -> None:
    same = body(1, 10, has_more=True, last_id="outputitem_3")  # the server ignores 'after', and lies
    with hostile(lambda r: respond(200, same)) as server, EvalsClient(settings(server)) as client:
        pages = client.list_raw_output_item_pages("eval_1", "evalrun_1")
        with caplog.at_level(logging.WARNING):
            first = next(pages)  # handed on unscanned, and left so: the walk guesses, then scans it
            rest = list(pages)
        seen = [raw.id for page in [first, *rest] for raw in page.data]
        assert len(server.requests) <= 4
    assert seen == ids(1, 10)
    assert "sent again a page" in caplog.text


def damaged(raw: bytes) -> bytes:
    """The body with a syntax error in its first item and its ending untouched."""
    broken = raw.replace(b'"status": ', b'"status": 1 ', 1)
    assert broken != raw
    return broken


def _flaky(pages: dict[str | None, bytes], broken: str | None, spoil: Callable[[bytes], bytes]) -> Any:
    """Each page as ``by_cursor``, except that the first answer for ``broken`` is ``spoil``-ed."""
    spoiled: list[bool] = []

    def handler(request: Request) -> Reply:
        after = request.query.get("after")
        if after == broken and not spoiled:
            spoiled.append(True)
            return respond(200, spoil(pages[after]))
        return respond(200, pages[after])

    return handler


PAGES = {
    None: body(1, 10, has_more=True),
    "outputitem_10": body(11, 20, has_more=True),
    "outputitem_20": body(21, 30, has_more=False),
}


@pytest.mark.parametrize("broken", [None, "outputitem_10", "outputitem_20"])
def test_a_body_damaged_in_the_middle_is_fetched_again_and_the_export_is_complete(
    broken: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    out = io.BytesIO()
    with hostile(_flaky(PAGES, broken, damaged)) as server, EvalsClient(settings(server)) as client:
        with (
            caplog.at_level(logging.WARNING),
            read_ahead(client.list_raw_output_item_pages("e", "r")) as ahead,
        ):
            stats = stream_pages(ahead, encoder_for("jsonl"), write=out.write)
        assert afters(server).count(broken) == 2  # the damaged answer and the one that replaced it
    assert stats.count == 30 and stats.duplicates == 0
    assert [json.loads(line)["id"] for line in out.getvalue().splitlines()] == ids(1, 30)
    assert "attempt 1 of 3" in caplog.text


@pytest.mark.parametrize("scanned_by", ["consumer", "walk"])
def test_whichever_thread_finds_the_damage_gets_the_page_fetched_again(scanned_by: str) -> None:
    with hostile(_flaky(PAGES, None, damaged)) as server, EvalsClient(settings(server)) as client:
        pages = client.list_raw_output_item_pages("eval_1", "evalrun_1")
        first = next(pages)
        if scanned_by == "consumer":
            assert [raw.id for raw in first.data] == ids(1, 10)
        rest = [raw.id for page in pages for raw in page.data]
        assert [raw.id for raw in first.data] == ids(1, 10) and rest == ids(11, 30)
        assert afters(server).count(None) == 2 and afters(server).count("outputitem_10") == 1


def test_an_item_without_an_id_behind_a_sound_ending_fails_at_once() -> None:
    def spoil(raw: bytes) -> bytes:
        return raw.replace(b'"id": "outputitem_3", ', b"", 1)

    with hostile(_flaky(PAGES, None, spoil)) as server, EvalsClient(settings(server)) as client:
        pages = client.list_raw_output_item_pages("eval_1", "evalrun_1")
        first = next(pages)
        with pytest.raises(EvalsPermanentError, match="unexpected shape"):
            _ = first.data
        with pytest.raises(EvalsPermanentError):
            _ = first.data  # the error is kept, not a second scan
        assert afters(server) == [None]


def test_a_guess_that_fails_after_the_consumer_stopped_does_not_hang() -> None:
    release, guessed = threading.Event(), threading.Event()

    def handler(request: Request) -> Reply:
        if request.query.get("after") is None:
            return respond(200, PAGES[None])
        guessed.set()
        release.wait(WAIT)
        return respond(503, {"error": {"message": "busy"}})

    threads: list[threading.Thread] = []

    def export(pages: Iterable[RawItemPage]) -> None:
        with read_ahead(pages, join_timeout=0.1) as ahead:
            next(ahead)
            assert guessed.wait(WAIT)
            threads.extend(t for t in threading.enumerate() if t.name == "aoai-evals-read-ahead")
            raise ValueError("write failed")

    with hostile(handler) as server, EvalsClient(settings(server)) as client:
        try:
            with pytest.raises(ValueError, match="write failed"):
                export(client.list_raw_output_item_pages("e", "r"))
        finally:
            release.set()
        for thread in threads:
            thread.join(WAIT)
        assert threads and not any(thread.is_alive() for thread in threads)
        # The guess was right, so its failure counted as the first of the retry policy's three attempts.
        assert afters(server) == [None, *["outputitem_10"] * 3]


def test_a_failed_guess_that_was_right_is_retried_as_its_first_attempt() -> None:
    answers: Iterator[Reply] = iter([respond(200, PAGES[None]), respond(503, {"error": {"message": "busy"}}),
                                     respond(200, PAGES["outputitem_10"]), respond(200, PAGES["outputitem_20"])])  # fmt: skip
    with hostile(lambda r: next(answers)) as server, EvalsClient(settings(server)) as client:
        pages = client.list_raw_output_item_pages("eval_1", "evalrun_1")
        first = next(pages)
        rest = [raw.id for page in pages for raw in page.data]
        assert [raw.id for raw in first.data] + rest == ids(1, 30)
        assert afters(server) == [None, "outputitem_10", "outputitem_10", "outputitem_20"]


def test_a_failing_page_fails_the_walk_once_its_retries_are_spent() -> None:
    def handler(request: Request) -> Reply:
        if request.query.get("after") is None:
            return respond(200, PAGES[None])
        return respond(503, {"error": {"message": "busy"}})

    with hostile(handler) as server, EvalsClient(settings(server)) as client:
        pages = client.list_raw_output_item_pages("eval_1", "evalrun_1")
        next(pages)
        with pytest.raises(EvalsServerError):
            next(pages)
        assert afters(server) == [None, *["outputitem_10"] * 3]

"""Output item pages scanned into raw items: the same items, ids and cursors as the typed ``Page`` parse,
each item's bytes exactly as sent (one line), and malformed bodies mapped to the client's error classes."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from airflow_provider_aoai_evals.api.auth import ApiKeyAuth
from airflow_provider_aoai_evals.api.errors import EvalsPermanentError, EvalsServerError
from airflow_provider_aoai_evals.api.models import OutputItem, Page
from airflow_provider_aoai_evals.api.operations import Operations
from airflow_provider_aoai_evals.api.raw_items import (
    DEFER_MIN_BYTES,
    RawItemPage,
    UnexpectedShapeError,
    parse_raw_item_page,
    read_raw_item_page,
)
from airflow_provider_aoai_evals.api.settings import ClientSettings
from airflow_provider_aoai_evals.api.wire import read_answer as _result
from tests.unit.test_errors_and_models import load_examples


def item(n: int, **extra: Any) -> dict[str, Any]:
    return {"object": "eval.run.output_item", "id": f"outputitem_{n}", "status": "pass" if n % 2 else "fail",
            "datasource_item_id": n, "results": [{"name": "exact", "passed": n % 2 == 1, "score": 1.0}], **extra}  # fmt: skip


def envelope(items: list[dict[str, Any]], *, has_more: bool = True, indent: int | None = None) -> bytes:
    body = {"object": "list", "data": items, "first_id": items[0]["id"] if items else None,
            "last_id": items[-1]["id"] if items else None, "has_more": has_more}  # fmt: skip
    return json.dumps(body, indent=indent, ensure_ascii=False).encode()


def test_matches_the_typed_page_on_the_spec_example() -> None:
    body = json.dumps(load_examples()["getEvalRunOutputItems"]["response"]).encode()
    typed = Page[OutputItem].model_validate_json(body)
    raw = parse_raw_item_page(body)
    assert [i.id for i in raw.data] == [i.id for i in typed.data]
    assert [i.status for i in raw.data] == [i.status for i in typed.data]
    assert (raw.first_id, raw.last_id, raw.has_more) == (typed.first_id, typed.last_id, typed.has_more)
    assert raw.next_cursor() == typed.next_cursor()
    assert [i.model() for i in raw.data] == typed.data


def test_items_keep_their_exact_bytes_including_non_ascii() -> None:
    items = [item(1, sample={"output": [{"content": "Grüße, 東京 \u2028 ✓", "note": 'a "quoted" }] brace'}]}),
             item(2, id="outputitem_é")]  # fmt: skip
    body = envelope(items)
    page = parse_raw_item_page(body)
    assert [i.id for i in page.data] == ["outputitem_1", "outputitem_é"]
    assert page.next_cursor() == "outputitem_é"
    for parsed, original in zip(page.data, items, strict=True):
        assert parsed.raw in body  # a slice of what was sent, not a re-encoding
        assert json.loads(parsed.raw) == original == parsed.as_dict()
    assert page.data[0].model().sample == items[0]["sample"]


def test_pretty_printed_items_become_one_line_each() -> None:
    items = [item(1, sample={"text": "line one\nline two"}), item(2)]
    page = parse_raw_item_page(envelope(items, indent=2))
    for parsed, original in zip(page.data, items, strict=True):
        assert b"\n" not in parsed.raw and b"\r" not in parsed.raw
        assert json.loads(parsed.raw) == original


@pytest.mark.parametrize(
    ("body", "has_more", "count"),
    [(b'{"object": "list", "data": [], "has_more": false}', False, 0), (b' { "data" : [ ] } ', False, 0),
     (b'{"has_more": true, "data": [{"id": "outputitem_1"}]}', True, 1)],
)  # fmt: skip
def test_empty_and_reordered_envelopes(body: bytes, has_more: bool, count: int) -> None:
    page = parse_raw_item_page(body)
    assert (page.has_more, len(page.data)) == (has_more, count)


@pytest.mark.parametrize(
    "body",
    [b'{"data": [{"id": "outputitem_1"}, {"id": "outputi', b'{"data": [{"id": "outputitem_1"}', b'{"data": [',
     b"<html>Bad gateway</html>", b'{"data": []} trailing', b'{"data": [{"id": "a"} {"id": "b"}]}', b""],
)  # fmt: skip
def test_cut_off_or_non_json_bodies_are_syntax_errors(body: bytes) -> None:
    with pytest.raises(json.JSONDecodeError):
        parse_raw_item_page(body)


@pytest.mark.parametrize(
    "body",
    [
        b'{"data": [{"status": "pass"}]}',
        b'{"data": ["outputitem_1"]}',
        b"[]",
        b'{"data": [{"id": ""}]}',
        b"{}",
        b'{"has_more": true, "last_id": "outputitem_9"}',
    ],
)
def test_json_that_is_not_a_page_is_a_shape_error(body: bytes) -> None:
    with pytest.raises(UnexpectedShapeError):
        parse_raw_item_page(body)


def test_client_maps_raw_page_failures_like_typed_ones() -> None:
    ops = Operations(ClientSettings.build(flavor="openai", base_url=None, auth=ApiKeyAuth("k")))
    call = ops.list_raw_output_items("eval_1", "evalrun_1", None, 100, None)
    headers = {"x-request-id": "req_7"}
    assert len(_result(call, 200, headers, envelope([item(1)]), {}).data) == 1
    with pytest.raises(EvalsServerError, match="not valid JSON") as info:
        _result(call, 200, headers, envelope([item(1), item(2)])[:-40], {})
    assert info.value.transient and info.value.request_id == "req_7"
    with pytest.raises(EvalsPermanentError, match="unexpected shape"):
        _result(call, 200, headers, b'{"data": [{"status": "pass"}]}', {})


def test_the_cursor_is_the_last_item_scanned_not_the_envelopes_last_id() -> None:
    items = [item(1), item(2, note='"last_id": "fake", "has_more": false}')]
    page = parse_raw_item_page(envelope(items))
    assert page.next_cursor() == "outputitem_2" and page.has_more
    null_last_id = envelope(items).replace(b'"last_id": "outputitem_2"', b'"last_id": null')
    assert parse_raw_item_page(null_last_id).next_cursor() == "outputitem_2"
    stale = envelope([]).replace(b'"last_id": null', b'"last_id": "outputitem_7"')
    assert parse_raw_item_page(stale).next_cursor() is None  # an empty page ends the walk
    assert parse_raw_item_page(envelope(items, has_more=False)).next_cursor() is None


def test_a_body_damaged_in_the_middle_is_a_syntax_error_when_read() -> None:
    body = envelope([item(1), item(2)])
    damaged = body.replace(b'"datasource_item_id": 2', b'"datasource_item_id": 2 2')
    with pytest.raises(json.JSONDecodeError):
        parse_raw_item_page(damaged)


def big_envelope(count: int = 10, **kw: Any) -> bytes:
    """A page large enough to be read unscanned (``raw_items.DEFER_MIN_BYTES``)."""
    body = envelope([item(n, note="x" * 2000) for n in range(1, count + 1)], **kw)
    assert len(body) >= DEFER_MIN_BYTES
    return body


@pytest.mark.parametrize("indent", [None, 2])
def test_a_documented_ending_gives_a_guess_at_the_cursor_before_the_scan(indent: int | None) -> None:
    page = read_raw_item_page(big_envelope(indent=indent))
    scanned_when_read = page.scanned
    assert not scanned_when_read and page.claimed_cursor() == "outputitem_10"
    assert page.next_cursor() == "outputitem_10" and page.scanned
    assert [i.id for i in page.data] == [f"outputitem_{n}" for n in range(1, 11)]
    stale = read_raw_item_page(
        big_envelope().replace(b'"last_id": "outputitem_10"', b'"last_id": "outputitem_4"')
    )
    assert stale.claimed_cursor() == "outputitem_4" and stale.next_cursor() == "outputitem_10"
    null = read_raw_item_page(big_envelope().replace(b'"last_id": "outputitem_10"', b'"last_id": null'))
    assert null.claimed_cursor() is None and null.next_cursor() == "outputitem_10"
    last = read_raw_item_page(big_envelope(has_more=False))
    assert last.claimed_cursor() is None and last.next_cursor() is None


@pytest.mark.parametrize(
    "body",
    [
        envelope([item(1)]),  # small: its scan costs less than a wasted request
        big_envelope().replace(b'"has_more": true}', b'"has_more": true, "x": 1}'),  # another ending
        big_envelope().replace(b'"last_id": "outputitem_10"', b'"last_id": "a\\"b"'),  # an escape in the id
    ],
)
def test_other_bodies_are_scanned_at_once(body: bytes) -> None:
    assert read_raw_item_page(body).scanned


def test_a_cut_off_body_fails_when_read_as_any_answer_does() -> None:
    with pytest.raises(json.JSONDecodeError):
        read_raw_item_page(big_envelope()[:-30])


def test_concurrent_readers_share_one_scan_and_its_error() -> None:
    scans: list[int] = []
    gate = threading.Barrier(4)

    def slow_scan(body: bytes) -> RawItemPage:
        scans.append(1)
        time.sleep(0.05)  # holds the lock while the other readers arrive
        return parse_raw_item_page(body)

    page = read_raw_item_page(big_envelope(), scan=slow_scan)
    seen: list[list[str]] = []

    def reader() -> None:
        gate.wait()
        seen.append([i.id for i in page.data])

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(scans) == 1 and len(seen) == 4 and all(ids == seen[0] for ids in seen)

    damaged = big_envelope().replace(b'"datasource_item_id": 2,', b'"datasource_item_id": 2 2,')

    def counted_scan(body: bytes) -> RawItemPage:
        scans.append(1)
        return parse_raw_item_page(body)

    broken = read_raw_item_page(damaged, scan=counted_scan)
    assert not broken.scanned
    for _ in range(2):
        with pytest.raises(json.JSONDecodeError):
            _ = broken.data
    assert len(scans) == 2 and broken.scanned

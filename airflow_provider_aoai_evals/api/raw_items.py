"""Pages of output items kept as the bytes the API sent, for exports that copy items rather than read them.

Why: an export that validates every item into a pydantic model and serializes it back to JSON spends
most of its CPU on that, only to write what the server had sent (benchmarks/export_items.py measures the
difference; docs/benchmarks.md, "Export"). Here a page is scanned
once with the standard library's C JSON decoder, which reports where each item ends, and each item keeps
its original bytes; only its ``id`` and ``status`` are read. Full models are built on demand
(:meth:`RawItem.model`) for the consumers that need fields (CSV rows, XCom records).

Offsets without decoding UTF-8: the body is decoded as Latin-1, which maps each byte to one character, so
character offsets are byte offsets and ``body[start:end]`` is the item's exact bytes. JSON's structural
characters are ASCII and every byte of a multi-byte UTF-8 sequence is >= 0x80, so the scan sees the same
structure as a UTF-8 decode would; only non-ASCII *string values* come out garbled, and of those only
``id`` and ``status`` are used, re-decoded when they are not ASCII.

A chain of pages (:class:`RawPageWalk`) asks for the next page before this one is scanned, on the cursor
its envelope claims, and keeps that page only if the scan agrees (see there).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from airflow_provider_aoai_evals.api.errors import EvalsAPIError
from airflow_provider_aoai_evals.api.models import OutputItem

if TYPE_CHECKING:
    from airflow_provider_aoai_evals.api.flows import PageWalk
    from airflow_provider_aoai_evals.api.operations import Call

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_scan: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().raw_decode


class UnexpectedShapeError(ValueError):
    """Valid JSON that is not a page of items (a permanent error, unlike a cut-off body)."""


@dataclass(frozen=True, slots=True)
class RawItem:
    """One output item: its id and status, and its JSON exactly as the API sent it, on one line."""

    id: str
    status: str | None
    raw: bytes

    def model(self) -> OutputItem:
        return OutputItem.model_validate_json(self.raw)

    def as_dict(self) -> dict[str, Any]:
        """The item as the API's JSON object (correctly decoded, every field kept)."""
        value: dict[str, Any] = json.loads(self.raw)
        return value


class RawItemPage:
    """The list envelope (``data``, ``first_id``, ``last_id``, ``has_more``) with items kept raw.

    A page made by :meth:`unscanned` holds only what its body's ending said (``last_id``, ``has_more``)
    until ``data`` is first read, from whichever thread reads it: that read runs its scan, under a lock so
    that two threads never scan one body, and keeps what the scan gave (the scanned page's envelope and
    items, or its error, raised again to every later reader).
    """

    __slots__ = ("_data", "_error", "_lock", "_scan", "first_id", "has_more", "last_id")

    def __init__(
        self,
        data: list[RawItem] | None = None,
        *,
        first_id: str | None = None,
        last_id: str | None = None,
        has_more: bool = False,
    ) -> None:
        self._data = data if data is not None else []
        self._scan: Callable[[], RawItemPage] | None = None
        self._error: Exception | None = None
        self._lock: threading.Lock | None = None
        self.first_id = first_id
        self.last_id = last_id
        self.has_more = has_more

    @classmethod
    def unscanned(
        cls, scan: Callable[[], RawItemPage], *, last_id: str | None, has_more: bool
    ) -> RawItemPage:
        page = cls(last_id=last_id, has_more=has_more)
        page._lock = threading.Lock()
        page._scan = scan
        return page

    @property
    def scanned(self) -> bool:
        """Whether ``data`` has been read (so the items, or the scan's error, are known)."""
        return self._scan is None

    @property
    def data(self) -> list[RawItem]:
        if self._scan is not None:
            self._run_scan()
        if self._error is not None:
            raise self._error
        return self._data

    def _run_scan(self) -> None:
        assert self._lock is not None
        with self._lock:
            scan = self._scan
            if scan is None:
                return  # scanned by another thread while this one waited
            try:
                page = scan()
            except Exception as exc:  # noqa: BLE001 - kept, and raised to every reader of ``data``
                self._error = exc
            else:
                self._data, self.first_id = page.data, page.first_id
                self.last_id, self.has_more = page.last_id, page.has_more
            self._scan = None  # last: a reader that sees it unset finds the result stored

    def next_cursor(self) -> str | None:
        """The ``after`` value for the next page, or None when this is the last one (as ``Page`` does).

        The cursor is the last item the page holds, never the envelope's ``last_id``: a server whose
        ``last_id`` is null or stale would otherwise end an export early or page without end.
        """
        data = self.data  # first: the scan may correct ``has_more`` (a page fetched again)
        if not self.has_more or not data:
            return None
        return data[-1].id

    def claimed_cursor(self) -> str | None:
        """The cursor the envelope claims (``last_id`` while ``has_more``): a guess until it is checked
        against :meth:`next_cursor`, good for asking for the next page early and nothing else."""
        return self.last_id if self.has_more else None


def _text(value: Any) -> str | None:
    """A string value read through Latin-1, decoded back to what the UTF-8 bytes meant."""
    if value is None:
        return None
    if not isinstance(value, str):
        return str(value)
    return value if value.isascii() else value.encode("latin-1").decode("utf-8", errors="replace")


def _one_line(raw: bytes) -> bytes:
    """Drop line breaks between tokens (inside JSON strings they are always escaped), for JSON Lines."""
    if b"\n" in raw or b"\r" in raw:
        return raw.replace(b"\r", b"").replace(b"\n", b"")
    return raw


def _skip(text: str, at: int) -> int:
    return _WHITESPACE.match(text, at).end()  # type: ignore[union-attr]  # matches the empty string


def _expect(text: str, at: int, char: str) -> int:
    """Step over a structural character; anything else is a syntax error (a cut-off body ends here)."""
    if text[at : at + 1] != char:
        raise json.JSONDecodeError(f"Expecting {char!r}", text, at)
    return at + 1


def _items(body: bytes, text: str, at: int) -> tuple[list[RawItem], int]:
    """The items of the ``data`` array starting at ``at`` (on its ``[``) and the offset after it."""
    items: list[RawItem] = []
    at = _skip(text, _expect(text, at, "["))
    if text[at : at + 1] == "]":
        return items, at + 1
    while True:
        value, end = _scan(text, at)
        if not isinstance(value, dict):
            raise UnexpectedShapeError(f"an item of 'data' is a {type(value).__name__}, not an object")
        item_id = _text(value.get("id"))
        if not item_id:
            raise UnexpectedShapeError("an output item has no 'id'")
        items.append(RawItem(item_id, _text(value.get("status")), _one_line(body[at:end])))
        at = _skip(text, end)
        if text[at : at + 1] == "]":
            return items, at + 1
        at = _skip(text, _expect(text, at, ","))


def parse_raw_item_page(body: bytes) -> RawItemPage:
    """Scan a list-output-items response. Raises ``json.JSONDecodeError`` for a body that is not JSON (a
    cut-off body or a proxy page) and :class:`UnexpectedShapeError` for JSON that is not a page."""
    text = body.decode("latin-1")
    envelope: dict[str, Any] = {}
    items: list[RawItem] = []
    saw_data = False
    at = _skip(text, 0)
    if text[at : at + 1] != "{":
        _scan(text, at)  # raises JSONDecodeError for non-JSON; otherwise it is JSON of the wrong shape
        raise UnexpectedShapeError("the response is not a JSON object")
    at = _skip(text, at + 1)
    if text[at : at + 1] != "}":
        while True:
            key, at = _scan(text, at)
            if not isinstance(key, str):
                raise UnexpectedShapeError("an object key is not a string")
            at = _skip(text, _expect(text, _skip(text, at), ":"))
            if key == "data":
                items, at = _items(body, text, at)
                saw_data = True
            else:
                envelope[key], at = _scan(text, at)
            at = _skip(text, at)
            if text[at : at + 1] == "}":
                break
            at = _skip(text, _expect(text, at, ","))
    if _skip(text, at + 1) != len(text):
        raise json.JSONDecodeError("Extra data", text, at + 1)
    if not saw_data:
        raise UnexpectedShapeError("the response has no 'data' list")
    return RawItemPage(
        items,
        first_id=_text(envelope.get("first_id")),
        last_id=_text(envelope.get("last_id")),
        has_more=envelope.get("has_more") is True,
    )


#: The envelope's documented ending: ``"last_id": <id or null>, "has_more": <bool>}``.
_TAIL = re.compile(rb'"last_id"\s*:\s*(?:null|"([^"\\]*)")\s*,\s*"has_more"\s*:\s*(true|false)\s*\}\s*\Z')
_TAIL_WINDOW = 1024
_OPENS = re.compile(rb"\s*\{")
#: Bodies shorter than this are scanned at once: their scan costs less than the request a wrong guess at
#: their cursor would waste.
DEFER_MIN_BYTES = 16 * 1024


def read_raw_item_page(
    body: bytes, scan: Callable[[bytes], RawItemPage] = parse_raw_item_page
) -> RawItemPage:
    """A page whose items are scanned (by ``scan(body)``) when first asked for, or at once.

    Why: scanning a 200 KB page takes about as long as the server needs to send the next one, so the next
    request is better sent before the scan, on the cursor the envelope's ending gives. That ending is read
    only when the body ends the way the API documents its envelope; this is sound for any valid JSON, as
    the final ``}`` closes the top-level object and the pattern admits no backslash, so ``last_id`` and
    ``has_more`` are its members, not text inside a string. A body that does not end that way (cut off, a
    proxy's page, another key order) or is small is scanned at once, so its errors reach the client's
    retry policy as any answer's do.
    """
    if len(body) < DEFER_MIN_BYTES or not _OPENS.match(body):
        return parse_raw_item_page(body)
    tail = _TAIL.search(body, len(body) - _TAIL_WINDOW)
    if tail is None:
        return parse_raw_item_page(body)
    last_id = tail.group(1)
    return RawItemPage.unscanned(
        functools.partial(scan, body),
        last_id=None if last_id is None else last_id.decode("utf-8", errors="replace"),
        has_more=tail.group(2) == b"true",
    )


# -- a chain of pages, each asked for before the one before it is scanned ---------------------------------


class PageFetch(Protocol):
    """How a :class:`RawPageWalk` gets its pages: the client's page transport."""

    def __call__(self, call: Call[RawItemPage], first: bytes | Exception | None = None) -> RawItemPage:
        """``call`` under the client's retry policy. ``first`` is the outcome of its first attempt when
        already had: a body, read again as any answer is read, or the failure. The policy then counts it
        as the first attempt, with its pause and its log line."""
        ...

    def once(self, call: Call[RawItemPage]) -> RawItemPage:
        """One attempt of ``call``, not retried."""
        ...


@dataclass
class _Link:
    """One fetched page, the request that fetched it, and the call after it once its scan has told."""

    call: Call[RawItemPage]
    page: RawItemPage = dataclasses.field(default_factory=RawItemPage)
    after: Call[RawItemPage] | None = None


class RawPageWalk:
    """The cursor walk of raw pages, asking for each page before the one before it is scanned.

    Why: only a page's scan gives a cursor that can be trusted (its last item: see
    :meth:`RawItemPage.next_cursor`), and scanning a page takes about as long as the server needs for the
    next one. So while a page handed on is not scanned yet, the next one is asked for on the cursor its
    envelope claims; once that answer is in, the page's own cursor is read (from the consumer's scan, or
    by scanning it here) and the answer kept only when the two agree. Otherwise (a null or stale
    ``last_id``, an empty page claiming more) it is dropped unseen and the right page asked for, or the
    walk ends. A page the consumer has scanned already needs no guess.

    The walk's rules are ``walk``'s (:class:`flows.PageWalk`): a page unscanned when handed on is followed
    by its scan, in whichever thread that runs, so a repeat (a page whose cursor was followed before)
    comes out empty instead of read twice, and ends the walk. A body damaged in the middle behind a sound
    ending is fetched again by its scan under the retry policy, that answer counting as the first attempt,
    and the page holds the items of the answer that could be read.
    """

    def __init__(
        self, make: Callable[[str | None], Call[RawItemPage]], walk: PageWalk[RawItemPage], fetch: PageFetch
    ) -> None:
        self._make = make
        self._walk = walk
        self._fetch = fetch

    def __iter__(self) -> Iterator[RawItemPage]:
        first = self._walk.first
        link = None if first is None else self._get(first)
        while link is not None:
            page = link.page
            if page.scanned:  # scanned on arrival: followed now, before it is handed on
                call, fresh = self._walk.follow(page)
                if fresh:
                    yield page
                link = None if call is None else self._get(call)
                continue
            yield page
            link = self._next(link)

    def _next(self, link: _Link) -> _Link | None:
        page = link.page
        guess = None if page.scanned else page.claimed_cursor()
        ahead: _Link | None = None
        failure: Exception | None = None
        if guess is not None:
            try:
                ahead = self._get(self._make(guess), once=True)
            except EvalsAPIError as exc:  # the guess's failure is the walk's only if the guess was right
                failure = exc
        cursor = page.next_cursor()  # the scan: the consumer's, or run here
        if link.after is None:
            return None
        if cursor != guess:
            return self._get(link.after)
        return ahead if ahead is not None else self._get(link.after, failure)

    def _get(self, call: Call[RawItemPage], first: Exception | None = None, *, once: bool = False) -> _Link:
        link = _Link(call)
        deferred = dataclasses.replace(
            call, parse=functools.partial(read_raw_item_page, scan=functools.partial(self._scan, link))
        )
        link.page = self._fetch.once(deferred) if once else self._fetch(deferred, first)
        return link

    def _scan(self, link: _Link, body: bytes) -> RawItemPage:
        page = self._fetch(link.call, body)
        link.after, fresh = self._walk.follow(page)
        return page if fresh else RawItemPage()

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
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from airflow_provider_aoai_evals.api.models import OutputItem

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
    """The list envelope (``data``, ``first_id``, ``last_id``, ``has_more``) with items kept raw."""

    __slots__ = ("data", "first_id", "has_more", "last_id")

    def __init__(
        self,
        data: list[RawItem] | None = None,
        *,
        first_id: str | None = None,
        last_id: str | None = None,
        has_more: bool = False,
    ) -> None:
        self.data = data if data is not None else []
        self.first_id = first_id
        self.last_id = last_id
        self.has_more = has_more

    def next_cursor(self) -> str | None:
        """The ``after`` value for the next page, or None when this is the last one (as ``Page`` does).

        The cursor is the last item the page holds, never the envelope's ``last_id``: a server whose
        ``last_id`` is null or stale would otherwise end an export early or page without end.
        """
        if not self.has_more or not self.data:
            return None
        return self.data[-1].id


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

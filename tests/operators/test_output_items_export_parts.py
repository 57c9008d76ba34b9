"""The export's building blocks without Airflow or HTTP: de-duplication across pages, the XCom limit
and atomic writes on a real local filesystem (fsspec's LocalFileSystem)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fsspec.implementations.local import LocalFileSystem  # type: ignore[import-untyped]

from airflow_provider_aoai_evals.api.raw_items import RawItem, RawItemPage
from airflow_provider_aoai_evals.export import SeenIds, atomic_write, encoder_for, stream_pages
from airflow_provider_aoai_evals.export.stream import ItemLimitExceeded


def page(*indices: int, status: str = "pass") -> RawItemPage:
    def item(i: int) -> RawItem:
        raw = f'{{"id": "outputitem_{i:08x}", "status": "{status}", "datasource_item_id": {i}}}'
        return RawItem(f"outputitem_{i:08x}", status, raw.encode())

    return RawItemPage(data=[item(i) for i in indices], has_more=True)


def test_items_repeated_across_a_page_boundary_are_written_once() -> None:
    out: list[bytes] = []
    stats = stream_pages(
        [page(0, 1, 2), page(2, 3), page(3, 4, status="fail")], encoder_for("jsonl"), write=out.append
    )
    lines = b"".join(out).decode().splitlines()
    assert len(lines) == stats.count == 5
    assert stats.duplicates == 2 and stats.pages == 3
    assert stats.by_status == {"pass": 4, "fail": 1}
    assert stats.bytes == len(b"".join(out))


def test_item_limit_stops_at_the_first_page_past_it() -> None:
    consumed: list[int] = []

    def pages() -> Iterator[RawItemPage]:
        for start in range(0, 1000, 10):
            consumed.append(start)
            yield page(*range(start, start + 10))

    with pytest.raises(ItemLimitExceeded) as info:
        stream_pages(pages(), encoder_for("jsonl"), keep=[], max_items=25)
    assert info.value.seen == 30 and consumed == [0, 10, 20]


def test_seen_ids_is_compact_and_exact_for_distinct_ids() -> None:
    seen = SeenIds()
    ids = [f"outputitem_{i:032x}" for i in range(20_000)]
    assert all(seen.add(i) for i in ids)
    assert not any(seen.add(i) for i in ids[:100])
    assert len(seen) == 20_000 and ids[5] in seen and "outputitem_x" not in seen


def test_atomic_write_moves_into_place_only_when_complete(tmp_path: Path) -> None:
    fs = LocalFileSystem()
    final = tmp_path / "a" / "b.jsonl"
    with atomic_write(fs, str(final)) as handle:
        handle.write(b"one\n")
        assert not final.exists()
        [tmp] = list((tmp_path / "a").iterdir())
        assert tmp.name.startswith(".b.jsonl.") and tmp.name.endswith(".tmp")
    assert final.read_bytes() == b"one\n"
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["b.jsonl"]


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_atomic_write_error_keeps_the_previous_file_and_removes_the_temp(
    tmp_path: Path, error: BaseException
) -> None:
    fs = LocalFileSystem()
    final = tmp_path / "b.jsonl"
    final.write_bytes(b"previous\n")

    def export() -> None:
        with atomic_write(fs, str(final)) as handle:
            handle.write(b"partial")
            raise error

    with pytest.raises(type(error)):
        export()
    assert final.read_bytes() == b"previous\n"
    assert [p.name for p in tmp_path.iterdir()] == ["b.jsonl"]

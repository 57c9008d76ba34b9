"""The export's page read-ahead: same order, errors after every earlier page, bounded lookahead, and a
producer that stops when the consumer does."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from airflow_provider_aoai_evals.export.read_ahead import read_ahead


def test_yields_everything_in_order() -> None:
    with read_ahead(range(500)) as ahead:
        assert list(ahead) == list(range(500))


def test_an_error_comes_after_every_earlier_element() -> None:
    def source() -> Iterator[int]:
        yield 1
        yield 2
        raise RuntimeError("page 3 failed")

    got: list[int] = []

    def consume() -> None:
        with read_ahead(source()) as ahead:
            got.extend(ahead)

    with pytest.raises(RuntimeError, match="page 3 failed"):
        consume()
    assert got == [1, 2]


def test_fetches_at_most_depth_plus_one_ahead_and_overlaps_with_the_consumer() -> None:
    produced: list[int] = []

    def source() -> Iterator[int]:
        for i in range(10):
            produced.append(i)
            yield i

    with read_ahead(source(), depth=1) as ahead:
        first = next(ahead)
        deadline = time.monotonic() + 2
        while len(produced) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.1)  # would let a runaway producer go further
        # consumer holds 0; 1 waits in the queue; 2 is in the producer's hand: nothing beyond
        assert first == 0 and produced == [0, 1, 2]
        assert list(ahead) == list(range(1, 10))


def test_consumer_stopping_early_stops_the_producer() -> None:
    produced: list[int] = []

    def source() -> Iterator[int]:
        for i in range(1_000_000):
            produced.append(i)
            yield i

    def consume() -> None:
        with read_ahead(source(), join_timeout=2) as ahead:
            for value in ahead:
                if value == 3:
                    raise ValueError("write failed")

    with pytest.raises(ValueError, match="write failed"):
        consume()
    assert len(produced) <= 6
    assert not any(t.name == "aoai-evals-read-ahead" and t.is_alive() for t in threading.enumerate())


def test_depth_must_be_positive() -> None:
    with pytest.raises(ValueError, match="depth"), read_ahead([1], depth=0):
        pass

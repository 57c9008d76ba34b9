"""Fetch the next page while the current one is written.

Why: once items are copied as raw bytes (``api/raw_items``), writing a page takes about as long as the
server needs to build and send the next one, and done in turn the two add up. One background thread that
keeps one page ready lets them overlap: it fetches and scans each page (the scan gives the next page's
cursor, which only the page's last item can be trusted for), and spends most of its time in socket reads,
which release the GIL. At most ``depth`` pages wait in the queue and one more is being fetched, so memory
stays bounded by a few pages, never the run.

Errors keep their place: a page that fails to fetch raises in the consumer after every earlier page has
been handed over, so an export writes (or discards) exactly what it would have without the thread. When
the consumer stops early (an error while writing, the task being killed), the thread is told to stop and
is not waited for beyond ``join_timeout``: it is a daemon and exits after its current request.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

from airflow_provider_aoai_evals.api.errors import EvalsConfigError

T = TypeVar("T")

_VALUE, _END, _ERROR = "value", "end", "error"
_PUT_POLL_SECONDS = 0.1


class _ReadAhead(Generic[T]):
    def __init__(self, source: Iterable[T], depth: int) -> None:
        self._queue: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._produce, args=(iter(source),), name="aoai-evals-read-ahead", daemon=True
        )
        self._thread.start()

    def _put(self, kind: str, value: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put((kind, value), timeout=_PUT_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, source: Iterator[T]) -> None:
        try:
            for value in source:
                if not self._put(_VALUE, value):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
            self._put(_ERROR, exc)
            return
        self._put(_END, None)

    def __iter__(self) -> Iterator[T]:
        while True:
            kind, value = self._queue.get()
            if kind == _END:
                return
            if kind == _ERROR:
                assert isinstance(value, BaseException)
                raise value
            yield value  # type: ignore[misc]  # only _VALUE entries carry a T

    def close(self, join_timeout: float) -> None:
        self._stop.set()
        with contextlib.suppress(queue.Empty):
            while True:  # unblock a producer waiting to put
                self._queue.get_nowait()
        self._thread.join(join_timeout)


@contextlib.contextmanager
def read_ahead(source: Iterable[T], *, depth: int = 1, join_timeout: float = 1.0) -> Iterator[Iterator[T]]:
    """Iterate ``source`` in a background thread, ``depth`` elements ahead of the consumer."""
    if depth < 1:
        raise EvalsConfigError("depth", "must be at least 1")
    ahead = _ReadAhead(source, depth)
    try:
        yield iter(ahead)
    finally:
        ahead.close(join_timeout)

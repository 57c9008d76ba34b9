"""A streamed multipart/form-data body for the Files API, so a large dataset is never held in memory.

requests builds ``files=`` uploads in memory; a generator body with a known Content-Length streams instead.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

CHUNK = 256 * 1024


@dataclass(frozen=True)
class MultipartUpload:
    """One file plus text fields. ``open`` is called once per attempt, so a retry re-reads from the start."""

    open: Callable[[], BinaryIO]
    filename: str
    size: int
    fields: tuple[tuple[str, str], ...]
    boundary: str = ""

    def __post_init__(self) -> None:
        if not self.boundary:
            object.__setattr__(self, "boundary", f"aoai-evals-{uuid.uuid4().hex}")

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def _head(self) -> bytes:
        parts = [
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
            for name, value in self.fields
        ]
        safe_name = self.filename.replace('"', "_").replace("\r", "_").replace("\n", "_")
        parts.append(
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="file"; filename="{safe_name}"\r\n'
            "Content-Type: application/jsonl\r\n\r\n"
        )
        return "".join(parts).encode()

    def _tail(self) -> bytes:
        return f"\r\n--{self.boundary}--\r\n".encode()

    @property
    def content_length(self) -> int:
        return len(self._head()) + self.size + len(self._tail())

    def chunks(self) -> Iterator[bytes]:
        yield self._head()
        sent = 0
        with self.open() as stream:
            while chunk := stream.read(CHUNK):
                sent += len(chunk)
                yield chunk
        if sent != self.size:  # the file changed under us: the declared length would be wrong
            raise OSError(f"{self.filename} changed during upload ({sent} bytes read, {self.size} expected)")
        yield self._tail()

    def reader(self) -> _ChunkReader:
        """A file-like view of ``chunks()`` with a length: requests then streams it with Content-Length
        (a plain generator would be sent chunked, which some servers and proxies refuse)."""
        return _ChunkReader(self.chunks(), self.content_length)


class _ChunkReader:
    def __init__(self, chunks: Iterator[bytes], length: int) -> None:
        self._chunks = chunks
        self._buffer = b""
        self.len = length

    def __len__(self) -> int:
        return self.len

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if size < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

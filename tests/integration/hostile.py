"""A deliberately hostile HTTP server on loopback: each test scripts, byte for byte, what it answers.

FakeEvalsServer behaves like the API, faults included; this one misbehaves in ways no fault there can
(redirects to another origin, bodies trickled a byte at a time, answers of the wrong shape, headers echoed
back, connections closed without a word), so the client is tested against what a broken proxy or a
malicious endpoint really sends. It speaks just enough HTTP/1.1 for that: keep-alive, Content-Length.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    #: How many requests came before this one on the same connection.
    on_connection: int = 0

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.target).query).items()}


class Reply:
    """What the server does with one request: write these bytes (with pauses), then keep or close."""

    def __init__(self, chunks: list[bytes | float], *, close: bool = False) -> None:
        self.chunks = chunks
        self.close = close


def respond(
    status: int = 200,
    body: bytes | Mapping[str, Any] | list[Any] = b"",
    headers: Mapping[str, str] | None = None,
    *,
    trickle: float | None = None,
) -> Reply:
    """A well-formed answer; with ``trickle``, its body is sent a byte every ``trickle`` seconds."""
    data = json.dumps(body).encode() if not isinstance(body, bytes) else body
    head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(data)}"]
    if not any(k.lower() == "content-type" for k in headers or {}):
        head.append("Content-Type: application/json")
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    first = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
    if trickle is None:
        return Reply([first + data])
    chunks: list[bytes | float] = [first]
    for byte in data:
        chunks += [trickle, bytes([byte])]
    return Reply(chunks)


def hang_up() -> Reply:
    """Close the connection without answering (after the request was read)."""
    return Reply([], close=True)


Handler = Callable[[Request], Reply]


@dataclass
class HostileServer:
    handler: Handler
    requests: list[Request] = field(default_factory=list)
    connections: int = 0

    def __post_init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def netloc(self) -> str:
        return f"127.0.0.1:{self.port}"

    def count(self, method: str | None = None) -> int:
        with self._lock:
            return sum(1 for r in self.requests if method is None or r.method == method)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    def _connection(self, conn: socket.socket) -> None:
        conn.settimeout(30)
        reader = conn.makefile("rb")
        served = 0
        try:
            while not self._stop.is_set():
                try:
                    request = _read_request(reader, served)
                except _NotHTTP:
                    conn.sendall(
                        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    )
                    return
                if request is None:
                    return
                with self._lock:
                    self.requests.append(request)
                reply = self.handler(request)
                for chunk in reply.chunks:
                    if isinstance(chunk, float):
                        time.sleep(chunk)
                    else:
                        conn.sendall(chunk)
                served += 1
                if reply.close:
                    return
        except OSError:
            return
        finally:
            reader.close()
            conn.close()


class _NotHTTP(Exception):
    pass


def _read_request(reader: Any, served: int) -> Request | None:
    line = reader.readline(65537)
    if not line or not line.strip():
        return None
    try:
        method, target, _ = line.decode("latin-1").split(" ", 2)
    except ValueError:  # not HTTP (a TLS hello, say): answered as a plain http server would
        raise _NotHTTP from None
    headers: dict[str, str] = {}
    while True:
        raw = reader.readline(65537)
        if raw in (b"\r\n", b"\n", b""):
            break
        name, _, value = raw.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = reader.read(int(headers.get("content-length", "0") or 0))
    return Request(method, target, headers, body, served)


@contextmanager
def hostile(handler: Handler) -> Iterator[HostileServer]:
    server = HostileServer(handler)
    try:
        yield server
    finally:
        server.close()


# -- answers shaped like the API's ------------------------------------------------------------------------


def run_body(run_id: str = "evalrun_1", **fields: Any) -> dict[str, Any]:
    return {"object": "eval.run", "id": run_id, "eval_id": "eval_1", "status": "queued", **fields}


def item_body(n: int) -> dict[str, Any]:
    return {
        "object": "eval.run.output_item",
        "id": f"outputitem_{n}",
        "status": "pass",
        "datasource_item_id": n,
    }


def page_body(data: list[dict[str, Any]], *, has_more: bool, last_id: str | None = "auto") -> dict[str, Any]:
    last = (data[-1]["id"] if data else None) if last_id == "auto" else last_id
    return {"object": "list", "data": data, "first_id": data[0]["id"] if data else None, "last_id": last,
            "has_more": has_more}  # fmt: skip

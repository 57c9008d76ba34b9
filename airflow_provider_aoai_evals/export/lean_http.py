"""A keep-alive ``http.client`` connection for the one call whose client CPU sits on a critical path.

Why: an export fetches output-item pages in a chain, since each page's cursor is in the one before, so
whatever CPU the client spends per request is added to the server's time for every page, and
``requests`` spends several times what ``http.client`` does on a large page (figures in
docs/benchmarks.md, "Export"). Every other call keeps using ``requests``.

Deliberately narrow: GET only, no proxy (a client that has one keeps ``requests`` for this call too), TLS
verified against the trust store ``requests`` would use, one connection per thread. A connection the
server has closed while idle is noticed before it is reused (as urllib3 does), never by resending a
request. Failures become the provider's errors with the same wording as the ``requests`` transport.
"""

from __future__ import annotations

import http.client
import os
import select
import ssl
import zlib
from collections.abc import Mapping
from urllib.parse import urlsplit

from airflow_provider_aoai_evals.api.errors import EvalsConfigError, connection_failed, timed_out, tls_failed


def tls_context(verify: bool | str) -> ssl.SSLContext:
    """Certificate checks as ``requests`` makes them: ``verify`` is a CA bundle (file or directory) or
    True for requests' default bundle (certifi's)."""
    if verify is False:
        raise EvalsConfigError("verify", "False is not supported by the lean transport")
    if verify is True:
        from requests.utils import DEFAULT_CA_BUNDLE_PATH

        bundle = str(DEFAULT_CA_BUNDLE_PATH)
    else:
        bundle = str(verify)
    if os.path.isdir(bundle):
        return ssl.create_default_context(capath=bundle)
    return ssl.create_default_context(cafile=bundle)


class LeanConnection:
    """One keep-alive connection to the API root's host, used by one thread at a time."""

    def __init__(self, api_root: str, *, verify: bool | str) -> None:
        parts = urlsplit(api_root)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise EvalsConfigError("base_url", f"not an http(s) URL: {api_root!r}")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._context = tls_context(verify) if self._https else None
        self._conn: http.client.HTTPConnection | None = None

    def get(
        self, target: str, headers: Mapping[str, str], *, timeout: tuple[float, float], path: str
    ) -> tuple[int, dict[str, str], bytes]:
        """``GET target`` (path and query); returns status, headers and the whole body.

        ``timeout`` is (connect, read) seconds, the read one per socket operation as in ``requests``.
        ``path`` (no query) names the request in errors.
        """
        connect, read = timeout
        conn = self._connection(connect, path)
        try:
            assert conn.sock is not None
            conn.sock.settimeout(read)
            conn.request("GET", target, headers=dict(headers))
            resp = conn.getresponse()
            body = _decoded(resp.read(), resp.getheader("Content-Encoding", ""))
        except TimeoutError:
            self.close()
            raise timed_out(connecting=False, method="GET", path=path) from None
        except (http.client.HTTPException, OSError, zlib.error) as exc:
            self.close()
            raise connection_failed(exc, request_sent=True, method="GET", path=path) from None
        if resp.will_close:
            self.close()
        return resp.status, dict(resp.getheaders()), body

    def _connection(self, connect_timeout: float, path: str) -> http.client.HTTPConnection:
        if self._conn is not None and not _dropped(self._conn):
            return self._conn
        self.close()
        if self._https:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                self._host, self._port, timeout=connect_timeout, context=self._context
            )
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=connect_timeout)
        try:
            conn.connect()
        except ssl.SSLError as exc:
            conn.close()
            raise tls_failed(exc, method="GET", path=path) from None
        except TimeoutError:
            conn.close()
            raise timed_out(connecting=True, method="GET", path=path) from None
        except OSError as exc:
            conn.close()
            raise connection_failed(exc, request_sent=False, method="GET", path=path) from None
        self._conn = conn
        return conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _decoded(body: bytes, encoding: str) -> bytes:
    """The body without its content coding: requests asks for gzip or deflate, and so do we."""
    coding = encoding.strip().lower()
    if coding == "gzip":
        return zlib.decompress(body, 16 + zlib.MAX_WBITS)
    if coding == "deflate":
        try:
            return zlib.decompress(body)
        except zlib.error:  # some servers send deflate without the zlib header
            return zlib.decompress(body, -zlib.MAX_WBITS)
    return body


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """Whether an idle keep-alive connection was closed by the server (readable with nothing asked)."""
    sock = conn.sock
    if sock is None:
        return True
    try:
        if hasattr(select, "poll"):  # select() cannot watch descriptors above FD_SETSIZE
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)

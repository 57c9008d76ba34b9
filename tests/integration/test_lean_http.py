"""Export pages over ``lean_http`` (http.client): reuse, idle closes, TLS, proxies, timeouts, faults.

Real loopback HTTP(S) to FakeEvalsServer; the certificates are made here with ``cryptography`` (an Airflow
dependency), so the https tests need no network and no openssl binary.
"""

from __future__ import annotations

import datetime as dt
import gzip
import ipaddress
import socket
import ssl
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_aoai_evals.api.client import EvalsClient
from airflow_provider_aoai_evals.api.errors import EvalsConnectionError, EvalsPermanentError
from airflow_provider_aoai_evals.api.retry import RetryPolicy
from airflow_provider_aoai_evals.export.lean_http import _decoded
from airflow_provider_aoai_evals.testing import FakeEvalsServer, Fault, RunScript

from .conftest import CANARY_KEY, make_settings

ITEMS_PATH = r"/output_items"


def _run_with_items(server: FakeEvalsServer, items: int) -> tuple[str, str]:
    eval_id = str(server.add_eval(name="e")["id"])
    script = RunScript(queued_seconds=0, in_progress_seconds=0, output_items=items)
    return eval_id, str(server.add_run(eval_id, script)["id"])


def _item_ids(client: EvalsClient, eval_id: str, run_id: str) -> list[str]:
    return [item.id for page in client.list_raw_output_item_pages(eval_id, run_id) for item in page.data]


@pytest.fixture
def server() -> Iterator[FakeEvalsServer]:
    with FakeEvalsServer(api_key=CANARY_KEY) as srv:
        yield srv


def test_pages_travel_on_one_kept_alive_connection_not_through_requests(server: FakeEvalsServer) -> None:
    eval_id, run_id = _run_with_items(server, 250)
    with EvalsClient(make_settings(server)) as client:
        ids = _item_ids(client, eval_id, run_id)
        assert len(ids) == len(set(ids)) == 250
        assert len(client._lean_all) == 1
        # requests never opened a pool: every page came over the lean connection.
        assert all(not adapter.poolmanager.pools for adapter in client._session.adapters.values())  # type: ignore[attr-defined]
    assert server.count("GET", ITEMS_PATH) == 3


def test_a_connection_the_server_closed_while_idle_is_replaced_not_retried() -> None:
    with FakeEvalsServer(api_key=CANARY_KEY, keepalive_timeout=0.2) as server:
        eval_id, run_id = _run_with_items(server, 250)
        # One attempt only: a request sent on the dead connection would fail the export.
        with EvalsClient(make_settings(server, retry=RetryPolicy(max_attempts=1))) as client:
            pages = client.list_raw_output_item_pages(eval_id, run_id)
            first = next(pages)
            time.sleep(0.8)  # the server closes the idle connection meanwhile
            rest = [item.id for page in pages for item in page.data]
        assert len(first.data) + len(rest) == 250
        assert server.count("GET", ITEMS_PATH) == 3  # no request was sent twice


def test_a_slow_page_times_out_and_is_retried(server: FakeEvalsServer) -> None:
    eval_id, run_id = _run_with_items(server, 150)
    server.inject(Fault(kind="slow", delay=1.5, path_regex=ITEMS_PATH))
    with EvalsClient(make_settings(server, read_timeout=0.3)) as client:
        assert len(_item_ids(client, eval_id, run_id)) == 150
    assert server.count("GET", ITEMS_PATH) == 3  # the slow first page, its retry, the second page


@pytest.mark.parametrize("kind", ["drop_before", "drop_after", "html"])
def test_a_dropped_or_garbled_page_is_retried(server: FakeEvalsServer, kind: str) -> None:
    eval_id, run_id = _run_with_items(server, 150)
    server.inject(Fault(kind=kind, path_regex=ITEMS_PATH))
    with EvalsClient(make_settings(server)) as client:
        ids = _item_ids(client, eval_id, run_id)
    assert len(ids) == len(set(ids)) == 150


def test_nothing_listening_is_a_connection_error_naming_the_request() -> None:
    with FakeEvalsServer(api_key=CANARY_KEY) as server:
        settings = make_settings(server)
    # The server is gone: its port refuses connections.
    with EvalsClient(settings) as client, pytest.raises(EvalsConnectionError) as raised:
        _item_ids(client, "eval_1", "evalrun_1")
    assert raised.value.request_sent is False and "/output_items" in str(raised.value)
    assert CANARY_KEY not in str(raised.value)


def test_a_configured_proxy_keeps_requests_for_pages(server: FakeEvalsServer) -> None:
    """Proxies are requests' job: with one set, pages go through it (here a port nothing listens on), not
    around it to the server."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead_proxy = f"http://127.0.0.1:{sock.getsockname()[1]}"
    eval_id, run_id = _run_with_items(server, 10)
    with EvalsClient(make_settings(server, proxy=dead_proxy)) as client, pytest.raises(EvalsConnectionError):
        _item_ids(client, eval_id, run_id)
    assert server.count("GET", ITEMS_PATH) == 0


# -- https ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.fixture
def https_server(certificate: tuple[Path, Path]) -> Iterator[FakeEvalsServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    with FakeEvalsServer(api_key=CANARY_KEY, ssl_context=context) as srv:
        yield srv


def test_https_pages_verified_against_the_connection_ca_bundle(
    https_server: FakeEvalsServer, certificate: tuple[Path, Path]
) -> None:
    eval_id, run_id = _run_with_items(https_server, 150)
    assert https_server.url.startswith("https://")
    with EvalsClient(make_settings(https_server, ca_bundle=str(certificate[0]))) as client:
        assert len(_item_ids(client, eval_id, run_id)) == 150
        assert len(client._lean_all) == 1


def test_https_with_an_unknown_ca_fails_at_once_as_a_tls_error(
    https_server: FakeEvalsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    eval_id, run_id = _run_with_items(https_server, 10)
    with EvalsClient(make_settings(https_server)) as client, pytest.raises(EvalsPermanentError) as raised:
        _item_ids(client, eval_id, run_id)
    assert "TLS verification failed" in str(raised.value) and "ca_bundle" in str(raised.value)
    assert https_server.count("GET", ITEMS_PATH) == 0


# -- content coding ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("coding", "encode"),
    [
        ("gzip", gzip.compress),
        ("deflate", zlib.compress),
        ("deflate", lambda body: zlib.compress(body)[2:-4]),  # raw deflate, no zlib header
        ("", lambda body: body),
        ("identity", lambda body: body),
    ],
)
def test_bodies_are_decoded_as_requests_would(coding: str, encode: object) -> None:
    body = b'{"object": "list", "data": [], "has_more": false}' * 20
    assert callable(encode)
    assert _decoded(encode(body), coding) == body

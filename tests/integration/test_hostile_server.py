"""The client against a server that misbehaves on purpose (``hostile``), on both transports.

Each test reproduces one defect found by pointing the provider at such a server: it failed before the
fix it names, and pins what the client does now.
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import Any, Literal

import pytest

from airflow_provider_aoai_evals.api.auth import ApiKeyAuth
from airflow_provider_aoai_evals.api.client import EvalsClient
from airflow_provider_aoai_evals.api.errors import (
    EvalsConfigError,
    EvalsConnectionError,
    EvalsPermanentError,
    EvalsRateLimitError,
    EvalsServerError,
    EvalsTimeoutError,
)
from airflow_provider_aoai_evals.api.retry import RetryPolicy
from airflow_provider_aoai_evals.api.settings import ClientSettings

from .conftest import ClientFactory
from .hostile import HostileServer, Reply, Request, hang_up, hostile, item_body, page_body, respond, run_body

KEY = "sk-hostile-canary-5d1e0f"
FAST = RetryPolicy(max_attempts=3, initial_delay=0.01, max_delay=0.05, create_settle_seconds=0.3)
Flavor = Literal["openai", "azure"]


def settings(server: HostileServer, flavor: Flavor = "azure", **kw: Any) -> ClientSettings:
    header: Literal["bearer", "api-key"] = "api-key" if flavor == "azure" else "bearer"
    kw.setdefault("retry", FAST)
    kw.setdefault("read_timeout", 5.0)
    base = server.url if flavor == "azure" else server.url + "/v1"
    return ClientSettings.build(flavor=flavor, base_url=base, auth=ApiKeyAuth(KEY, header=header), **kw)


def sees_key(request: Request) -> bool:
    return any(KEY in value for value in request.headers.values()) or KEY.encode() in request.body


# -- 1. redirects ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flavor", ["azure", "openai"])
@pytest.mark.parametrize(("status", "method"), [(302, "GET"), (307, "POST")])
def test_a_redirect_is_never_followed_and_names_its_host(
    make_client: ClientFactory, flavor: Flavor, status: int, method: str
) -> None:
    with hostile(lambda r: respond(200, run_body())) as elsewhere:
        to = f"{elsewhere.url}/openai/v1/evals/eval_1/runs/evalrun_1"
        with hostile(lambda r: respond(status, b"", {"Location": to})) as endpoint:
            client = make_client(settings(endpoint, flavor))
            source = {"type": "jsonl", "source": {"type": "file_id", "id": "file-1"}}
            call = (
                (lambda: client.get_run("eval_1", "evalrun_1"))
                if method == "GET"
                else (lambda: client.create_run("eval_1", data_source=source))
            )
            with pytest.raises(EvalsPermanentError) as info:
                call()
            assert endpoint.count() == 1  # a permanent error: not retried either
        assert elsewhere.count() == 0  # neither the key nor the body went there
    message = str(info.value)
    assert f"HTTP {status}" in message and f"to host '{elsewhere.netloc}'" in message
    assert "redirect" in message and "/openai/v1/evals" not in message.split("HTTP")[-1]


def test_an_export_page_redirect_is_not_followed_either() -> None:
    with hostile(lambda r: respond(200, page_body([item_body(1)], has_more=False))) as elsewhere:
        with (
            hostile(lambda r: respond(302, b"", {"Location": elsewhere.url + "/x"})) as endpoint,
            EvalsClient(settings(endpoint)) as client,
            pytest.raises(EvalsPermanentError, match="redirect"),
        ):
            list(client.list_raw_output_item_pages("eval_1", "evalrun_1"))
        assert elsewhere.count() == 0


# -- 2. Retry-After that is not a finite, non-negative number; Retry-After: 0 --------------------------------


@pytest.mark.parametrize(
    "header",
    [{"Retry-After": "nan"}, {"retry-after-ms": "nan"}, {"Retry-After": "-3"}, {"Retry-After": "inf"}],
)
def test_a_retry_after_that_is_not_a_number_falls_back_to_the_backoff(
    make_client: ClientFactory, header: dict[str, str]
) -> None:
    answers = iter([respond(429, {"error": {"message": "slow"}}, header), respond(200, run_body())])
    with hostile(lambda r: next(answers)) as endpoint:
        assert make_client(settings(endpoint)).get_run("eval_1", "evalrun_1").id == "evalrun_1"
        assert endpoint.count() == 2


def test_a_nan_retry_after_cannot_outlive_the_deadline(make_client: ClientFactory) -> None:
    policy = RetryPolicy(max_attempts=50, initial_delay=0.2, max_delay=0.5)
    with hostile(lambda r: respond(429, {"error": {"message": "slow"}}, {"Retry-After": "nan"})) as endpoint:
        client = make_client(settings(endpoint, retry=policy))
        started = time.monotonic()
        with pytest.raises(EvalsRateLimitError):
            client.get_run("eval_1", "evalrun_1", deadline=time.time() + 2)
        assert time.monotonic() - started < 3


@pytest.mark.parametrize("header", [{"Retry-After": "0"}, {"retry-after-ms": "1"}])
def test_retry_now_on_every_answer_is_not_a_burst(make_client: ClientFactory, header: dict[str, str]) -> None:
    policy = RetryPolicy(max_attempts=5, initial_delay=0.1, max_delay=0.2, jitter=0, min_retry_after=0.1)
    with hostile(lambda r: respond(503, {"error": {"message": "busy"}}, header)) as endpoint:
        client = make_client(settings(endpoint, retry=policy))
        started = time.monotonic()
        with pytest.raises(EvalsServerError):
            client.get_run("eval_1", "evalrun_1")
        elapsed = time.monotonic() - started
        assert endpoint.count() == 5
    assert elapsed >= 0.4  # four pauses of at least the 0.1 s floor, not 5 requests in a few ms


# -- 3. counts that cannot be ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "counts",
    [
        {"total": 5, "passed": 10, "failed": -5, "errored": 0},
        {"total": 5, "passed": 4, "failed": 4, "errored": 0},
    ],
)
def test_impossible_result_counts_are_refused_not_turned_into_a_rate(
    make_client: ClientFactory, counts: dict[str, int]
) -> None:
    with hostile(lambda r: respond(200, run_body(status="completed", result_counts=counts))) as endpoint:
        with pytest.raises(EvalsPermanentError, match="result_counts") as info:
            make_client(settings(endpoint)).get_run("eval_1", "evalrun_1")
        assert endpoint.count() == 1
    assert "10" not in str(info.value).split("result_counts")[0]  # names the field, not its values


# -- 4. the export's cursor, and pages that repeat ------------------------------------------------------------


def _paged(pages: dict[str | None, dict[str, Any]]) -> Any:
    def handler(request: Request) -> Reply:
        return respond(200, pages[request.query.get("after")])

    return handler


def test_a_null_last_id_does_not_end_the_export_early() -> None:
    first = page_body([item_body(1), item_body(2)], has_more=True, last_id=None)
    second = page_body([item_body(3), item_body(4)], has_more=False, last_id=None)
    with (
        hostile(_paged({None: first, "outputitem_2": second})) as endpoint,
        EvalsClient(settings(endpoint)) as client,
    ):
        pages = list(client.list_raw_output_item_pages("eval_1", "evalrun_1"))
    assert [i.id for p in pages for i in p.data] == [f"outputitem_{n}" for n in range(1, 5)]


def test_a_stale_last_id_is_not_followed() -> None:
    first = page_body([item_body(1), item_body(2)], has_more=True, last_id="outputitem_1")
    second = page_body([item_body(3)], has_more=False)
    with (
        hostile(_paged({None: first, "outputitem_2": second})) as endpoint,
        EvalsClient(settings(endpoint)) as client,
    ):
        pages = list(client.list_raw_output_item_pages("eval_1", "evalrun_1"))
    assert [i.id for p in pages for i in p.data] == ["outputitem_1", "outputitem_2", "outputitem_3"]


def test_empty_pages_that_claim_more_end_the_walk() -> None:
    counter = iter(range(10_000))

    def handler(request: Request) -> Reply:
        return respond(200, page_body([], has_more=True, last_id=f"outputitem_{next(counter)}"))

    with hostile(handler) as endpoint, EvalsClient(settings(endpoint)) as client:
        # Taken as an export's read-ahead thread takes them: the next one before this one's items.
        pages = list(itertools.islice(client.list_raw_output_item_pages("eval_1", "evalrun_1"), 5))
        assert len(pages) == 1 and pages[0].data == []
        assert endpoint.count() == 1


def test_a_page_sent_again_is_not_read_twice(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    same = page_body([item_body(1), item_body(2)], has_more=True)  # the server ignores 'after'
    with hostile(lambda r: respond(200, same)) as endpoint:
        client = make_client(settings(endpoint))
        with caplog.at_level(logging.WARNING):
            items = client.list_output_items("eval_1", "evalrun_1")
        assert [i.id for i in items] == ["outputitem_1", "outputitem_2"]
        assert endpoint.count() == 2
    assert "sent again a page" in caplog.text
    if isinstance(client, EvalsClient):
        with hostile(lambda r: respond(200, same)) as endpoint, EvalsClient(settings(endpoint)) as raw:
            assert [i.id for p in raw.list_raw_output_item_pages("eval_1", "evalrun_1") for i in p.data] == [
                "outputitem_1",
                "outputitem_2",
            ]


# -- 5. an empty 2xx body --------------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"", b"{}"])
def test_a_keyed_create_never_posts_twice_when_lookups_read_empty_bodies(
    make_client: ClientFactory, body: bytes
) -> None:
    def handler(request: Request) -> Reply:
        return hang_up() if request.method == "POST" else respond(200, body)

    with hostile(handler) as endpoint:
        client = make_client(settings(endpoint))
        with pytest.raises((EvalsServerError, EvalsPermanentError, EvalsConnectionError)):
            client.create_run(
                "eval_1",
                data_source={"type": "jsonl", "source": {"type": "file_id", "id": "file-1"}},
                idempotency_key="key-1",
            )
        assert endpoint.count("POST") == 1


def test_an_empty_body_is_a_transient_server_error(make_client: ClientFactory) -> None:
    answers = iter([respond(200, b""), respond(200, b"  "), respond(200, run_body())])
    with hostile(lambda r: next(answers)) as endpoint:
        assert make_client(settings(endpoint)).get_run("eval_1", "evalrun_1").id == "evalrun_1"
        assert endpoint.count() == 3
    with (
        hostile(lambda r: respond(200, b"")) as endpoint,
        pytest.raises(EvalsServerError, match="empty body") as info,
    ):
        make_client(settings(endpoint)).get_run("eval_1", "evalrun_1")
    assert info.value.transient


# -- 6. ids with a trailing newline ----------------------------------------------------------------------------


@pytest.mark.parametrize("run_id", ["evalrun_1\n", "evalrun_1\r\n", "\nevalrun_1"])
def test_an_id_with_a_line_break_is_refused_before_any_request(
    make_client: ClientFactory, run_id: str
) -> None:
    with hostile(lambda r: respond(200, run_body())) as endpoint:
        with pytest.raises(EvalsConfigError, match="run_id"):
            make_client(settings(endpoint)).get_run("eval_1", run_id)
        assert endpoint.count() == 0


# -- 7. a body trickled a byte at a time ------------------------------------------------------------------------


def test_a_trickled_body_cannot_hold_a_call_past_its_deadline(make_client: ClientFactory) -> None:
    with hostile(lambda r: respond(200, run_body(), trickle=0.2)) as endpoint:
        client = make_client(settings(endpoint, retry=RetryPolicy(max_attempts=1), read_timeout=5.0))
        started = time.monotonic()
        with pytest.raises(EvalsTimeoutError):
            client.get_run("eval_1", "evalrun_1", deadline=time.time() + 1.5)
        assert time.monotonic() - started < 2.5


# -- also seen ----------------------------------------------------------------------------------------------------


def test_the_policy_alone_decides_how_often_a_request_is_sent(make_client: ClientFactory) -> None:
    """aiohttp sent a GET again on its own when a kept-alive connection closed without an answer."""

    answering = [True]

    def handler(request: Request) -> Reply:
        return respond(200, run_body()) if answering[0] else hang_up()

    with hostile(handler) as endpoint:
        client = make_client(settings(endpoint))
        client.get_run("eval_1", "evalrun_1")  # opens the connection that is kept alive
        answering[0] = False
        with pytest.raises(EvalsConnectionError):
            client.get_run("eval_1", "evalrun_1")
        assert endpoint.count() == 1 + FAST.max_attempts


def test_https_to_a_plain_http_server_is_the_same_clear_error_on_both_transports(
    make_client: ClientFactory,
) -> None:
    with hostile(lambda r: respond(200, run_body())) as endpoint:
        plain = settings(endpoint)
        https = ClientSettings.build(
            flavor="azure", base_url=f"https://{endpoint.netloc}", auth=plain.auth, retry=FAST
        )
        with pytest.raises(EvalsPermanentError) as info:
            make_client(https).get_run("eval_1", "evalrun_1")
    assert "plain http" in str(info.value) and "WRONG_VERSION_NUMBER" in str(info.value)


@pytest.mark.parametrize("status", [502, 200])
def test_a_proxy_that_echoes_the_key_does_not_put_it_in_errors_or_logs(
    make_client: ClientFactory, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    def echo(request: Request) -> Reply:
        auth_first = sorted(request.headers.items(), key=lambda kv: kv[0] not in ("api-key", "authorization"))
        page = "<html><body>Bad gateway<pre>" + "\n".join(f"{k}: {v}" for k, v in auth_first)
        return respond(status, (page + "</pre></body></html>").encode(), {"Content-Type": "text/html"})

    for flavor in ("azure", "openai"):
        with hostile(echo) as endpoint, caplog.at_level(logging.DEBUG):
            with pytest.raises(EvalsServerError) as info:
                make_client(settings(endpoint, flavor)).get_run("eval_1", "evalrun_1")
            assert endpoint.count() == FAST.max_attempts and all(sees_key(r) for r in endpoint.requests)
        assert KEY not in str(info.value) and KEY not in repr(info.value)
        assert KEY not in caplog.text
        assert "Evals API call failed" in caplog.text  # the retry warnings were written, without the key
        caplog.clear()

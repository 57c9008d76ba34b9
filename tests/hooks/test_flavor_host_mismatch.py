"""A well-known host with the other service's flavor fails when the connection is read, naming ``flavor``.

Before, an Azure endpoint left at the default flavor ``openai`` was called as ``<endpoint>/v1/evals`` and the
task log showed only a 404; ``api.openai.com`` with flavor ``azure`` got ``/openai/v1`` appended the same way.
"""

from __future__ import annotations

import json

import pytest

from airflow_provider_aoai_evals.api.errors import EvalsConfigError
from airflow_provider_aoai_evals.hooks.evals import EvalsHook

KEY = "sk-flavor-canary-7a1e"
pytestmark = pytest.mark.compat

AZURE_HOSTS = [
    "my-resource.openai.azure.com",
    "my-resource.cognitiveservices.azure.com",
    "my-project.services.ai.azure.com",
]


def uri(host: str, query: str = "") -> str:
    return f"aoai-evals://:{KEY}@{host}{query}"


def json_form(host: str, **extra: str) -> str:
    conn: dict[str, object] = {"conn_type": "aoai_evals", "host": f"https://{host}", "password": KEY}
    if extra:
        conn["extra"] = extra
    return json.dumps(conn)


def config_error(monkeypatch: pytest.MonkeyPatch, value: str) -> EvalsConfigError:
    monkeypatch.setenv("AIRFLOW_CONN_AOAI_FLAVOR", value)
    hook = EvalsHook("aoai_flavor")
    with pytest.raises(EvalsConfigError) as info:
        hook.get_conn()  # the settings are checked before a client (or any request) exists
    ok, message = hook.test_connection()  # what the connection form's Test button shows
    assert not ok and "flavor" in message
    assert KEY not in str(info.value)
    return info.value


@pytest.mark.parametrize("host", AZURE_HOSTS)
@pytest.mark.parametrize("form", ["uri", "uri_explicit", "json", "json_explicit"])
def test_azure_host_with_openai_flavor(monkeypatch: pytest.MonkeyPatch, host: str, form: str) -> None:
    value = {
        "uri": uri(host),
        "uri_explicit": uri(host, "?flavor=openai"),
        "json": json_form(host),
        "json_explicit": json_form(host, flavor="openai"),
    }[form]
    error = config_error(monkeypatch, value)
    assert error.parameter == "flavor"
    text = str(error)
    assert host in text and "Azure" in text and f"https://{host}/v1" in text  # where it would have gone
    assert "'azure'" in text and "?flavor=azure" in text  # what to set, in both forms
    assert ("no flavor extra" in text) == (form in ("uri", "json"))


@pytest.mark.parametrize("form", ["uri", "json"])
def test_openai_host_with_azure_flavor(monkeypatch: pytest.MonkeyPatch, form: str) -> None:
    value = (
        uri("api.openai.com/v1", "?flavor=azure")
        if form == "uri"
        else json_form("api.openai.com/v1", flavor="azure")
    )
    error = config_error(monkeypatch, value)
    assert error.parameter == "flavor"
    text = str(error)
    assert "api.openai.com" in text and "'openai'" in text and "https://<resource>.openai.azure.com" in text


@pytest.mark.parametrize(
    ("value", "api_root"),
    [
        # Gateways and proxies in front of either service have their own names: never second-guessed.
        (uri("gateway.internal:8443/openai/v1"), "https://gateway.internal:8443/openai/v1"),
        (uri("gateway.internal", "?flavor=azure"), "https://gateway.internal/openai/v1"),
        (
            json_form("my-resource.openai.azure.com", flavor="azure"),
            "https://my-resource.openai.azure.com/openai/v1",
        ),
        (
            uri("my-project.services.ai.azure.com", "?flavor=azure"),
            "https://my-project.services.ai.azure.com/openai/v1",
        ),
        (uri("api.openai.com/v1"), "https://api.openai.com/v1"),
        (json_form("api.openai.com/v1", flavor="openai"), "https://api.openai.com/v1"),
    ],
)
def test_matching_and_unknown_hosts_pass(monkeypatch: pytest.MonkeyPatch, value: str, api_root: str) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_AOAI_FLAVOR", value)
    assert EvalsHook("aoai_flavor").get_settings().api_root == api_root

"""How host, schema (URI path), port and extras combine: the rules are pure, tested on plain values."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from airflow_provider_aoai_evals.api.auth import ApiKeyAuth, EntraTokenAuth
from airflow_provider_aoai_evals.api.errors import EvalsConfigError
from airflow_provider_aoai_evals.hooks.connection_settings import combine_base_url, settings_from_connection


@dataclass
class Conn:
    host: str | None = None
    schema: str | None = None
    port: int | None = None
    password: str | None = "sk-test"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def extra_dejson(self) -> dict[str, Any]:
        return self.extra


@pytest.mark.parametrize(
    ("host", "schema", "port", "scheme", "expected"),
    [
        (None, None, None, None, None),
        ("", "v1", None, None, None),
        ("api.openai.com", "v1", None, None, "https://api.openai.com/v1"),
        ("api.openai.com", None, None, None, "https://api.openai.com"),
        ("api.openai.com/v1", None, None, None, "https://api.openai.com/v1"),
        ("https://api.openai.com/v1", None, None, None, "https://api.openai.com/v1"),
        ("https://api.openai.com/v1/", "ignored", None, None, "https://api.openai.com/v1"),
        ("https://gw.example.com", "openai/v1", 8443, None, "https://gw.example.com:8443/openai/v1"),
        ("https://gw.example.com:9443", None, 8443, None, "https://gw.example.com:9443"),
        ("127.0.0.1", "v1", 8080, "http", "http://127.0.0.1:8080/v1"),
        ("res.openai.azure.com", None, None, None, "https://res.openai.azure.com"),
        ("https://res.openai.azure.com/", None, None, None, "https://res.openai.azure.com"),
    ],
)
def test_combine_base_url(
    host: str | None, schema: str | None, port: int | None, scheme: str | None, expected: str | None
) -> None:
    assert combine_base_url(host, schema, port, scheme) == expected


@pytest.mark.parametrize(
    ("conn", "api_root"),
    [
        (Conn(), "https://api.openai.com/v1"),
        (Conn(host="api.openai.com"), "https://api.openai.com/v1"),
        (Conn(host="api.openai.com", schema="v1"), "https://api.openai.com/v1"),
        (Conn(host="https://proxy.corp/openai/v1"), "https://proxy.corp/openai/v1"),
        (
            Conn(host="res.openai.azure.com", extra={"flavor": "azure"}),
            "https://res.openai.azure.com/openai/v1",
        ),
        (
            Conn(host="https://res.services.ai.azure.com/openai/v1", extra={"flavor": "azure"}),
            "https://res.services.ai.azure.com/openai/v1",
        ),
        (Conn(host="localhost", port=5000, extra={"scheme": "http"}), "http://localhost:5000/v1"),
    ],
)
def test_api_root(conn: Conn, api_root: str) -> None:
    assert settings_from_connection(conn).api_root == api_root


def test_openai_auth_and_headers() -> None:
    settings = settings_from_connection(
        Conn(
            password="sk-x",
            extra={"organization": "org-1", "project": "proj-1", "connect_timeout": "3", "read_timeout": 7},
        )
    )
    assert isinstance(settings.auth, ApiKeyAuth) and settings.auth.headers() == {
        "Authorization": "Bearer sk-x"
    }
    assert settings.default_headers()["OpenAI-Organization"] == "org-1"
    assert settings.default_headers()["OpenAI-Project"] == "proj-1"
    assert (settings.connect_timeout, settings.read_timeout) == (3.0, 7.0)


def test_azure_api_key_and_version() -> None:
    settings = settings_from_connection(
        Conn(
            host="r.openai.azure.com",
            password="k",
            extra={
                "flavor": "azure",
                "api_version": "preview",
                "proxy": "http://proxy:3128",
                "ca_bundle": "/etc/ca.pem",
            },
        )
    )
    assert settings.auth.headers() == {"api-key": "k"}
    assert (
        settings.api_version == "preview"
        and settings.proxy == "http://proxy:3128"
        and settings.ca_bundle == "/etc/ca.pem"
    )


def test_form_blank_strings_mean_unset() -> None:
    settings = settings_from_connection(
        Conn(
            host="r.openai.azure.com",
            extra={"flavor": "azure", "api_version": "", "proxy": " ", "connect_timeout": ""},
        )
    )
    assert settings.api_version is None and settings.proxy is None and settings.connect_timeout == 10.0


def test_entra_service_principal_and_shared_cache() -> None:
    extra = {
        "flavor": "azure",
        "auth_method": "entra_id",
        "tenant_id": "t",
        "client_id": "c",
        "client_secret": "s3cr3t-value",
    }
    first = settings_from_connection(Conn(host="r.openai.azure.com", password=None, extra=extra))
    second = settings_from_connection(Conn(host="r.openai.azure.com", password=None, extra=dict(extra)))
    assert (
        isinstance(first.auth, EntraTokenAuth) and first.auth is second.auth
    )  # one token cache per identity
    assert first.auth.scope == "https://cognitiveservices.azure.com/.default"
    assert "s3cr3t-value" not in repr(first)
    sovereign = settings_from_connection(
        Conn(
            host="r.openai.azure.us",
            password=None,
            extra={**extra, "entra_scope": "https://cognitiveservices.azure.us/.default"},
        )
    )
    assert sovereign.auth.scope == "https://cognitiveservices.azure.us/.default"  # type: ignore[attr-defined]


def test_entra_default_credential_needs_no_secret() -> None:
    extra = {"flavor": "azure", "auth_method": "entra_id", "use_default_credential": "true"}
    assert isinstance(
        settings_from_connection(Conn(host="r.openai.azure.com", password=None, extra=extra)).auth,
        EntraTokenAuth,
    )


@pytest.mark.parametrize(
    ("conn", "parameter"),
    [
        (Conn(extra={"flavor": "gemini"}), "flavor"),
        (Conn(host=None, extra={"flavor": "azure"}), "host"),
        (Conn(password=None), "api_key"),
        (Conn(password=""), "api_key"),
        (Conn(host="r.openai.azure.com", password=None, extra={"flavor": "azure"}), "api_key"),
        (Conn(host="http://api.example.com"), "host"),
        (Conn(host="example.com", extra={"scheme": "http"}), "host"),
        (Conn(host="example.com", extra={"scheme": "ftp"}), "scheme"),
        (Conn(extra={"connect_timeout": "soon"}), "connect_timeout"),
        (Conn(extra={"read_timeout": -1}), "read_timeout"),
        (Conn(host="r.openai.azure.com", extra={"flavor": "azure", "auth_method": "aad"}), "auth_method"),
        (
            Conn(
                host="r.openai.azure.com",
                extra={"flavor": "azure", "auth_method": "entra_id", "client_id": "c"},
            ),
            "tenant_id",
        ),
        (
            Conn(
                host="r.openai.azure.com",
                extra={"flavor": "azure", "auth_method": "entra_id", "use_default_credential": "maybe"},
            ),
            "use_default_credential",
        ),
        (
            Conn(host="r.openai.azure.com", extra={"flavor": "azure", "api_version": "2024-10-21"}),
            "api_version",
        ),
        (Conn(extra={"api_version": "v1"}), "api_version"),
        (Conn(host="r.openai.azure.com", extra={"flavor": "azure", "organization": "org"}), "organization"),
    ],
)
def test_bad_connections_name_the_field(conn: Conn, parameter: str) -> None:
    with pytest.raises(EvalsConfigError) as info:
        settings_from_connection(conn)
    assert info.value.parameter == parameter
    assert "sk-test" not in str(info.value)

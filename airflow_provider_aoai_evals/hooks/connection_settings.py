"""Airflow connection fields -> ``ClientSettings``: how host, schema, port and extras combine.

Kept apart from the hook class (and free of Airflow imports) so the rules can be tested on plain values
and read in one place. The rules, also in the README:

* ``host`` may be a full URL (``https://api.openai.com/v1``); without a scheme it means https (``http``
  only through extra ``scheme`` and only to a loopback host, for test servers).
* A URI's path lands in Airflow's ``schema`` (``aoai-evals://:KEY@api.openai.com/v1`` gives host
  ``api.openai.com``, schema ``v1``); it becomes the base path when the host has none. ``port`` is kept.
* OpenAI: empty host means ``https://api.openai.com/v1``; a host with no path gets ``/v1``.
  Azure: host is the resource endpoint; the client appends ``/openai/v1``.
* A host only one of the two services answers on (``*.openai.azure.com``, ``api.openai.com``...) must come
  with that service's flavor; any other host (a gateway, a proxy) is taken as the flavor says.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from airflow_provider_aoai_evals.api import shared_state
from airflow_provider_aoai_evals.api.auth import DEFAULT_ENTRA_SCOPE, ApiKeyAuth, AuthProvider, EntraTokenAuth
from airflow_provider_aoai_evals.api.errors import EvalsConfigError
from airflow_provider_aoai_evals.api.retry import RetryPolicy
from airflow_provider_aoai_evals.api.routes import validate_flavor
from airflow_provider_aoai_evals.api.settings import ClientSettings, resolve_api_root

#: Hostname endings of Azure's own endpoints for the Evals API (Azure OpenAI, AI Services, AI Foundry; the
#: public, US Government and China clouds). Only these are checked, so a gateway under any other name works.
AZURE_HOST_SUFFIXES = (
    ".openai.azure.com",
    ".cognitiveservices.azure.com",
    ".services.ai.azure.com",
    ".openai.azure.us",
    ".cognitiveservices.azure.us",
    ".openai.azure.cn",
    ".cognitiveservices.azure.cn",
)
OPENAI_HOSTS = frozenset({"api.openai.com"})


class ConnectionLike(Protocol):
    """The attributes of ``airflow.sdk.Connection`` this module reads."""

    host: str | None
    schema: str | None
    port: int | None
    password: str | None

    @property
    def extra_dejson(self) -> dict[str, Any]: ...


def _text(extra: Mapping[str, Any], key: str) -> str | None:
    """An extra as text; '' (an untouched form field) and None both mean unset."""
    value = extra.get(key)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _number(extra: Mapping[str, Any], key: str) -> float | None:
    text = _text(extra, key)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise EvalsConfigError(key, f"{text!r} is not a number of seconds") from None
    if value <= 0:
        raise EvalsConfigError(key, f"must be positive, got {value}")
    return value


def _flag(extra: Mapping[str, Any], key: str) -> bool:
    value = extra.get(key)
    if isinstance(value, bool):
        return value
    text = (_text(extra, key) or "false").lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise EvalsConfigError(key, f"{value!r} is not a boolean (true/false)")


def combine_base_url(
    host: str | None, schema: str | None, port: int | None, scheme: str | None
) -> str | None:
    """One base URL from Airflow's host, schema (URI path) and port. None when no host is set."""
    host = (host or "").strip()
    if not host:
        return None
    if scheme not in (None, "http", "https"):
        raise EvalsConfigError("scheme", f"{scheme!r} must be 'https' or 'http'")
    if "://" in host:
        parts = urlsplit(host)
        if scheme and scheme != parts.scheme:
            raise EvalsConfigError("scheme", f"conflicts with the scheme in host {host!r}")
        url_scheme, netloc, path = parts.scheme, parts.netloc, parts.path
    else:
        url_scheme = scheme or "https"
        netloc, _, rest = host.partition("/")
        path = "/" + rest if rest else ""
    if port and ":" not in netloc.rsplit("]", 1)[-1]:
        netloc = f"{netloc}:{int(port)}"
    if schema and schema.strip("/") and path in ("", "/"):
        path = "/" + schema.strip("/")
    return urlunsplit((url_scheme, netloc, path.rstrip("/"), "", ""))


def check_flavor_matches_host(flavor: str, base_url: str | None, *, flavor_given: bool) -> None:
    """Refuse a well-known host paired with the other service's flavor.

    The wrong flavor builds a wrong URL (``<azure endpoint>/v1/evals``, ``api.openai.com/v1/openai/v1``) that
    the service answers with a bare 404, which says nothing about the connection; so fail here, naming the
    extra to set, before any request.
    """
    if not base_url:
        return
    host = (urlsplit(base_url).hostname or "").lower().rstrip(".")
    if flavor == "openai" and host.endswith(AZURE_HOST_SUFFIXES):
        why = (
            "the connection's flavor extra is 'openai'"
            if flavor_given
            else ("the connection has no flavor extra, which means 'openai'")
        )
        raise EvalsConfigError(
            "flavor",
            f"host {host} is an Azure endpoint, but {why}: requests would go to "
            f"{resolve_api_root('openai', base_url)}/evals and fail with 404. Set the extra flavor to 'azure' "
            '(URI form: ?flavor=azure; JSON form: "extra": {"flavor": "azure"})',
        )
    if flavor == "azure" and host in OPENAI_HOSTS:
        raise EvalsConfigError(
            "flavor",
            f"host {host} is OpenAI's API, but the connection's flavor extra is 'azure': requests would go "
            f"to {resolve_api_root('azure', base_url)}/evals and fail with 404. For OpenAI set the extra "
            "flavor to 'openai' (or remove it); for Azure OpenAI set host to your resource endpoint, "
            "https://<resource>.openai.azure.com",
        )


# Entra credentials are cached per process and identity, so every hook (one per trigger) for the same
# identity shares one token cache instead of fetching a token each. The key hashes the secret; it never
# holds it.
_ENTRA_AUTH = shared_state.ENTRA_AUTH
_ENTRA_LOCK = shared_state.ENTRA_LOCK


def _azure_identity_missing() -> EvalsConfigError:
    return EvalsConfigError(
        "auth_method",
        "entra_id needs azure-identity: pip install 'airflow-provider-aoai-evals[azure]'",
    )


def _entra_factories(
    tenant_id: str | None, client_id: str | None, client_secret: str | None, use_default: bool
) -> tuple[Callable[[], Any], Callable[[], Any]]:
    if not use_default and not (tenant_id and client_id and client_secret):
        missing = [
            n
            for n, v in (("tenant_id", tenant_id), ("client_id", client_id), ("client_secret", client_secret))
            if not v
        ]
        raise EvalsConfigError(
            missing[0],
            f"Entra ID service principal needs tenant_id, client_id and client_secret (missing: {', '.join(missing)}); "
            "or set use_default_credential",
        )

    def sync_factory() -> Any:
        try:
            from azure.identity import ClientSecretCredential, DefaultAzureCredential
        except ImportError:
            raise _azure_identity_missing() from None
        if use_default:
            return (
                DefaultAzureCredential(managed_identity_client_id=client_id)
                if client_id
                else DefaultAzureCredential()
            )
        return ClientSecretCredential(tenant_id, client_id, client_secret)  # type: ignore[arg-type]

    def async_factory() -> Any:
        try:
            from azure.identity.aio import ClientSecretCredential, DefaultAzureCredential
        except ImportError:
            raise _azure_identity_missing() from None
        if use_default:
            return (
                DefaultAzureCredential(managed_identity_client_id=client_id)
                if client_id
                else DefaultAzureCredential()
            )
        return ClientSecretCredential(tenant_id, client_id, client_secret)  # type: ignore[arg-type]

    return sync_factory, async_factory


def auth_from_connection(flavor: str, password: str | None, extra: Mapping[str, Any]) -> AuthProvider:
    """The credential the connection describes: OpenAI bearer key, Azure api-key, or Azure Entra ID."""
    if flavor == "openai":
        return ApiKeyAuth(password or "", header="bearer")
    method = _text(extra, "auth_method") or "api_key"
    if method == "api_key":
        return ApiKeyAuth(password or "", header="api-key")
    if method != "entra_id":
        raise EvalsConfigError("auth_method", f"{method!r} must be 'api_key' or 'entra_id'")
    tenant_id, client_id = _text(extra, "tenant_id"), _text(extra, "client_id")
    client_secret = _text(extra, "client_secret")
    use_default = _flag(extra, "use_default_credential")
    scope = _text(extra, "entra_scope") or DEFAULT_ENTRA_SCOPE
    key = (
        tenant_id or "",
        client_id or "",
        hashlib.sha256((client_secret or "").encode()).hexdigest(),
        str(use_default),
        scope,
    )
    with _ENTRA_LOCK:
        auth = _ENTRA_AUTH.get(key)
        if auth is None:
            sync_factory, async_factory = _entra_factories(tenant_id, client_id, client_secret, use_default)
            auth = _ENTRA_AUTH[key] = EntraTokenAuth(
                sync_credential=sync_factory, async_credential=async_factory, scope=scope
            )
        return auth


def settings_from_connection(conn: ConnectionLike, *, retry: RetryPolicy | None = None) -> ClientSettings:
    """Validate a connection and build the client settings; errors name the field to fix."""
    extra = conn.extra_dejson or {}
    flavor = validate_flavor(_text(extra, "flavor") or "openai")
    base_url = combine_base_url(conn.host, conn.schema, conn.port, _text(extra, "scheme"))
    check_flavor_matches_host(flavor, base_url, flavor_given=_text(extra, "flavor") is not None)
    options: dict[str, Any] = {
        "api_version": _text(extra, "api_version"),
        "organization": _text(extra, "organization"),
        "project": _text(extra, "project"),
        "proxy": _text(extra, "proxy"),
        "ca_bundle": _text(extra, "ca_bundle"),
    }
    for name in ("connect_timeout", "read_timeout"):
        value = _number(extra, name)
        if value is not None:
            options[name] = value
    if retry is not None:
        options["retry"] = retry
    auth = auth_from_connection(flavor, conn.password, extra)
    return ClientSettings.build(flavor=flavor, base_url=base_url, auth=auth, **options)

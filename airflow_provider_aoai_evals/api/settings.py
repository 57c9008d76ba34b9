"""Everything a client needs to reach one Evals endpoint, validated once when it is built.

The hook turns an Airflow connection into these settings; tests and non-Airflow code build them directly.
Validation happens here so that a wrong endpoint, flavor or version fails before any request, with the
name of the setting to fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

from airflow_provider_aoai_evals import __version__
from airflow_provider_aoai_evals.api.auth import AuthProvider
from airflow_provider_aoai_evals.api.defaults import DEFAULT_CONNECT_TIMEOUT, DEFAULT_READ_TIMEOUT
from airflow_provider_aoai_evals.api.errors import EvalsConfigError
from airflow_provider_aoai_evals.api.retry import RetryPolicy
from airflow_provider_aoai_evals.api.routes import (
    AZURE_API_SUFFIX,
    Flavor,
    validate_api_version,
    validate_flavor,
)
from airflow_provider_aoai_evals.api.validation import validate_base_url

OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"
USER_AGENT = f"airflow-provider-aoai-evals/{__version__}"


def resolve_api_root(flavor: Flavor, base_url: str | None) -> str:
    """The URL under which ``/evals`` lives.

    OpenAI: the base URL as given (empty means ``https://api.openai.com/v1``; a bare host gets ``/v1``).
    Azure: the resource endpoint plus ``/openai/v1`` (kept as is when the user already wrote it).
    """
    if flavor == "openai":
        url = validate_base_url("host", base_url or OPENAI_DEFAULT_BASE_URL)
        return url + "/v1" if urlsplit(url).path in ("", "/") else url
    if not base_url:
        raise EvalsConfigError(
            "host",
            "is missing: set it to the Azure OpenAI endpoint, e.g. https://<resource>.openai.azure.com",
        )
    url = validate_base_url("host", base_url)
    return url if url.endswith(AZURE_API_SUFFIX) else url + AZURE_API_SUFFIX


@dataclass(frozen=True, repr=False)
class ClientSettings:
    """Connection settings for one endpoint. ``auth`` holds the only secret, and its repr hides it."""

    api_root: str
    flavor: Flavor
    auth: AuthProvider
    api_version: str | None = None
    organization: str | None = None
    project: str | None = None
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    proxy: str | None = None
    ca_bundle: str | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: Upper bound of pooled connections per process and endpoint (the async pool is shared by all triggers).
    max_connections: int = 100

    def __post_init__(self) -> None:
        validate_flavor(self.flavor)
        validate_base_url("host", self.api_root)
        validate_api_version(self.flavor, self.api_version)
        if self.flavor == "azure" and (self.organization or self.project):
            raise EvalsConfigError(
                "organization", "organization and project are OpenAI settings, not Azure ones"
            )
        for name in ("connect_timeout", "read_timeout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value <= 0:
                raise EvalsConfigError(name, f"must be a positive number of seconds, got {value!r}")
        if self.max_connections < 1:
            raise EvalsConfigError("max_connections", "must be at least 1")
        proxy = urlsplit(self.proxy) if self.proxy else None
        if proxy is not None and (proxy.scheme not in ("http", "https") or not proxy.hostname):
            raise EvalsConfigError("proxy", f"{self.proxy!r} is not an http(s) proxy URL")

    @classmethod
    def build(
        cls,
        *,
        flavor: str,
        base_url: str | None,
        auth: AuthProvider,
        **kwargs: object,
    ) -> ClientSettings:
        """Settings from a user-facing base URL (OpenAI) or endpoint (Azure)."""
        checked = validate_flavor(flavor)
        return cls(api_root=resolve_api_root(checked, base_url), flavor=checked, auth=auth, **kwargs)  # type: ignore[arg-type]

    def default_headers(self) -> dict[str, str]:
        """Headers every request carries besides auth and the route's own."""
        headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
        if self.organization:
            headers["OpenAI-Organization"] = self.organization
        if self.project:
            headers["OpenAI-Project"] = self.project
        return headers

    def pool_key(self) -> tuple[object, ...]:
        """What must match for two clients to share a connection pool. Holds no secret."""
        return (
            self.api_root,
            self.proxy,
            self.ca_bundle,
            self.connect_timeout,
            self.read_timeout,
            self.max_connections,
        )

    def __repr__(self) -> str:
        return (
            f"ClientSettings(flavor={self.flavor!r}, api_root={self.api_root!r}, auth={self.auth!r}, "
            f"api_version={self.api_version!r})"
        )

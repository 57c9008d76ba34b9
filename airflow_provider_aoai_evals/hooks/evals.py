"""EvalsHook: an Airflow connection of type ``aoai_evals`` -> an Evals API client.

The hook only translates and reports: how a connection's fields combine is in ``connection_settings``,
what the UI shows is in ``connection_form``, and how requests are made and retried is in the api layer.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from airflow.providers.common.compat.sdk import BaseHook

from airflow_provider_aoai_evals.api.client import AsyncEvalsClient, EvalsClient
from airflow_provider_aoai_evals.api.errors import (
    EvalsAPIError,
    EvalsAuthenticationError,
    EvalsBadRequestError,
    EvalsConfigError,
    EvalsConnectionError,
    EvalsNotFoundError,
    EvalsPermissionDeniedError,
)
from airflow_provider_aoai_evals.api.retry import RetryPolicy
from airflow_provider_aoai_evals.api.settings import ClientSettings
from airflow_provider_aoai_evals.hooks import connection_form
from airflow_provider_aoai_evals.hooks.connection_settings import settings_from_connection

#: test_connection must answer the UI quickly: one try, short timeouts.
_TEST_CONNECTION_RETRY = RetryPolicy(max_attempts=1)


class EvalsHook(BaseHook):
    """Connects to the OpenAI or Azure OpenAI Evals API.

    :param conn_id: an ``aoai_evals`` connection (default ``aoai_evals_default``).
    :param retry: the retry policy for transient faults; the default follows the official client.
    """

    conn_name_attr = "conn_id"
    default_conn_name = connection_form.DEFAULT_CONN_ID
    conn_type = connection_form.CONN_TYPE
    hook_name = connection_form.HOOK_NAME

    def __init__(
        self, conn_id: str = default_conn_name, *, retry: RetryPolicy | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.conn_id = conn_id
        self.retry = retry
        self._settings: ClientSettings | None = None

    # -- Airflow 3.1 reads the form from these; 3.2+ reads the same definitions from provider info ----------

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        return connection_form.connection_form_widgets()

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return connection_form.ui_field_behaviour()

    # -- settings and clients ------------------------------------------------------------------------------

    def get_settings(self) -> ClientSettings:
        """Read and validate the connection once; errors name the connection field to fix."""
        if self._settings is None:
            conn = self.get_connection(self.conn_id)
            self._settings = self._settings_for(conn)
        return self._settings

    async def aget_settings(self) -> ClientSettings:
        """As ``get_settings``, reading the connection without blocking the event loop (for triggers)."""
        if self._settings is None:
            conn = await self.aget_connection(self.conn_id)
            self._settings = self._settings_for(conn)
        return self._settings

    def _settings_for(self, conn: Any) -> ClientSettings:
        try:
            return settings_from_connection(conn, retry=self.retry)
        except EvalsConfigError as exc:
            raise EvalsConfigError(exc.parameter, f"{exc.problem} (connection {self.conn_id!r})") from None

    @cached_property
    def client(self) -> EvalsClient:
        return EvalsClient(self.get_settings())

    def get_conn(self) -> EvalsClient:
        """The blocking client (one per hook; it reuses its connections)."""
        return self.client

    async def get_async_conn(self, settings: ClientSettings | None = None) -> AsyncEvalsClient:
        """The non-blocking client; use it as ``async with await hook.get_async_conn() as client``.

        Every async client comes from here, and it is the event loop's one client for those settings
        (``AsyncEvalsClient.shared``): a triggerer runs thousands of waits, and a client each would keep its
        own long-lived objects that every full garbage collection walks.

        :param settings: this connection's settings when the caller already read them (a trigger's read,
            shared by the waits starting close together); read now when omitted.
        """
        if settings is None:
            settings = await self.aget_settings()
        return AsyncEvalsClient.shared(settings)

    # -- test connection -----------------------------------------------------------------------------------

    def test_connection(self) -> tuple[bool, str]:
        """One cheap real call (list one eval); on failure, say what to change in words a person can act on."""
        try:
            settings = self.get_settings()
        except EvalsConfigError as exc:
            return False, f"The connection settings are not valid: {exc}"
        quick = ClientSettings(
            **{
                **settings.__dict__,
                "retry": _TEST_CONNECTION_RETRY,
                "read_timeout": min(settings.read_timeout, 15.0),
            }
        )
        try:
            with EvalsClient(quick) as client:
                next(iter(client.list_evals(limit=1)), None)
        except EvalsAPIError as exc:
            return False, explain_failure(settings, exc)
        return True, f"Connected: the {settings.flavor} Evals API at {settings.api_root} answered."


def explain_failure(settings: ClientSettings, exc: EvalsAPIError) -> str:
    """Turn a failed test call into advice. Always ends with the status, request id and the API's message."""
    detail = f"[{exc}]"
    root = settings.api_root
    if isinstance(exc, EvalsAuthenticationError):
        if settings.flavor == "azure":
            hint = "Azure rejected the credentials: check the API key of this resource, or the Entra ID settings."
        else:
            hint = "OpenAI rejected the API key: check the connection's Password (API key), organization and project."
        return f"{hint} {detail}"
    if isinstance(exc, EvalsPermissionDeniedError):
        return f"The credentials are valid but may not use the Evals API (HTTP 403): check the key's permissions or role. {detail}"
    if isinstance(exc, EvalsBadRequestError) and "aoai-evals" in exc.message.lower():
        return (
            "The endpoint wants the 'aoai-evals: preview' header: it looks like an Azure OpenAI resource, so set the "
            f"connection's flavor to 'azure'. {detail}"
        )
    if isinstance(exc, EvalsBadRequestError) and "api-version" in exc.message.lower():
        return f"The endpoint does not accept the API version: set api_version to 'v1', 'preview' or leave it empty. {detail}"
    if isinstance(exc, EvalsNotFoundError):
        return (
            f"Nothing answers at {root}/evals (wrong endpoint?). OpenAI: host https://api.openai.com/v1. "
            "Azure: host https://<resource>.openai.azure.com and flavor 'azure' (the provider adds /openai/v1). "
            f"{detail}"
        )
    if isinstance(exc, EvalsConnectionError):
        return f"Could not reach {root}: check the host, port, proxy and the network. {detail}"
    if exc.transient:
        return f"The service is reachable but failing or throttling right now; try again later. {detail}"
    return f"The Evals API refused the test call. {detail}"

"""The ``aoai_evals`` connection type: its fields, declared once.

Everything the Airflow UI shows for this connection type comes from :data:`CONN_FIELDS` and
:data:`STANDARD_FIELDS` below:

* Airflow 3.2+ reads ``conn-fields`` and ``ui-field-behaviour`` from the provider info
  (:func:`conn_fields` and :func:`provider_ui_field_behaviour`, used by ``get_provider_info()``).
* Airflow 3.1 reads the hook's ``get_connection_form_widgets()`` / ``get_ui_field_behaviour()``
  classmethods, which return :func:`connection_form_widgets` and :func:`ui_field_behaviour`.

Connection ``extra`` keys (the hook reads exactly these names, listed in :data:`EXTRA_KEYS`):

==========================  ======================================================================
``flavor``                  ``openai`` (default) or ``azure``
``api_version``             Azure only: ``v1`` or ``preview``, sent as the ``api-version`` query; empty = none
``organization``            OpenAI only: ``OpenAI-Organization`` header
``project``                 OpenAI only: ``OpenAI-Project`` header
``auth_method``             Azure only: ``api_key`` (default; the connection password) or ``entra_id``
``tenant_id``               Azure Entra ID service principal: tenant id
``client_id``               Azure Entra ID service principal (or user-assigned managed identity): client id
``client_secret``           Azure Entra ID service principal: client secret (sensitive)
``use_default_credential``  Azure Entra ID: use ``azure.identity.DefaultAzureCredential`` instead of a
                            service principal
``entra_scope``             Azure Entra ID: token scope, default :data:`DEFAULT_TOKEN_SCOPE`; change it
                            for sovereign clouds
``connect_timeout``         seconds, default :data:`DEFAULT_CONNECT_TIMEOUT`
``read_timeout``            seconds, default :data:`DEFAULT_READ_TIMEOUT`
``proxy``                   ``http(s)://`` proxy URL for all requests
``ca_bundle``               path of a CA bundle (PEM) to verify the server's TLS certificate
``scheme``                  not in the form: ``https`` (default) or ``http``; ``http`` is allowed only
                            for a loopback host (tests against ``FakeEvalsServer``)
==========================  ======================================================================

Values can arrive as strings (URI form ``?connect_timeout=5&use_default_credential=true``, and Airflow
3.1's form stores text fields as strings) or as JSON numbers/booleans (JSON form, Airflow 3.2+ form):
the hook must accept both. An empty string means "not set".

Standard fields: ``host`` is the base URL or endpoint (a full URL is allowed; no scheme means https);
``password`` is the API key; ``schema`` (a URI's path) is appended to the host as a base path and
``port`` is kept; ``login`` is not used.

This module imports nothing from Airflow at import time, so provider discovery stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from airflow_provider_aoai_evals.api.defaults import (
    AZURE_API_VERSIONS,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_ENTRA_SCOPE,
    DEFAULT_READ_TIMEOUT,
    FLAVORS,
)

CONN_TYPE = "aoai_evals"
HOOK_NAME = "OpenAI / Azure OpenAI Evals"
DEFAULT_CONN_ID = "aoai_evals_default"
HOOK_CLASS_NAME = "airflow_provider_aoai_evals.hooks.evals.EvalsHook"

AZURE_AUTH_METHODS = ("api_key", "entra_id")
DEFAULT_TOKEN_SCOPE = DEFAULT_ENTRA_SCOPE

FieldType = Literal["string", "number", "boolean"]
JsonScalar = str | int | float | bool | None


@dataclass(frozen=True)
class ConnField:
    """One extra field of the connection form (stored in the connection's ``extra`` under ``key``)."""

    key: str
    label: str
    type: FieldType
    description: str
    default: JsonScalar = None
    #: Allowed values. A field with choices but no default may also be left empty.
    choices: tuple[str, ...] = ()
    #: Masked in the UI and in logs.
    sensitive: bool = False
    placeholder: str | None = None

    def json_schema(self) -> dict[str, Any]:
        """The field's JSON schema, as Airflow 3.2+ ``conn-fields`` expect it (always nullable)."""
        schema: dict[str, Any] = {"type": [self.type, "null"]}
        if self.choices:
            schema["enum"] = list(self.choices) if self.default is not None else [None, *self.choices]
            if self.default is None:  # the UI labels the empty choice with its JSON, "null", unless told
                schema["values_display"] = {"null": "(none)", **{c: c for c in self.choices}}
        if self.default is not None:
            schema["default"] = self.default
        if self.sensitive:
            schema["format"] = "password"
        return schema


_AZ = " (Azure only)"
_OAI = " (OpenAI only)"

#: The extra fields shown in the connection form, in display order.
CONN_FIELDS: tuple[ConnField, ...] = (
    ConnField(
        "flavor",
        "Flavor",
        "string",
        "openai: the OpenAI platform (or an OpenAI-compatible base URL). "
        "azure: an Azure OpenAI / AI Foundry resource, v1 API (/openai/v1).",
        default="openai",
        choices=FLAVORS,
    ),
    ConnField(
        "api_version",
        "API version" + _AZ,
        "string",
        "Optional api-version query parameter of the Azure v1 API: v1 or preview. Leave empty for none.",
        choices=AZURE_API_VERSIONS,
    ),
    ConnField("organization", "Organization" + _OAI, "string", "Sent as the OpenAI-Organization header."),
    ConnField("project", "Project" + _OAI, "string", "Sent as the OpenAI-Project header."),
    ConnField(
        "auth_method",
        "Auth method" + _AZ,
        "string",
        "api_key: the API key field, sent as the api-key header. "
        "entra_id: a Microsoft Entra ID bearer token (service principal below, or DefaultAzureCredential).",
        default="api_key",
        choices=AZURE_AUTH_METHODS,
    ),
    ConnField("tenant_id", "Entra tenant ID" + _AZ, "string", "Service principal: directory (tenant) id."),
    ConnField(
        "client_id",
        "Entra client ID" + _AZ,
        "string",
        "Service principal: application (client) id. With DefaultAzureCredential: the client id of a "
        "user-assigned managed identity (optional).",
    ),
    ConnField(
        "client_secret",
        "Entra client secret" + _AZ,
        "string",
        "Service principal: client secret.",
        sensitive=True,
    ),
    ConnField(
        "use_default_credential",
        "Use DefaultAzureCredential" + _AZ,
        "boolean",
        "Get the Entra ID token from azure-identity's DefaultAzureCredential (managed identity, "
        "workload identity, environment, Azure CLI...) instead of a service principal.",
        default=False,
    ),
    ConnField(
        "entra_scope",
        "Entra token scope" + _AZ,
        "string",
        "Scope of the Entra ID token. Change it only for sovereign clouds.",
        default=DEFAULT_TOKEN_SCOPE,
        placeholder=DEFAULT_TOKEN_SCOPE,
    ),
    ConnField(
        "connect_timeout",
        "Connect timeout (seconds)",
        "number",
        "Timeout for opening a connection.",
        default=DEFAULT_CONNECT_TIMEOUT,
    ),
    ConnField(
        "read_timeout",
        "Read timeout (seconds)",
        "number",
        "Seconds to wait for a response: per read on a worker, per request in the triggerer.",
        default=DEFAULT_READ_TIMEOUT,
    ),
    ConnField(
        "proxy",
        "Proxy URL",
        "string",
        "http(s):// proxy for all requests.",
        placeholder="http://proxy.example.com:3128",
    ),
    ConnField(
        "ca_bundle",
        "CA bundle path",
        "string",
        "Path of a PEM CA bundle used to verify the server certificate (private CAs, TLS-inspecting proxies).",
        placeholder="/etc/ssl/certs/ca-certificates.crt",
    ),
)

#: Extra keys that are read by the hook but not shown as form fields.
HIDDEN_EXTRA_KEYS: tuple[str, ...] = ("scheme",)

#: Every extra key the hook reads.
EXTRA_KEYS: tuple[str, ...] = (*(f.key for f in CONN_FIELDS), *HIDDEN_EXTRA_KEYS)

#: Standard connection fields hidden from the form.
HIDDEN_STANDARD_FIELDS: tuple[str, ...] = ("login",)

#: Standard connection fields: field -> (label, placeholder).
STANDARD_FIELDS: dict[str, tuple[str, str]] = {
    "host": ("Base URL / Endpoint", "https://api.openai.com/v1 or https://<resource>.openai.azure.com"),
    "password": ("API key", "OpenAI API key, or the Azure resource key (auth method api_key)"),
    "schema": ("Base path (optional)", "Appended to the host, e.g. v1; usually empty when the host is a URL"),
    "port": ("Port (optional)", "Only for a non-default port"),
}


def conn_fields() -> dict[str, dict[str, Any]]:
    """``conn-fields`` of the provider info (Airflow 3.2+)."""
    return {
        f.key: {"label": f.label, "schema": f.json_schema(), "description": f.description}
        for f in CONN_FIELDS
    }


def _placeholders() -> dict[str, str]:
    placeholders = {name: placeholder for name, (_, placeholder) in STANDARD_FIELDS.items()}
    placeholders.update({f.key: f.placeholder for f in CONN_FIELDS if f.placeholder})
    return placeholders


def ui_field_behaviour() -> dict[str, Any]:
    """What the hook's ``get_ui_field_behaviour()`` returns (Airflow 3.1)."""
    return {
        "hidden_fields": list(HIDDEN_STANDARD_FIELDS),
        "relabeling": {name: label for name, (label, _) in STANDARD_FIELDS.items()},
        "placeholders": _placeholders(),
    }


def provider_ui_field_behaviour() -> dict[str, Any]:
    """``ui-field-behaviour`` of the provider info (Airflow 3.2+): the same, with kebab-case keys."""
    behaviour = ui_field_behaviour()
    return {
        "hidden-fields": behaviour["hidden_fields"],
        "relabeling": behaviour["relabeling"],
        "placeholders": behaviour["placeholders"],
    }


def connection_form_widgets() -> dict[str, Any]:
    """What the hook's ``get_connection_form_widgets()`` returns (Airflow 3.1's UI reads it).

    The WTForms / Flask-AppBuilder imports stay inside: Airflow 3.1 patches exactly these names
    (``wtforms.StringField``..., ``wtforms.validators.Optional`` / ``any_of``, ``flask_babel.lazy_gettext``,
    ``flask_appbuilder.fieldwidgets.BS3*``) to turn the widgets into JSON schema for its UI, and only
    ``StringField``, ``IntegerField``, ``PasswordField`` and ``BooleanField`` are accepted. Numbers
    (timeouts) therefore use a ``StringField``; the hook parses the text.
    """
    from flask_appbuilder.fieldwidgets import BS3PasswordFieldWidget, BS3TextFieldWidget
    from flask_babel import lazy_gettext
    from wtforms import BooleanField, PasswordField, StringField
    from wtforms.validators import Optional, any_of

    widgets: dict[str, Any] = {}
    for f in CONN_FIELDS:
        label = lazy_gettext(f.label)
        validators: list[Any] = [Optional()]
        if f.choices:
            validators.append(any_of(list(f.choices)))
        if f.type == "boolean":
            widgets[f.key] = BooleanField(label, description=f.description, default=bool(f.default))
        elif f.sensitive:
            widgets[f.key] = PasswordField(
                label, validators=validators, description=f.description, widget=BS3PasswordFieldWidget()
            )
        else:  # string and number
            widgets[f.key] = StringField(
                label,
                validators=validators,
                description=f.description,
                default=None if f.default is None else str(f.default),
                widget=BS3TextFieldWidget(),
            )
    return widgets

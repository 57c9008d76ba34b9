"""Provider registration and the ``aoai_evals`` connection form (one source: hooks/connection_form.py)."""

from __future__ import annotations

import importlib
import importlib.util
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import airflow
import jsonschema
import pytest

from airflow_provider_aoai_evals import __version__
from airflow_provider_aoai_evals.get_provider_info import PACKAGE_NAME, get_provider_info
from airflow_provider_aoai_evals.hooks import connection_form as cf

if TYPE_CHECKING:
    from collections.abc import Iterator

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "airflow_provider_aoai_evals"
AIRFLOW_DIR = Path(airflow.__file__).parent

DOCUMENTED_EXTRA_KEYS = {
    "flavor", "api_version", "organization", "project", "auth_method", "tenant_id", "client_id",
    "client_secret", "use_default_credential", "entra_scope", "connect_timeout", "read_timeout", "proxy",
    "ca_bundle", "scheme",
}  # fmt: skip
AZURE_ONLY = {"api_version", "auth_method", "tenant_id", "client_id", "client_secret", "use_default_credential",
              "entra_scope"}  # fmt: skip
OPENAI_ONLY = {"organization", "project"}


@pytest.fixture
def fresh_providers_manager() -> Iterator[None]:
    """Forget what ProvidersManager (a process-wide singleton) loaded before and after the test.

    Airflow 3.1 fills its form-field caches only once per process: a test that loads hooks first (without
    the UI's WTForms mocks) would otherwise leave the UI view of the form empty.
    """
    from airflow.providers_manager import ProvidersManager

    ProvidersManager()._cleanup()
    yield
    ProvidersManager()._cleanup()


def _conn_type_info() -> dict[str, Any]:
    (info,) = get_provider_info()["connection-types"]
    assert isinstance(info, dict)
    return info


@pytest.mark.compat
def test_provider_info_matches_installed_airflow_schema():
    schema = json.loads((AIRFLOW_DIR / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


@pytest.mark.compat
def test_ui_field_behaviour_matches_installed_airflow_schema():
    schema = json.loads((AIRFLOW_DIR / "customized_form_field_behaviours.schema.json").read_text())
    jsonschema.validate(cf.ui_field_behaviour(), schema)


def test_provider_info_basics():
    info = get_provider_info()
    assert info["package-name"] == PACKAGE_NAME == "airflow-provider-aoai-evals"
    assert info["versions"] == [__version__]
    conn = _conn_type_info()
    assert conn["connection-type"] == "aoai_evals"
    assert conn["hook-class-name"] == "airflow_provider_aoai_evals.hooks.evals.EvalsHook"
    assert conn["hook-name"] == "OpenAI / Azure OpenAI Evals"
    assert cf.DEFAULT_CONN_ID == "aoai_evals_default"


def test_the_provider_option_reaches_airflow_config_with_its_default():
    """Declared in provider info, so ``airflow config list`` shows it and ``conf`` has its default."""
    from airflow.configuration import conf

    from airflow_provider_aoai_evals.api.defaults import (
        DEFAULT_TRIGGER_CONNECTION_REUSE_SECONDS,
        TRIGGER_CONNECTION_REUSE_OPTION,
    )
    from airflow_provider_aoai_evals.hooks import settings_reuse

    section, key = TRIGGER_CONNECTION_REUSE_OPTION
    option = get_provider_info()["config"][section]["options"][key]
    assert float(option["default"]) == DEFAULT_TRIGGER_CONNECTION_REUSE_SECONDS == 30.0
    assert conf.getfloat(section, key) == 30.0 == settings_reuse.reuse_seconds()


def test_listed_modules_exist_and_every_module_is_listed():
    info = get_provider_info()
    listed = {m for section in ("hooks", "operators", "sensors", "triggers") for entry in info.get(section, [])
              for m in entry["python-modules"]}  # fmt: skip
    for module in listed:
        assert importlib.util.find_spec(module) is not None, module
    on_disk = {
        f"airflow_provider_aoai_evals.{path.parent.name}.{path.stem}"
        for section in ("operators", "sensors", "triggers")
        for path in (PACKAGE_DIR / section).glob("*.py")
        if not path.name.startswith("_")
    } | {"airflow_provider_aoai_evals.hooks.evals"}
    assert on_disk <= listed, f"add these modules to get_provider_info(): {sorted(on_disk - listed)}"


def test_conn_fields_are_documented_extra_keys():
    fields = _conn_type_info()["conn-fields"]
    assert set(fields) == DOCUMENTED_EXTRA_KEYS - {"scheme"}
    assert set(cf.EXTRA_KEYS) == DOCUMENTED_EXTRA_KEYS
    assert len(cf.EXTRA_KEYS) == len(set(cf.EXTRA_KEYS))
    for key in cf.EXTRA_KEYS:  # the module docstring is the hook author's reference
        assert f"``{key}``" in (cf.__doc__ or ""), key


@pytest.mark.parametrize("field", cf.CONN_FIELDS, ids=lambda f: f.key)
def test_conn_field_schema_is_valid_and_accepts_default_and_empty(field: cf.ConnField):
    entry = _conn_type_info()["conn-fields"][field.key]
    schema = entry["schema"]
    jsonschema.Draft7Validator.check_schema(schema)
    if not (field.choices and field.default is not None):
        jsonschema.validate(None, schema)  # optional: may be left empty
    if field.default is not None:
        jsonschema.validate(field.default, schema)
    for choice in field.choices:
        jsonschema.validate(choice, schema)
    assert entry["label"]
    assert entry["description"]
    if field.key in AZURE_ONLY:
        assert entry["label"].endswith("(Azure only)")
    elif field.key in OPENAI_ONLY:
        assert entry["label"].endswith("(OpenAI only)")
    else:
        assert "only)" not in entry["label"]
    assert (schema.get("format") == "password") == (field.key == "client_secret")


def test_enums_and_defaults():
    fields = _conn_type_info()["conn-fields"]
    assert fields["flavor"]["schema"]["enum"] == ["openai", "azure"]
    assert fields["flavor"]["schema"]["default"] == "openai"
    assert fields["api_version"]["schema"]["enum"] == [None, "v1", "preview"]
    assert fields["api_version"]["schema"]["values_display"]["null"] == "(none)"  # the UI would show "null"
    assert fields["auth_method"]["schema"]["enum"] == ["api_key", "entra_id"]
    assert fields["entra_scope"]["schema"]["default"] == "https://cognitiveservices.azure.com/.default"
    assert fields["use_default_credential"]["schema"]["type"] == ["boolean", "null"]
    assert fields["connect_timeout"]["schema"]["type"] == ["number", "null"]


def test_standard_fields_behaviour():
    behaviour = _conn_type_info()["ui-field-behaviour"]
    assert behaviour["hidden-fields"] == ["login"]
    assert behaviour["relabeling"]["host"] == "Base URL / Endpoint"
    assert behaviour["relabeling"]["password"] == "API key"
    assert "https://api.openai.com/v1" in behaviour["placeholders"]["host"]
    assert "https://<resource>.openai.azure.com" in behaviour["placeholders"]["host"]
    legacy = cf.ui_field_behaviour()
    assert legacy["hidden_fields"] == behaviour["hidden-fields"]
    assert legacy["relabeling"] == behaviour["relabeling"]
    assert legacy["placeholders"] == behaviour["placeholders"]


@pytest.mark.compat
@pytest.mark.usefixtures("fresh_providers_manager")
def test_provider_registered_with_providers_manager():
    from airflow.providers_manager import ProvidersManager

    pm = ProvidersManager()
    assert PACKAGE_NAME in pm.providers
    assert pm.providers[PACKAGE_NAME].version == __version__
    hook_info: Any  # HookInfo moved between 3.1 and 3.2
    try:  # Airflow 3.2+: hooks are the task runtime's business; ProvidersManager.hooks is deprecated
        from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime
    except ImportError:  # Airflow 3.1
        hook_info = pm.hooks["aoai_evals"]
    else:
        hook_info = ProvidersManagerTaskRuntime().hooks["aoai_evals"]
    assert hook_info is not None
    assert hook_info.hook_class_name == "airflow_provider_aoai_evals.hooks.evals.EvalsHook"
    assert hook_info.connection_id_attribute_name == "conn_id"


@pytest.mark.compat
@pytest.mark.usefixtures("fresh_providers_manager")
def test_connection_form_as_the_ui_sees_it():
    """What the UI's connection form gets: from provider info (3.2+) or the hook's methods (3.1)."""
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    HookMetaService.hook_meta_data.cache_clear()

    (meta,) = [m for m in HookMetaService.hook_meta_data() if m.connection_type == "aoai_evals"]
    assert meta.hook_name == "OpenAI / Azure OpenAI Evals"
    extra = meta.extra_fields or {}
    assert set(extra) == DOCUMENTED_EXTRA_KEYS - {"scheme"}
    assert extra["client_secret"]["schema"]["format"] == "password"
    assert extra["flavor"]["schema"]["title"] == "Flavor"
    assert extra["flavor"]["value"] == "openai"
    assert "openai" in extra["flavor"]["schema"]["enum"]
    assert extra["use_default_credential"]["schema"]["type"] == ["boolean", "null"]
    std = meta.standard_fields
    assert std is not None
    assert std.host is not None
    assert std.host.title == "Base URL / Endpoint"
    assert std.password is not None
    assert std.password.title == "API key"
    assert std.login is not None
    assert std.login.hidden


@pytest.mark.compat
def test_only_secret_fields_are_masked_by_airflow() -> None:
    """Airflow masks extras whose *name* looks sensitive (``token``, ``secret``...): a non-secret field named
    like that shows ``***`` in the UI (``token_scope`` did). Only the secret fields may match."""
    try:
        masker = importlib.import_module("airflow.sdk._shared.secrets_masker")
    except ImportError:  # Airflow 3.1
        masker = importlib.import_module("airflow.sdk.execution_time.secrets_masker")
    should_hide_value_for_key = masker.should_hide_value_for_key

    from airflow_provider_aoai_evals.hooks import connection_form

    masked = {name for name in connection_form.conn_fields() if should_hide_value_for_key(name)}
    # proxy is masked on purpose: a proxy URL may carry credentials (http://user:pass@proxy:3128).
    assert masked == {"client_secret", "proxy"}

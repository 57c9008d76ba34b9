"""Provider metadata, read by Airflow through the ``apache_airflow_provider`` entry point.

Lists only modules that exist; add an operator, sensor, trigger or link module here when it lands
(``tests/test_provider_info.py`` fails when one is missing). The connection form comes from
:mod:`airflow_provider_aoai_evals.hooks.connection_form`, its one source of truth.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_aoai_evals import __version__
from airflow_provider_aoai_evals.api.defaults import (
    DEFAULT_TRIGGER_CONNECTION_REUSE_SECONDS,
    TRIGGER_CONNECTION_REUSE_OPTION,
)
from airflow_provider_aoai_evals.hooks import connection_form
from airflow_provider_aoai_evals.ui import settings as ui_settings

PACKAGE_NAME = "airflow-provider-aoai-evals"
INTEGRATION_NAME = "OpenAI / Azure OpenAI Evals"

#: Provider-info section -> modules of this package that belong to it (only modules that exist).
MODULES: dict[str, list[str]] = {
    "operators": [
        "airflow_provider_aoai_evals.operators.eval_run",
        "airflow_provider_aoai_evals.operators.output_items",
        "airflow_provider_aoai_evals.operators.quality_gate",
        "airflow_provider_aoai_evals.operators.compare",
    ],
    "hooks": ["airflow_provider_aoai_evals.hooks.evals"],
    "sensors": ["airflow_provider_aoai_evals.sensors.eval_run"],
    "triggers": [
        "airflow_provider_aoai_evals.triggers.eval_run",
        "airflow_provider_aoai_evals.triggers.eval_events",
    ],
}


def get_provider_info() -> dict[str, Any]:
    """Return the provider info dict (validated against Airflow's ``provider_info.schema.json`` in tests)."""
    return {
        "package-name": PACKAGE_NAME,
        "name": "OpenAI / Azure OpenAI Evals",
        "description": (
            "Run and gate on OpenAI and Azure OpenAI Evals: start eval runs, wait for them without holding "
            "a worker slot, export their output items and branch or fail on pass rates."
        ),
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": INTEGRATION_NAME,
                "external-doc-url": "https://platform.openai.com/docs/api-reference/evals",
                "tags": ["ai"],
            }
        ],
        **{
            section: [{"integration-name": INTEGRATION_NAME, "python-modules": modules}]
            for section, modules in MODULES.items()
            if modules
        },
        "extra-links": ["airflow_provider_aoai_evals.links.EvalRunReportLink"],
        "config": {
            TRIGGER_CONNECTION_REUSE_OPTION[0]: {
                "description": "Settings of the OpenAI / Azure OpenAI Evals provider.",
                "options": {
                    TRIGGER_CONNECTION_REUSE_OPTION[1]: {
                        "description": (
                            "Seconds for which EvalRunTrigger waits starting in one triggerer reuse a read of "
                            "their connection instead of each reading it again. A wait that polls with reused "
                            "settings reads the connection again when a poll fails, and a connection defined "
                            "by an AIRFLOW_CONN_ environment variable is read again when the variable "
                            "changes. 0 turns reuse off."
                        ),
                        "version_added": "0.1.0",
                        "type": "float",
                        "example": "0",
                        "default": str(DEFAULT_TRIGGER_CONNECTION_REUSE_SECONDS),
                    },
                    ui_settings.CACHE_TTL_OPTION[1]: {
                        "description": (
                            "Seconds for which the api-server keeps the Evals API's answers (eval lists, "
                            "run lists, run pairings) that the provider's Airflow UI pages show, so views "
                            "within that time send no request. Per api-server process, at most "
                            f"{ui_settings.CACHE_MAX_ENTRIES} entries. 0 turns caching off."
                        ),
                        "version_added": "0.1.0",
                        "type": "float",
                        "example": "0",
                        "default": str(ui_settings.DEFAULT_CACHE_TTL_SECONDS),
                    },
                },
            }
        },
        "connection-types": [
            {
                "connection-type": connection_form.CONN_TYPE,
                "hook-class-name": connection_form.HOOK_CLASS_NAME,
                "hook-name": connection_form.HOOK_NAME,
                "conn-fields": connection_form.conn_fields(),
                "ui-field-behaviour": connection_form.provider_ui_field_behaviour(),
            }
        ],
    }

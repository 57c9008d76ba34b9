"""The Airflow plugin that puts the provider's pages into the Airflow UI; registered through the
``airflow.plugins`` entry point, so installing the wheel is enough. Not also in the provider info's
``plugins``: Airflow reads those only with ``[core] lazy_discover_providers = False``, and a plugin found
both ways is reported as registered twice.

``external_views`` href placeholders: the UI replaces ``{DAG_ID}``, ``{RUN_ID}``, ``{TASK_ID}`` and
``{MAP_INDEX}`` in the href of a view whose destination is not ``nav``. Airflow 3.3 URL-encodes the values
(``encodeURIComponent``); 3.1 inserts them as they are. The run id goes last, as a ``path`` parameter, so a
run id the 3.1 UI inserts unencoded still reaches the route whole, and ``{MAP_INDEX}`` stays literal for a
task that is not mapped (the route reads anything but an integer as -1).
"""

from __future__ import annotations

import functools
from typing import Any

from airflow.plugins_manager import AirflowPlugin

from airflow_provider_aoai_evals.ui import settings


@functools.cache
def _fastapi_app() -> Any:
    from airflow_provider_aoai_evals.ui.app import create_app

    return create_app()


class AoaiEvalsUIPlugin(AirflowPlugin):
    """Every Airflow process loads plugins (schedulers, workers, task processes), only the api-server mounts
    ``fastapi_apps``: the app, and with it FastAPI and Airflow's API security module (seconds of imports),
    is built when ``fastapi_apps`` is first read on an instance, not when the plugin is imported."""

    name = "aoai_evals_ui"
    external_views = [  # noqa: RUF012 - AirflowPlugin declares these as class attributes
        {
            "name": "Evals",
            "href": f"{settings.URL_PREFIX}/",
            "destination": "nav",
            "url_route": "aoai-evals",
        },
        {
            "name": "Eval run",
            "href": f"{settings.URL_PREFIX}/ti/{{DAG_ID}}/{{TASK_ID}}/{{MAP_INDEX}}/{{RUN_ID}}",
            "destination": "task_instance",
            "url_route": "aoai-evals-run",
        },
    ]

    @property
    def fastapi_apps(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return [
            {"app": _fastapi_app(), "url_prefix": settings.URL_PREFIX, "name": "OpenAI / Azure OpenAI Evals"}
        ]

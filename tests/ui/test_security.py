"""Who may open which page: every route of the plugin's app, enumerated from the app so that a route added
later is covered, through the real core API app and the real simple auth manager."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.routing import APIRoute
from starlette.routing import Mount

from .conftest import CONN_ID, KEY

pytestmark = pytest.mark.compat

PARAMS = {
    "connection_id": CONN_ID,
    "eval_id": "eval_abc",
    "dag_id": "ui_tab_dag",
    "task_id": "compare",
    "map_index": "-1",
    "run_id": "manual__2025-01-01T00:00:00+00:00",
}
#: Routes that read a connection's evals (need connection read); the rest need DAG read or a user.
CONNECTION_ROUTES = {"index", "evals", "eval_runs"}


def plugin_routes(core_app: Any) -> list[tuple[str, str]]:
    """(route name, concrete URL) of every route of the app mounted at /aoai-evals."""
    (mount,) = [r for r in core_app.routes if isinstance(r, Mount) and r.path == "/aoai-evals"]
    found = []
    sub_app: Any = mount.app
    for route in sub_app.routes:
        assert isinstance(route, APIRoute), f"unexpected route {route!r}: cover it in these tests"
        path = re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: PARAMS[m.group(1)], route.path)
        found.append((route.name, "/aoai-evals" + path))
    return found


def test_the_app_has_the_routes_these_tests_know(core_app):
    names = {name for name, _ in plugin_routes(core_app)}
    assert names == {"index", "evals", "eval_runs", "task_instance", "css"}


def test_anonymous_requests_to_every_route_are_refused(core_app, anonymous, server):
    for name, url in plugin_routes(core_app):
        for headers, cookies in (
            ({}, {}),
            ({"Authorization": "Bearer not-a-token"}, {}),
            ({}, {"_token": "junk"}),
        ):
            anonymous.cookies.clear()
            for k, v in cookies.items():
                anonymous.cookies.set(k, v)
            answer = anonymous.get(url, headers=headers)
            assert answer.status_code in (401, 403), (name, url, answer.status_code)
            assert answer.headers["content-type"].startswith("application/json"), (name, answer.text)
            assert set(answer.json()) == {"detail"}, answer.text
    assert server.count() == 0  # a refused request never reaches the API


def test_anonymous_requests_get_no_redirect_either(anonymous, server):
    for url in (f"/aoai-evals/connections/{CONN_ID}/", f"/aoai-evals/connections/{CONN_ID}/evals/e/"):
        assert anonymous.get(url).status_code == 404  # no route, and no redirect to one
    assert anonymous.get("/aoai-evals/").status_code in (401, 403)


def test_a_user_without_connection_access_gets_403(core_app, viewer, server):
    for name, url in plugin_routes(core_app):
        answer = viewer.get(url)
        if name in CONNECTION_ROUTES:
            assert answer.status_code == 403, (name, answer.status_code)
        else:
            assert answer.status_code == 200, (name, answer.status_code, answer.text)
    assert server.count() == 0


def test_the_ui_session_cookie_authenticates(core_app, tokens, anonymous, server):
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN

    ev = server.add_eval(name="cookie")
    anonymous.cookies.set(COOKIE_NAME_JWT_TOKEN, tokens["admin"])
    answer = anonymous.get(f"/aoai-evals/connections/{CONN_ID}/evals/{ev['id']}")
    assert answer.status_code == 200, answer.text
    css = anonymous.get("/aoai-evals/static/evals.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


def test_no_response_holds_the_api_key(core_app, admin, server):
    ev = server.add_eval(name="secrets")
    PARAMS["eval_id"] = ev["id"]
    try:
        for name, url in plugin_routes(core_app):
            answer = admin.get(url, follow_redirects=True)
            assert answer.status_code < 500, (name, answer.status_code, answer.text)
            assert KEY not in answer.text, name
            assert KEY not in str(answer.headers), name
    finally:
        PARAMS["eval_id"] = "eval_abc"

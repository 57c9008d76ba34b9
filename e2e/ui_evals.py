"""The provider's UI views (Evals page, Eval run tab) in headless Chromium, as a person uses them.

A second api-server on the same metadata DB runs with the simple auth manager's real login (the suite's
main one lets everyone in as admin, so it could not show an anonymous request refused). The browser logs
in through the login form, opens "Evals" from the navigation, picks the connection and the eval, and reads
the chart's points from the page's DOM; then opens the "Eval run" tab of a compare task. Anonymous requests
to every ``/aoai-evals`` route get 401/403. Screenshots go to .artifacts/e2e/screenshots/.
"""

from __future__ import annotations

import json
import secrets
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

from e2e.harness import ART, Airflow, Proc, free_port, log, wait_for
from e2e.ui import By, Keys, WebDriver, body_text, browser

USER, PASSWORD = "admin", "e2e-" + secrets.token_hex(8)


def start_login_api_server(af: Airflow) -> tuple[Proc, str]:
    """An api-server of ``af`` (same DB and secrets) that asks for a password: admin / ``PASSWORD``."""
    port = free_port()
    passwords = af.home / "login-passwords.json"
    passwords.write_text(json.dumps({USER: PASSWORD}))
    env = dict(af.env)
    env.update(
        {
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
            "AIRFLOW__API__PORT": str(port),
        }
    )
    argv = [str(af.venv / "bin" / "airflow"), "api-server", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--workers", "1"]
    proc = af.procs.start(
        f"{af.name}-api-server-login", argv, env, ART / af.name / "api-server-login.log", cwd=af.home
    )
    url = f"http://127.0.0.1:{port}"
    wait_for(
        "the login api-server",
        lambda: requests.get(f"{url}/api/v2/monitor/health", timeout=5).ok,
        timeout=180,
        on_timeout=lambda: log(proc.tail()),
    )
    return proc, url


def anonymous_refusals(url: str, paths: list[str]) -> dict[str, int]:
    """Each path without credentials: its status (the caller asserts 401/403)."""
    out: dict[str, int] = {}
    for path in paths:
        r = requests.get(f"{url}{path}", timeout=30, allow_redirects=False)
        out[path] = r.status_code
    return out


def _log_in(d: WebDriver, url: str) -> None:
    d.get(f"{url}/")
    user = wait_for("the login form", lambda: d.find_element(By.CSS_SELECTOR, "input[name=username]"), 60)
    user.send_keys(USER)
    password = d.find_element(By.CSS_SELECTOR, "input[type=password]")
    password.send_keys(PASSWORD)
    password.send_keys(Keys.ENTER)
    wait_for("the Airflow home page", lambda: "/auth/" not in d.current_url and d.get_cookie("_token"), 60)


def _in_frame(d: WebDriver, what: str, css: str, timeout: float = 60) -> Any:
    """Switch into the UI's plugin iframe and wait for ``css`` inside it."""

    def found() -> Any:
        d.switch_to.default_content()
        frames = d.find_elements(By.TAG_NAME, "iframe")
        if not frames:
            return None
        d.switch_to.frame(frames[0])
        return d.find_elements(By.CSS_SELECTOR, css) or None

    return wait_for(what, found, timeout)


def check_views(
    af: Airflow, url: str, fake: Any, eval_id: str, eval_name: str, compare_ti: dict[str, str], shots: Path
) -> dict[str, Any]:
    shots.mkdir(parents=True, exist_ok=True)
    profile = Path(tempfile.mkdtemp(prefix="aoai-e2e-views-"))
    d = browser(profile)
    try:
        _log_in(d, url)

        # "Evals" from the navigation: a link or a menu entry, depending on how the UI groups plugins.
        def nav_entry() -> Any:
            d.switch_to.default_content()
            hits = d.find_elements(
                By.XPATH, "//a[normalize-space(.)='Evals'] | //button[normalize-space(.)='Evals']"
            )
            if hits:
                return hits[0]
            menus = d.find_elements(By.XPATH, "//button[contains(normalize-space(.), 'Plugins')]")
            if menus:
                menus[0].click()
                time.sleep(0.5)
                hits = d.find_elements(By.XPATH, "//*[@role='menuitem'][normalize-space(.)='Evals']")
                return hits[0] if hits else None
            return None

        wait_for("the Evals navigation entry", nav_entry, 60).click()
        wait_for("the Evals view", lambda: "/plugin/aoai-evals" in d.current_url, 30)
        link = _in_frame(d, "the connection picker", "a[href*='/connections/aoai_evals_default']")[0]
        link.click()
        _in_frame(d, "the eval list", f"a[href*='/evals/{eval_id}']")[0].click()
        points = _in_frame(d, "the chart's points", "circle.run-point")
        chart = {p.get_attribute("data-run-id"): p.get_attribute("data-pass-rate") for p in points}
        page_text = body_text(d)
        d.switch_to.default_content()
        d.save_screenshot(str(shots / "evals-page.png"))

        runs = fake.api("GET", f"/evals/{eval_id}/runs?limit=100")["data"]
        expected: dict[str, float | None] = {}
        for run in runs:
            c = run.get("result_counts") or {}
            total = (c.get("passed") or 0) + (c.get("failed") or 0) + (c.get("errored") or 0)
            expected[run["id"]] = c["passed"] / total if total else None
        assert set(chart) == set(expected), (chart, expected)
        for run_id, rate in expected.items():
            shown = chart[run_id]
            assert (shown == "" and rate is None) or abs(float(shown or "nan") - (rate or 0.0)) < 1e-9, (
                run_id,
                shown,
                rate,
            )
        assert eval_name in page_text, page_text[:2000]
        assert "<script>alert(1)</script>" in page_text, page_text[:2000]  # shown as text, not run

        # The "Eval run" tab of the compare task.
        tab = (
            f"{url}/dags/{compare_ti['dag_id']}/runs/{quote(compare_ti['run_id'], safe='')}"
            f"/tasks/{compare_ti['task_id']}/plugin/aoai-evals-run"
        )
        d.get(tab)
        figures = _in_frame(d, "the Eval run tab's comparison", "section.comparison [data-pass-to-fail]", 60)
        flips = {
            "pass_to_fail": figures[0].get_attribute("data-pass-to-fail"),
            "fail_to_pass": figures[0].get_attribute("data-fail-to-pass"),
            "p_value": figures[0].get_attribute("data-p-value"),
            "rows": len(d.find_elements(By.CSS_SELECTOR, ".flip")),
        }
        d.switch_to.default_content()
        d.save_screenshot(str(shots / "eval-run-tab.png"))
        return {"chart_points": len(chart), "chart": chart, "tab": flips}
    except Exception:
        d.switch_to.default_content()
        d.save_screenshot(str(shots / "views-failure.png"))
        raise
    finally:
        d.quit()
        shutil.rmtree(profile, ignore_errors=True)

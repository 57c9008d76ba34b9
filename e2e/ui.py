"""The Airflow UI in headless Chromium (Debian's chromium + chromium-driver, driven by selenium).

1. Admin > Connections > Add Connection, type "OpenAI / Azure OpenAI Evals": the provider's standard field
   labels, and its extra fields with the Azure-only / OpenAI-only ones labelled as such.
2. A finished task instance of a provider operator shows the "Eval run report" extra link, pointing at the
   run's report_url.

Screenshots go to .artifacts/e2e/screenshots/.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

# selenium is installed into .venv by e2e/run.sh (not a declared extra): `make lint` on a fresh venv runs
# before it is there, so a missing selenium is not an error (with selenium installed, mypy checks its types).
from selenium import webdriver  # type: ignore[import-not-found,unused-ignore]
from selenium.webdriver.chrome.service import Service  # type: ignore[import-not-found,unused-ignore]
from selenium.webdriver.common.by import By  # type: ignore[import-not-found,unused-ignore]
from selenium.webdriver.common.keys import Keys  # type: ignore[import-not-found,unused-ignore]
from selenium.webdriver.remote.webdriver import WebDriver  # type: ignore[import-not-found,unused-ignore]

from e2e.harness import Airflow, log, wait_for

CHROME_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,2200",
]


def browser(profile: Path) -> WebDriver:
    """Headless Chromium with a fresh profile directory (``profile``, removed by the caller)."""
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for flag in CHROME_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={profile}")
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


def body_text(d: WebDriver) -> str:
    return str(d.find_element(By.TAG_NAME, "body").text)


def button(scope: Any, label: str) -> Any:
    found = [b for b in scope.find_elements(By.TAG_NAME, "button") if b.text.strip() == label]
    return found[0] if found else None


def check_connection_form(d: WebDriver, af: Airflow, shots: Path) -> dict[str, Any]:
    d.get(f"{af.url}/connections")
    wait_for("the Add Connection button", lambda: button(d, "Add Connection"), timeout=60).click()
    dialog = wait_for(
        "the connection dialog", lambda: d.find_element(By.CSS_SELECTOR, "[role=dialog]"), timeout=30
    )
    combo = wait_for(
        "the connection type box",
        lambda: next(
            i for i in dialog.find_elements(By.TAG_NAME, "input") if i.get_attribute("role") == "combobox"
        ),
        timeout=30,
    )
    combo.click()
    combo.send_keys("Evals")
    wait_for(
        "the aoai_evals option",
        lambda: [
            o
            for o in d.find_elements(By.CSS_SELECTOR, "[role=option]")
            if o.text == "OpenAI / Azure OpenAI Evals"
        ],
        timeout=30,
    )
    combo.send_keys(Keys.ENTER)
    wait_for("the standard fields", lambda: "Base URL / Endpoint" in dialog.text, timeout=30)
    standard = dialog.text
    d.save_screenshot(str(shots / "connection-form-standard.png"))
    button(dialog, "Extra Fields").click()
    wait_for("the extra fields", lambda: "Auth method (Azure only)" in dialog.text, timeout=30)
    extra = dialog.text
    # Scroll the dialog so the Azure-only fields are in the picture.
    d.execute_script(
        "arguments[0].scrollIntoView({block: 'start'})",
        dialog.find_element(By.XPATH, ".//*[normalize-space(text())='Flavor']"),
    )
    time.sleep(0.5)
    d.save_screenshot(str(shots / "connection-form-extra-fields.png"))
    azure_only = sorted({line for line in extra.splitlines() if line.endswith("(Azure only)")})
    openai_only = sorted({line for line in extra.splitlines() if line.endswith("(OpenAI only)")})
    for label in ("Base URL / Endpoint", "API key"):
        assert label in standard, standard
    for label in (
        "API version (Azure only)",
        "Auth method (Azure only)",
        "Entra tenant ID (Azure only)",
        "Entra client ID (Azure only)",
        "Entra client secret (Azure only)",
        "Use DefaultAzureCredential (Azure only)",
        "Entra token scope (Azure only)",
        "Organization (OpenAI only)",
        "Project (OpenAI only)",
        "Flavor",
    ):
        assert label in extra, extra
    # The empty choice of a select without a default is labelled "(none)", not its JSON value "null".
    assert "(none)" in extra.splitlines(), extra
    assert "null" not in extra.splitlines(), extra
    return {
        "connection_form_azure_only_fields": azure_only,
        "connection_form_openai_only_fields": openai_only,
    }


def check_report_link(
    d: WebDriver, af: Airflow, dag_id: str, run_id: str, task_id: str, expected_url: str, shots: Path
) -> dict[str, Any]:
    links = af.rest("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/links")
    links = links.get("extra_links", links)  # Airflow 3.3: {"extra_links": {name: url}, "total_entries": n}
    assert links.get("Eval run report") == expected_url, links
    # The task instance's Details tab lists its extra links ("Extra Links", one button per link).
    d.get(f"{af.url}/dags/{dag_id}/runs/{quote(run_id, safe='')}/tasks/{task_id}/details")
    link = wait_for(
        "the Eval run report link",
        lambda: d.find_elements(
            By.XPATH, "//a[contains(., 'Eval run report')] | //button[contains(., 'Eval run report')]"
        ),
        timeout=60,
    )[0]
    d.execute_script("arguments[0].scrollIntoView({block: 'center'})", link)
    time.sleep(1)
    d.save_screenshot(str(shots / "task-instance-report-link.png"))
    href = link.get_attribute("href") or link.find_element(By.XPATH, "./ancestor::a").get_attribute("href")
    assert href == expected_url, (href, expected_url)
    assert "success" in body_text(d).lower()
    return {"report_link_href": href, "report_link_task": f"{dag_id}/{run_id}/{task_id}"}


def check_ui(af: Airflow, shots: Path, ti: dict[str, str]) -> dict[str, Any]:
    shots.mkdir(parents=True, exist_ok=True)
    profile = Path(tempfile.mkdtemp(prefix="aoai-e2e-chromium-"))
    d = browser(profile)
    try:
        result = check_connection_form(d, af, shots)
        result.update(check_report_link(d, af, ti["dag_id"], ti["run_id"], ti["task_id"], ti["url"], shots))
        result["screenshots"] = sorted(p.name for p in shots.glob("*.png"))
        log(f"UI checks passed; screenshots in {shots}")
        return result
    except Exception:
        d.save_screenshot(str(shots / "failure.png"))
        raise
    finally:
        d.quit()
        shutil.rmtree(profile, ignore_errors=True)

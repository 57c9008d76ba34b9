"""EvalRunReportLink: the run's report page, as an extra link on the task in the Airflow UI."""

from __future__ import annotations

from typing import Any

from airflow.providers.common.compat.sdk import BaseOperatorLink, TaskInstanceKey, XCom

#: XCom key under which operators and the sensor push the run's report URL.
REPORT_URL_KEY = "report_url"


class EvalRunReportLink(BaseOperatorLink):
    """Opens the eval run's ``report_url`` (the OpenAI dashboard or the Azure AI Foundry portal).

    Tasks push the URL as soon as they know the run, before waiting, and also under this link's own XCom
    key, so the link works while the task is still deferred.
    """

    name = "Eval run report"

    def get_link(self, operator: Any, *, ti_key: TaskInstanceKey) -> str:
        url = XCom.get_value(ti_key=ti_key, key=REPORT_URL_KEY)
        return str(url) if url else ""


def publish_report_url(context: Any, report_url: str | None) -> None:
    """Push the URL for the link now (the UI reads it from the link's XCom key, even mid-deferral)."""
    ti = context.get("ti")
    if not report_url or ti is None:  # no task instance: called outside a task run (unit tests)
        return
    ti.xcom_push(key=REPORT_URL_KEY, value=report_url)
    ti.xcom_push(key=EvalRunReportLink().xcom_key, value=report_url)

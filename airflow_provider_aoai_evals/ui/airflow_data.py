"""What the pages read from Airflow itself: connections, the provider's XComs, rendered fields.

Everything here is filtered by the auth manager for the requesting user: the connection picker lists only
connections the user may read, and the chart's gate marks come only from DAGs the user may read.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from airflow_provider_aoai_evals.api.gates import FAILED, INCONCLUSIVE, PASSED
from airflow_provider_aoai_evals.api.operations import IDEMPOTENCY_METADATA_KEY
from airflow_provider_aoai_evals.hooks.connection_form import CONN_TYPE
from airflow_provider_aoai_evals.ui import settings

#: The XCom keys of the provider's operators that the task tab reads.
TI_XCOM_KEYS = ("run_id", "eval_id", "verdict", "return_value")


@dataclass(frozen=True)
class TaskInstanceRef:
    dag_id: str
    task_id: str
    run_id: str
    map_index: int = -1

    @property
    def ui_path(self) -> str:
        """The task instance's page in Airflow's UI (the same path on 3.1 and 3.3)."""
        path = "/dags/{}/runs/{}/tasks/{}".format(
            *(quote(p, safe="") for p in (self.dag_id, self.run_id, self.task_id))
        )
        return path + (f"/mapped/{self.map_index}" if self.map_index >= 0 else "")

    @property
    def label(self) -> str:
        index = f"[{self.map_index}]" if self.map_index >= 0 else ""
        return f"{self.dag_id} / {self.run_id} / {self.task_id}{index}"


def creator_of(metadata: dict[str, str] | None) -> TaskInstanceRef | None:
    """The task instance that created a run, from the ``airflow_idempotency_key`` metadata the run operator
    writes (``<dag>/<task>/<run id>/<map index>|try=N``); None for runs started elsewhere or hashed keys."""
    key = (metadata or {}).get(IDEMPOTENCY_METADATA_KEY)
    if not key or key.startswith("sha256:"):
        return None
    base = key.rsplit("|", 1)[0]
    parts = base.split("/", 2)
    if len(parts) != 3 or "/" not in parts[2]:
        return None
    run_id, _, index = parts[2].rpartition("/")
    try:
        map_index = int(index)
    except ValueError:
        return None
    if not (parts[0] and parts[1] and run_id):
        return None
    return TaskInstanceRef(parts[0], parts[1], run_id, map_index)


def _auth_manager() -> Any:
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager()


def may_read_connection(user: Any, conn_id: str) -> bool:
    """The check ``requires_access_connection(method="GET")`` makes, for a connection id that is not a path
    parameter (the picker's list and the task tab's flips)."""
    from airflow.api_fastapi.auth.managers.models.resource_details import ConnectionDetails

    return bool(
        _auth_manager().is_authorized_connection(
            method="GET", details=ConnectionDetails(conn_id=conn_id), user=user
        )
    )


def _env_conn_type(value: str) -> str | None:
    if value.lstrip().startswith("{"):
        try:
            parsed = json.loads(value)
        except ValueError:
            return None
        kind = parsed.get("conn_type") if isinstance(parsed, dict) else None
        return kind if isinstance(kind, str) else None
    return urlsplit(value).scheme.replace("-", "_") or None


def evals_connection_ids() -> list[str]:
    """Ids of connections of type ``aoai_evals`` in the metadata DB and in ``AIRFLOW_CONN_*`` variables
    of the api-server (a secrets backend cannot be listed; such ids can be typed in the picker)."""
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        ids = set(session.scalars(select(Connection.conn_id).where(Connection.conn_type == CONN_TYPE)))
    for name, value in os.environ.items():
        if name.startswith("AIRFLOW_CONN_") and _env_conn_type(value) == CONN_TYPE:
            ids.add(name.removeprefix("AIRFLOW_CONN_").lower())
    return sorted(ids)


def readable_connection_ids(user: Any) -> list[str]:
    return [c for c in evals_connection_ids() if may_read_connection(user, c)]


@dataclass(frozen=True)
class GateMark:
    outcome: str  # passed, failed or inconclusive
    task: TaskInstanceRef


def verdict_outcome(verdict: dict[str, Any]) -> str:
    outcome = verdict.get("outcome")
    if outcome in (PASSED, FAILED, INCONCLUSIVE):
        return str(outcome)
    return PASSED if verdict.get("passed") else FAILED


def gate_marks(user: Any, run_ids: set[str]) -> dict[str, GateMark]:
    """The newest ``verdict`` XCom of each of ``run_ids``, from DAGs ``user`` may read."""
    if not run_ids:
        return {}
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        dag_ids = _auth_manager().get_authorized_dag_ids(user=user, method="GET", session=session)
        if not dag_ids:
            return {}
        rows = session.execute(
            select(
                XComModel.dag_id, XComModel.task_id, XComModel.run_id, XComModel.map_index, XComModel.value
            )
            .where(XComModel.key == "verdict", XComModel.dag_id.in_(sorted(dag_ids)))
            .order_by(XComModel.timestamp.desc())
            .limit(settings.MAX_VERDICT_XCOMS)
        ).all()
    marks: dict[str, GateMark] = {}
    for row in rows:
        try:
            verdict = XComModel.deserialize_value(row)
        except (ValueError, TypeError):
            continue
        if not isinstance(verdict, dict):
            continue
        run_id = verdict.get("run_id")
        if isinstance(run_id, str) and run_id in run_ids and run_id not in marks:
            task = TaskInstanceRef(row.dag_id, row.task_id, row.run_id, row.map_index)
            marks[run_id] = GateMark(verdict_outcome(verdict), task)
    return marks


def task_instance_xcoms(ti: TaskInstanceRef) -> dict[str, Any]:
    """The provider's XComs of one task instance (keys in ``TI_XCOM_KEYS``), deserialized."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        rows = session.execute(
            select(XComModel.key, XComModel.value).where(
                XComModel.dag_id == ti.dag_id,
                XComModel.run_id == ti.run_id,
                XComModel.task_id == ti.task_id,
                XComModel.map_index == ti.map_index,
                XComModel.key.in_(TI_XCOM_KEYS),
            )
        ).all()
    found: dict[str, Any] = {}
    for row in rows:
        try:
            found[row.key] = XComModel.deserialize_value(row)
        except (ValueError, TypeError):
            continue
    return found


def rendered_fields(ti: TaskInstanceRef) -> dict[str, Any]:
    """The task instance's rendered template fields (``eval_id``, ``run_id`` of the gate operators)."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields as RTIF
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        fields = session.scalar(
            select(RTIF.rendered_fields).where(
                RTIF.dag_id == ti.dag_id,
                RTIF.run_id == ti.run_id,
                RTIF.task_id == ti.task_id,
                RTIF.map_index == ti.map_index,
            )
        )
    return fields if isinstance(fields, dict) else {}

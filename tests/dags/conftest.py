"""DAG tests run ``dag.test()`` in-process. Airflow 3.3 runs only DAGs it can find in a bundle, so the
example DAGs and the test-only DAGs in ``dag_files/`` are both declared as local bundles here."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
os.environ["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = json.dumps(
    [
        {
            "name": name,
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(path), "refresh_interval": 0},
        }
        for name, path in (
            ("provider_examples", HERE.parents[1] / "example_dags"),
            ("provider_test_dags", HERE / "dag_files"),
        )
    ]
)


def xcom_value(dag_run: Any, task_id: str, key: str = "return_value") -> Any:
    """What a task pushed, read from the metadata DB (``TaskInstance.xcom_pull`` needs a running task)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        row = session.scalars(
            select(XComModel).where(
                XComModel.run_id == dag_run.run_id,
                XComModel.dag_id == dag_run.dag_id,
                XComModel.task_id == task_id,
                XComModel.key == key,
            )
        ).first()
        return None if row is None else XComModel.deserialize_value(row)


def load_dagbag(folder: Path) -> Any:
    """A DagBag of ``folder`` (the class moved in Airflow 3.2 and lost ``include_examples``)."""
    import importlib

    try:
        bag = importlib.import_module("airflow.dag_processing.dagbag").DagBag(str(folder))
    except ImportError:  # Airflow 3.1
        bag = importlib.import_module("airflow.models.dagbag").DagBag(str(folder), include_examples=False)
    assert not bag.import_errors, bag.import_errors
    return bag

"""Run operators without a DAG run: bad input fails before any request, naming the parameter."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_aoai_evals.api.errors import EvalsConfigError
from airflow_provider_aoai_evals.operators.eval_run import (
    CreateEvalOperator,
    CreateEvalRunOperator,
    criteria_match,
    idempotency_base,
)
from airflow_provider_aoai_evals.testing import FakeEvalsServer
from tests.support import served_as_default_connection

KEY = "sk-operator-key"
ROWS = {"type": "jsonl", "source": {"type": "file_content", "content": [{"item": {"a": 1}}]}}
CRITERIA = [
    {
        "type": "string_check",
        "name": "exact",
        "input": "{{sample.output_text}}",
        "reference": "x",
        "operation": "eq",
    }
]
pytestmark = pytest.mark.compat


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEvalsServer]:
    with served_as_default_connection(monkeypatch, KEY) as srv:
        yield srv


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"eval_id": "", "data_source": ROWS}, "eval_id"),
        ({"eval_id": "eval/../x", "data_source": ROWS}, "eval_id"),
        ({"eval_id": "eval_1", "data_source": {"type": "csv"}}, "data_source"),
        (
            {
                "eval_id": "eval_1",
                "data_source": {"type": "jsonl", "source": {"type": "file_content", "content": "rows"}},
            },
            "data_source",
        ),
        ({"eval_id": "eval_1", "data_source": "s3://bucket/rows.jsonl"}, "data_source"),
        (
            {"eval_id": "eval_1", "data_source": ROWS, "metadata": {f"k{i}": "v" for i in range(16)}},
            "metadata",
        ),
        ({"eval_id": "eval_1", "data_source": ROWS, "metadata": {"k": 1}}, "metadata"),
    ],
)
def test_create_run_bad_input(server: FakeEvalsServer, kwargs: dict[str, Any], parameter: str) -> None:
    op = CreateEvalRunOperator(task_id="create", **kwargs)
    with pytest.raises(EvalsConfigError) as info:
        op.execute({})
    assert info.value.parameter == parameter
    assert server.count() == 0


def test_unknown_if_exists_is_refused_at_parse_time() -> None:
    with pytest.raises(ValueError, match="if_exists"):
        CreateEvalOperator(
            task_id="e",
            name="n",
            data_source_config={"type": "custom"},
            testing_criteria=CRITERIA,
            if_exists="replace",
        )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"poll_interval": 0}, "poll_interval"),
        ({"timeout": -1}, "timeout"),
        ({"success_statuses": ["done"]}, "success_statuses"),
    ],
)
def test_wait_settings_are_checked(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CreateEvalRunOperator(task_id="c", eval_id="e", data_source=ROWS, **kwargs)


def test_create_eval_reuse_refuses_ambiguous_or_different(server: FakeEvalsServer) -> None:
    server.add_eval(name="dup", testing_criteria=CRITERIA)
    server.add_eval(name="dup", testing_criteria=CRITERIA)
    server.add_eval(name="other", testing_criteria=[{**CRITERIA[0], "reference": "y"}])
    op = CreateEvalOperator(
        task_id="e",
        name="dup",
        data_source_config={"type": "custom"},
        testing_criteria=CRITERIA,
        if_exists="reuse",
    )
    with pytest.raises(EvalsConfigError, match="2 evals are named 'dup'") as info:
        op.execute({})
    assert info.value.parameter == "name"
    op = CreateEvalOperator(
        task_id="e",
        name="other",
        data_source_config={"type": "custom"},
        testing_criteria=CRITERIA,
        if_exists="reuse",
    )
    with pytest.raises(EvalsConfigError, match="different testing criteria") as info:
        op.execute({})
    assert info.value.parameter == "testing_criteria"
    assert server.count("POST", "^/evals$") == 0


def test_criteria_match_ignores_what_the_service_adds() -> None:
    assert criteria_match(CRITERIA, [{**CRITERIA[0], "id": "exact-1234"}])
    assert not criteria_match(CRITERIA, [{**CRITERIA[0], "operation": "ne"}])
    assert not criteria_match(CRITERIA, CRITERIA * 2)


class _TI:
    dag_id, task_id, run_id, map_index = "dag", "task", "manual__2025-01-01T00:00:00+00:00", 2


def test_idempotency_base_is_per_task_instance_and_bounded() -> None:
    assert idempotency_base({"ti": _TI()}) == "dag/task/manual__2025-01-01T00:00:00+00:00/2"  # type: ignore[typeddict-item]
    long_ti = _TI()
    long_ti.dag_id = "d" * 500
    base = idempotency_base({"ti": long_ti})  # type: ignore[typeddict-item]
    assert base.startswith("sha256:") and len(base) < 100

"""A gate never passes on counts that cannot be: the run is refused, and the task fails saying why."""

from __future__ import annotations

import json

import pytest

from airflow_provider_aoai_evals.api.errors import EvalsPermanentError
from airflow_provider_aoai_evals.operators.quality_gate import EvalRunCheckOperator
from tests.integration.hostile import hostile, respond, run_body

pytestmark = pytest.mark.compat


def test_a_gate_on_a_run_reporting_negative_counts_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    counts = {"total": 5, "passed": 10, "failed": -5, "errored": 0}  # a pass rate of 2.0, once
    with hostile(lambda r: respond(200, run_body(status="completed", result_counts=counts))) as endpoint:
        conn = {
            "conn_type": "aoai_evals",
            "host": endpoint.url,
            "password": "sk-gate-key",
            "extra": {"flavor": "azure"},
        }
        monkeypatch.setenv("AIRFLOW_CONN_HOSTILE_GATE", json.dumps(conn))
        gate = EvalRunCheckOperator(
            task_id="gate", eval_id="eval_1", run_id="evalrun_1", min_pass_rate=0.99, conn_id="hostile_gate"
        )
        with pytest.raises(EvalsPermanentError, match=r"result_counts\.failed"):
            gate.execute({})

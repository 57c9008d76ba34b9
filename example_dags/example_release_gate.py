"""Release gate: ship a candidate model only when its eval is no worse than the last release, on evidence.

    ensure_eval -> run_eval (deferred wait) -> compare -> gate -> release | block_release | review
    release, review (a person approves) -> promote

* ``run_eval`` grades the candidate model (``params.candidate_model``) on the golden set, an uploaded JSONL
  file (``params.dataset_file_id``); ``metadata.dataset`` names the set so the baseline is a run of it.
* ``compare`` pairs the run item by item with the previous completed run of the same dataset and writes the
  items that flipped to object storage (the Airflow Variable ``aoai_evals_export_root``), for the reviewer.
* ``gate`` decides on evidence, not on noise: a pass rate must clear its threshold on its 95% interval
  (``confidence``), and a drop of more than two points fails only when an exact McNemar test finds it
  significant at 5% (``regression_alpha``). Three outcomes:
  - **passed** -> ``release`` -> ``promote``;
  - **failed** (a significant regression, or a rate surely below its threshold) -> ``block_release``, which
    fails the DAG run with the gate's reasons;
  - **inconclusive** (too few items to tell) -> ``review``: Airflow's human-in-the-loop ``ApprovalOperator``
    (standard provider, Airflow 3.1+) puts the verdict and the flipped items in front of a person under
    *Required Actions*; "Approve" runs ``promote``, "Reject" skips it.
* The first run of a dataset has no baseline: the regression check is skipped and the thresholds decide.

Connection: ``aoai_evals_default``. See docs/quality-gates.md ("Deciding on evidence") and docs/compare.md.
"""

from __future__ import annotations

import datetime
import os

from airflow.providers.common.compat.sdk import AirflowFailException, Param, dag, get_current_context, task
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.hitl import ApprovalOperator

from airflow_provider_aoai_evals.operators.compare import EvalRunCompareOperator
from airflow_provider_aoai_evals.operators.eval_run import CreateEvalOperator, CreateEvalRunOperator
from airflow_provider_aoai_evals.operators.quality_gate import EvalRunBranchOperator

#: Seconds between polls of the run; the tests shorten it through the environment.
POLL_INTERVAL = float(os.environ.get("AOAI_EVALS_EXAMPLE_POLL_INTERVAL", "60"))

TESTING_CRITERIA = [
    {
        "type": "string_check",
        "name": "exact-label",
        "input": "{{sample.output_text}}",
        "reference": "{{item.label}}",
        "operation": "eq",
    }
]
EVAL_ID = "{{ ti.xcom_pull(task_ids='ensure_eval') }}"
RUN_ID = "{{ ti.xcom_pull(task_ids='run_eval', key='run_id') }}"
VERDICT = "ti.xcom_pull(task_ids='gate', key='verdict')"
COMPARISON = "ti.xcom_pull(task_ids='compare')"


@dag(
    schedule=None,
    start_date=datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc),
    catchup=False,
    tags=["example", "aoai-evals"],
    params={
        "dataset_file_id": Param(
            type="string", minLength=1, description="The golden set: an uploaded JSONL file."
        ),
        "dataset": Param("golden-set-v1", type="string", description="Its name; baselines are runs of it."),
        "candidate_model": Param("gpt-4o-mini", type="string", description="The model to release."),
    },
)
def example_release_gate() -> None:
    ensure_eval = CreateEvalOperator(
        task_id="ensure_eval",
        name="release-gate",
        if_exists="reuse",
        data_source_config={
            "type": "custom",
            "item_schema": {"type": "object"},
            "include_sample_schema": True,
        },
        testing_criteria=TESTING_CRITERIA,
    )
    run_eval = CreateEvalRunOperator(
        task_id="run_eval",
        eval_id=EVAL_ID,
        name="release-{{ params.candidate_model }}-{{ run_id }}",  # manual runs have no logical date
        metadata={"dataset": "{{ params.dataset }}", "model": "{{ params.candidate_model }}"},
        data_source={
            "type": "completions",
            "model": "{{ params.candidate_model }}",
            "input_messages": {
                "type": "template",
                "template": [
                    {"role": "system", "content": "Classify the headline into one word."},
                    {"role": "user", "content": "{{item.headline}}"},
                ],
            },
            "source": {"type": "file_id", "id": "{{ params.dataset_file_id }}"},
        },
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        timeout=datetime.timedelta(hours=6),
        # A retry reattaches to the run an earlier try started, and reuses it once completed, so a retry
        # never grades the candidate twice (a new DAG run is how to ask for a fresh run). Retries also
        # absorb an Airflow 3.3 race in which the scheduler fails a task that resumed from deferral within
        # seconds, after the run it waited for completed (apache/airflow#72716; docs/reliability.md).
        retries=2,
        retry_delay=datetime.timedelta(seconds=30),
        reuse_finished_run=True,
    )
    compare = EvalRunCompareOperator(
        task_id="compare",
        eval_id=EVAL_ID,
        run_id=RUN_ID,
        baseline_run_id="previous",
        baseline_metadata_key="dataset",
        allow_missing_baseline=True,  # the first run of a dataset: skipped, and the gate has no baseline
        destination=(
            "{{ var.value.get('aoai_evals_export_root', 'file:///tmp/aoai-evals-exports') }}"
            "/release-gate/" + RUN_ID + "/flips.jsonl"
        ),
    )
    gate = EvalRunBranchOperator(
        task_id="gate",
        eval_id=EVAL_ID,
        run_id=RUN_ID,
        min_pass_rate=0.6,
        # With ``confidence`` an upper bound needs items too: 0 errored of 50 is "at most 7.1%" at 95%, so
        # a 5% cap would stay inconclusive on a small golden set however clean the run.
        max_errored_rate=0.10,
        baseline_run_id="previous",
        baseline_metadata_key="dataset",
        allow_missing_baseline=True,
        max_regression=0.02,
        confidence=0.95,
        regression_alpha=0.05,
        follow_task_ids_if_true="release",
        follow_task_ids_if_false="block_release",
        inconclusive_task_ids="review",
        trigger_rule="none_failed",  # ``compare`` is skipped when there is no baseline yet
    )
    release = EmptyOperator(task_id="release")
    review = ApprovalOperator(
        task_id="review",
        subject="Release {{ params.candidate_model }}? The eval cannot tell yet.",
        body=(
            "The gate was inconclusive for run `" + RUN_ID + "` of dataset `{{ params.dataset }}`:\n\n"
            "{% for c in " + VERDICT + "['checks'] %}- **{{ c.outcome }}**: {{ c.detail }}\n{% endfor %}\n"
            "{% set cmp = " + COMPARISON + " %}"
            "{% if cmp %}Items that flipped: {{ cmp['flips'] }}, listed in `{{ cmp['flips_path'] }}`.{% endif %}"
        ),
        response_timeout=datetime.timedelta(days=2),
    )

    @task
    def block_release() -> None:
        verdict = get_current_context()["ti"].xcom_pull(task_ids="gate", key="verdict")
        failing = [c["detail"] for c in verdict["checks"] if c["outcome"] == "failed"]
        raise AirflowFailException(f"release blocked: run {verdict['run_id']} failed its gate: {failing}")

    @task(trigger_rule="none_failed_min_one_success")
    def promote() -> str:
        params = get_current_context()["params"]
        print(f"PROMOTE: {params['candidate_model']} on {params['dataset']}")
        return str(params["candidate_model"])

    ensure_eval >> run_eval >> compare >> gate >> [release, block_release(), review]
    [release, review] >> promote()


example_release_gate()

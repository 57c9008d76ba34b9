"""Airflow 3.3 end to end: api-server, scheduler, dag-processor and triggerer (LocalExecutor, PostgreSQL)
against FakeEvalsServer, driven through the REST API v2. Tests run in file order and share one deployment."""

from __future__ import annotations

import datetime
import json
import os
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from e2e.harness import (
    ART,
    REPO,
    Airflow,
    Fake,
    Postgres,
    Procs,
    Report,
    file_audit_negative_control,
    log,
    pids_of_cmdline,
    search_files,
    stage,
    wait_for,
)
from e2e.tests.ha_triggerers import run_ha_scenario

E2E_DAGS = (
    "e2e_mass_sensors",
    "e2e_mass_creates",
    "e2e_create_killed",
    "e2e_cancel_on_kill",
    "e2e_wait_deadline",
    "e2e_ha_sensors",
)
ASSET_DAG = "example_eval_completion_asset"
N_SENSORS = 100
N_CREATES = 20
DEADLINE_TIMEOUT = 45.0
#: The timeout of e2e/dags/e2e_wait_deadline.py's task (seconds).
WAIT_TIMEOUT = 20
CREATE_PATH = re.compile(r"^/evals/[^/]+/runs$")
EXPECTED_STATE = {"completed": "success", "failed": "failed", "canceled": "failed"}


def ts(value: str | None) -> float:
    assert value, "missing timestamp"
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def timeout_fired_at(home: Path, dag_id: str, run_id: str, task_id: str, map_index: int) -> float | None:
    """When a deferred task's trigger fired its timeout event, from the triggerers' logs of that task."""
    folder = (
        home
        / "logs"
        / f"dag_id={dag_id}"
        / f"run_id={run_id}"
        / f"task_id={task_id}"
        / f"map_index={map_index}"
    )
    for path in sorted(folder.glob("attempt=*.log.trigger.*.log")):
        for line in path.read_text(errors="replace").splitlines():
            if '"Trigger fired event"' in line and "'status': 'timeout'" in line:
                return ts(json.loads(line)["timestamp"])
    return None


def processed_creates(records: list[dict[str, Any]], key_prefix: str) -> list[dict[str, Any]]:
    """Create requests the server really processed (answered 201, or processed then dropped on purpose)."""
    out = []
    for r in records:
        if r["method"] != "POST" or not CREATE_PATH.search(r.get("api_path") or ""):
            continue
        key = ((r.get("json") or {}).get("metadata") or {}).get("airflow_idempotency_key", "")
        if key.startswith(key_prefix) and (r.get("status") == 201 or r.get("fault") == "drop_after"):
            out.append(r)
    return out


@pytest.fixture(scope="module")
def af(
    postgres: Postgres, fake: Fake, procs: Procs, canary: str, report: Report, shared: dict[str, Any]
) -> Iterator[Airflow]:
    shared["watched_eval"] = watched = fake.add_eval("e2e-watched")
    with stage("airflow-3.3-start", report):
        conn = {"conn_type": "aoai_evals", "host": fake.base_url, "password": canary}
        airflow = Airflow(
            "airflow-3.3",
            REPO / ".venv",
            ART / "airflow-3.3" / "home",
            postgres.create_db("airflow33"),
            procs,
            extra_env={
                "AIRFLOW_CONN_AOAI_EVALS_DEFAULT": json.dumps(conn),
                "AOAI_EVALS_WATCH_EVAL_ID": watched,
                "AOAI_EVALS_EXAMPLE_POLL_INTERVAL": "2",
            },
            bundles=[("e2e_dags", REPO / "e2e" / "dags"), ("provider_examples", REPO / "example_dags")],
        )
        shared["af33"] = airflow
        airflow.migrate()
        airflow.start()
        for dag_id in (*E2E_DAGS, ASSET_DAG):
            airflow.wait_dag(dag_id)
            airflow.unpause(dag_id)
    # Scenario 5 starts now: runs of the watched eval finish while the watcher is running.
    shared["watched_runs"] = {
        fake.add_run(watched, "watched-ok-1", queued_seconds=0.5, in_progress_seconds=20): "completed",
        fake.add_run(watched, "watched-ok-2", queued_seconds=0.5, in_progress_seconds=30): "completed",
        fake.add_run(watched, "watched-ok-3", queued_seconds=0.5, in_progress_seconds=40): "completed",
        fake.add_run(
            watched, "watched-failed", queued_seconds=0.5, in_progress_seconds=25, final_status="failed"
        ): "failed",
    }
    try:
        yield airflow
    finally:
        airflow.stop()


def asset_events(af: Airflow, uri: str) -> list[dict[str, Any]]:
    assets = [a for a in af.rest("GET", "/assets", limit=100)["assets"] if a["uri"] == uri]
    if not assets:
        return []
    return list(af.rest("GET", "/assets/events", asset_id=assets[0]["id"], limit=100)["asset_events"])


class FaultInjector(threading.Thread):
    """Bursts of 429s (with Retry-After), 5xx, proxy HTML pages, dropped connections and slow answers on the
    polls of single runs (what triggers and sensors do), plus single 429/503s on creates. A new burst is
    injected only when the previous one is used up, so bursts never pile up into an outage longer than the
    documented tolerance (each call retried by the client, then ``max_consecutive_failures`` polls)."""

    RUN_GET = r"^/evals/[^/]+/runs/evalrun_[0-9a-f]+$"
    CYCLE = (
        {
            "kind": "status",
            "status": 429,
            "retry_after": 1,
            "count": 20,
            "method": "GET",
            "path_regex": RUN_GET,
        },
        {"kind": "status", "status": 503, "count": 20, "method": "GET", "path_regex": RUN_GET},
        {
            "kind": "status",
            "status": 429,
            "count": 1,
            "method": "POST",
            "path_regex": r"/runs$",
            "retry_after": 1,
        },
        {"kind": "status", "status": 500, "count": 15, "method": "GET", "path_regex": RUN_GET},
        {"kind": "html", "status": 502, "count": 10, "method": "GET", "path_regex": RUN_GET},
        {"kind": "status", "status": 503, "count": 1, "method": "POST", "path_regex": r"/runs$"},
        {"kind": "drop_before", "count": 6, "method": "GET", "path_regex": RUN_GET},
        {
            "kind": "status",
            "status": 429,
            "retry_after_ms": 500,
            "count": 20,
            "method": "GET",
            "path_regex": RUN_GET,
        },
        {"kind": "slow", "delay": 2.0, "count": 15, "method": "GET", "path_regex": RUN_GET},
    )

    def __init__(self, fake: Fake, period: float = 3.0) -> None:
        super().__init__(daemon=True)
        self.fake, self.period = fake, period
        self.stopped = threading.Event()
        self.bursts: Counter[str] = Counter()

    def run(self) -> None:
        i, pending_since = 0, 0.0
        while not self.stopped.wait(self.period):
            try:
                if self.fake.ctl("GET", "faults").get("data"):
                    pending_since = pending_since or time.time()
                    if time.time() - pending_since < 20:
                        continue  # the last burst is not used up yet
                    self.fake.ctl("DELETE", "faults")  # e.g. a create fault after the last create
                pending_since = 0.0
                fault = self.CYCLE[i % len(self.CYCLE)]
                self.fake.inject(**fault)
                self.bursts[f"{fault['kind']} {fault.get('status', '')} {fault['method']}"] += 1
                i += 1
            except Exception as exc:  # noqa: BLE001
                log(f"fault injection failed: {exc}")

    def stop(self) -> None:
        self.stopped.set()
        self.join(10)
        self.fake.ctl("DELETE", "faults")


def states_by_map_index(af: Airflow, dag_id: str, run_id: str, task_id: str) -> dict[int, dict[str, Any]]:
    return {ti["map_index"]: ti for ti in af.task_instances(dag_id, run_id) if ti["task_id"] == task_id}


def wait_states(
    af: Airflow, dag_id: str, run_id: str, task_id: str, n: int, states: set[str], timeout: float
) -> None:
    def ready() -> bool:
        tis = states_by_map_index(af, dag_id, run_id, task_id)
        counts = Counter(str(ti["state"]) for ti in tis.values())
        log(f"{dag_id} {task_id}: {dict(counts)}")
        return len(tis) == n and all(str(ti["state"]) in states for ti in tis.values())

    wait_for(
        f"{n} {dag_id}.{task_id} tasks in {states}", ready, timeout=timeout, interval=5, on_timeout=af.dump
    )


# ---- 1 + 2 + 5 (part): 100 deferred sensors and 20 deferred creates, faults, a triggerer SIGKILL -------------
def test_mass_deferral_faults_and_triggerer_kill(
    af: Airflow, fake: Fake, postgres: Postgres, canary: str, report: Report, shared: dict[str, Any]
) -> None:
    sensor_eval = fake.add_eval("e2e-mass-sensors")
    create_eval = fake.add_eval("e2e-mass-creates")
    finals = ["completed"] * 7 + ["failed"] * 2 + ["canceled"]
    runs = [fake.add_run(sensor_eval, f"mass-{i}") for i in range(N_SENSORS)]
    final_of = {run: finals[i % len(finals)] for i, run in enumerate(runs)}
    paused_first = {run for i, run in enumerate(runs) if i % 17 == 0}  # an unknown status on the way

    injector = FaultInjector(fake)
    # Two ambiguous creates: processed, then the connection is dropped without an answer.
    fake.inject(kind="drop_after", method="POST", path_regex=r"/runs$", count=2)
    injector.start()
    t0 = time.time()
    sensors_run = af.trigger(
        "e2e_mass_sensors", {"eval_id": sensor_eval, "waits": [{"run_id": r, "timeout": 1800} for r in runs]}
    )
    creates_run = af.trigger(
        "e2e_mass_creates", {"eval_id": create_eval, "names": [f"create-{i}" for i in range(N_CREATES)]}
    )
    try:
        with stage("mass-deferral-ramp", report):
            wait_states(af, "e2e_mass_sensors", sensors_run, "wait", N_SENSORS, {"deferred"}, timeout=600)
            wait_states(af, "e2e_mass_creates", creates_run, "create", N_CREATES, {"deferred"}, timeout=300)
        ramp = time.time() - t0
        log(f"all {N_SENSORS + N_CREATES} tasks deferred after {ramp:.0f}s")

        # Secret audit while the triggers exist (completed triggers are deleted): decrypted kwargs.
        snap = af.python(REPO / "e2e" / "audit_db.py", canary, sensor_eval)
        shared["trigger_snapshot"] = snap
        assert snap["counts"]["triggers"] >= N_SENSORS + N_CREATES, snap["counts"]
        assert snap["control"]["in_decrypted_kwargs"], snap["control"]
        assert snap["hits"] == [], snap["hits"]

        for run in paused_first:
            fake.set_status(run, "paused")
        phase_a = [r for i, r in enumerate(runs) if i % 3 == 0]
        phase_b = [r for i, r in enumerate(runs) if i % 3 == 1]
        phase_c = [r for i, r in enumerate(runs) if i % 3 == 2]
        for run in phase_a:  # staggered, while the first triggerer is alive
            if run not in paused_first:
                fake.set_status(run, final_of[run])
            time.sleep(0.3)

        # Scenario 5: the watcher's events must be stored and its cursor committed (10 s) before the crash.
        uri = f"aoai-evals://evals/{shared['watched_eval']}/runs"
        completed = {r for r, s in shared["watched_runs"].items() if s == "completed"}
        wait_for(
            "the asset watcher's first events",
            lambda: len(asset_events(af, uri)) >= len(completed),
            timeout=180,
            interval=3,
            on_timeout=af.dump,
        )
        last_event = max(ts(e["timestamp"]) for e in asset_events(af, uri))

        def cursor_committed() -> bool:
            # The watcher's cursor in Airflow 3.3's asset_state_store: every fired run recorded as handled.
            rows = postgres.psql("SELECT value FROM asset_state_store", db="airflow33").splitlines()
            handled: set[str] = set()
            for row in rows:
                value = json.loads(row)
                value = json.loads(value) if isinstance(value, str) else value
                handled |= set((value or {}).get("handled") or {})
            return completed <= handled

        wait_for(
            "the watcher's cursor to be committed",
            cursor_committed,
            timeout=150,
            interval=1,
            on_timeout=af.dump,
        )
        commit_lag = time.time() - last_event
        log(f"watcher cursor committed {commit_lag:.0f}s after its last event (first poll >= 10 s after it)")

        # Deadlines: two waits that never finish (timeout 45 s) and a control. The triggerer is killed about
        # 30 s after they start, so their deadline passes while no triggerer runs their triggers (the killed
        # one's are adopted only once its heartbeat is 15 s old); a deadline re-armed by the restart would
        # fire no earlier than t_restart + 45 s.
        never = [fake.add_run(sensor_eval, f"never-{i}") for i in range(2)]
        control_run = fake.add_run(sensor_eval, "deadline-control")
        t_deadline_trigger = time.time()
        deadline_run = af.trigger(
            "e2e_mass_sensors",
            {
                "eval_id": sensor_eval,
                "waits": [
                    {"run_id": never[0], "timeout": DEADLINE_TIMEOUT},
                    {"run_id": never[1], "timeout": DEADLINE_TIMEOUT},
                    {"run_id": control_run, "timeout": 1800},
                ],
            },
        )
        wait_states(af, "e2e_mass_sensors", deadline_run, "wait", 3, {"deferred"}, timeout=120)

        time.sleep(max(0.0, t_deadline_trigger + 30 - time.time()))
        pending = states_by_map_index(af, "e2e_mass_sensors", deadline_run, "wait")
        assert all(ti["state"] == "deferred" for ti in pending.values()), pending
        downtime_run = fake.add_run(
            shared["watched_eval"], "watched-during-downtime", queued_seconds=0.2, in_progress_seconds=2
        )
        shared["watched_runs"][downtime_run] = "completed"
        shared["downtime_run"] = downtime_run

        # ---- the crash ----
        killed_pid = af.kill_triggerer()
        t_kill = time.time()
        log(f"SIGKILLed triggerer process group {killed_pid}")
        for run in phase_b:  # finish while no triggerer runs
            if run not in paused_first:
                fake.set_status(run, final_of[run])
            time.sleep(0.1)
        af.start_triggerer()
        t_restart = time.time()
        log(f"new triggerer started {t_restart - t_kill:.1f}s after the kill")
        shared["t_restart"] = t_restart
        deadline_left_at_kill = t_deadline_trigger + DEADLINE_TIMEOUT - t_kill
        assert deadline_left_at_kill > 5, (
            f"the deadline tasks took too long to defer: {deadline_left_at_kill:.0f}s"
        )

        for run in phase_c:
            if run not in paused_first:
                fake.set_status(run, final_of[run])
            time.sleep(0.2)
        for run in sorted(paused_first):  # unknown status -> terminal
            fake.set_status(run, final_of[run])
        fake.set_status(control_run, "completed")
        created = list(fake.api("GET", f"/evals/{create_eval}/runs?limit=100")["data"])
        create_final: dict[int, str] = {}
        for r in created:
            mi = int(r["metadata"]["airflow_idempotency_key"].split("|")[0].rsplit("/", 1)[1])
            create_final[mi] = "failed" if mi % 10 == 3 else "completed"
            fake.set_status(r["id"], create_final[mi])

        with stage("mass-completion", report):
            for dag_id, run_id in (
                ("e2e_mass_sensors", sensors_run),
                ("e2e_mass_creates", creates_run),
                ("e2e_mass_sensors", deadline_run),
            ):
                af.wait_dag_run(dag_id, run_id, timeout=600)
        t_end = time.time()
    finally:
        injector.stop()

    records = fake.requests_log()
    # -- 1: every sensor ended in the state its run's final status calls for
    sensors = states_by_map_index(af, "e2e_mass_sensors", sensors_run, "wait")
    wrong = {
        mi: (ti["state"], final_of[runs[mi]])
        for mi, ti in sensors.items()
        if ti["state"] != EXPECTED_STATE[final_of[runs[mi]]]
    }
    assert len(sensors) == N_SENSORS, sorted(sensors)
    assert not wrong, wrong
    # -- 2: creates: one processed create per task, the right state, nobody ran twice
    creates = states_by_map_index(af, "e2e_mass_creates", creates_run, "create")
    assert sorted(create_final) == list(range(N_CREATES)), (
        f"runs created per map index: {sorted(create_final)}"
    )
    wrong = {mi: ti["state"] for mi, ti in creates.items() if ti["state"] != EXPECTED_STATE[create_final[mi]]}
    assert not wrong, wrong
    per_task = {
        mi: len(processed_creates(records, f"e2e_mass_creates/create/{creates_run}/{mi}|"))
        for mi in range(N_CREATES)
    }
    assert set(per_task.values()) == {1}, per_task
    all_tis = [
        *sensors.values(),
        *creates.values(),
        *states_by_map_index(af, "e2e_mass_sensors", deadline_run, "wait").values(),
    ]
    retried = {
        (ti["dag_id"], ti["task_id"], ti["map_index"]): ti["try_number"]
        for ti in all_tis
        if ti["try_number"] != 1
    }
    assert not retried, f"tasks that ran more than once: {retried}"
    # -- 2: deadlines held across the restart (absolute deadline in the trigger kwargs, not reset)
    deadline_tis = states_by_map_index(af, "e2e_mass_sensors", deadline_run, "wait")
    ends = {}
    for mi in (0, 1):
        ti = deadline_tis[mi]
        assert ti["state"] == "failed", ti
        end = ts(ti["end_date"])
        ends[mi] = round(end - t_deadline_trigger, 1)
        assert end >= t_deadline_trigger + DEADLINE_TIMEOUT, ("deadline fired early", ends)
        # When the trigger fired, not when the task ended: the task's end also holds the wait for a
        # worker to resume it, which after a restart queues behind ~200 other events (17 s seen).
        fired = timeout_fired_at(af.home, "e2e_mass_sensors", deadline_run, "wait", mi)
        assert fired is not None, f"no timeout event in the trigger logs of map index {mi}"
        assert fired < t_restart + DEADLINE_TIMEOUT, (
            "deadline re-armed by the restart",
            ends,
            round(fired - t_deadline_trigger, 1),
            t_restart - t_kill,
        )
    assert deadline_tis[2]["state"] == "success"
    deadline_log = af.task_log("e2e_mass_sensors", deadline_run, "wait", 1, map_index=0)

    faulted = Counter(f"{r['fault']} {r['status'] or 'dropped'}" for r in records if r.get("fault"))
    report.set(
        "mass",
        sensors=N_SENSORS,
        creates=N_CREATES,
        deadline_tasks=3,
        sensor_final_statuses=dict(Counter(final_of.values())),
        paused_first=len(paused_first),
        sensor_task_states=dict(Counter(ti["state"] for ti in sensors.values())),
        create_task_states=dict(Counter(ti["state"] for ti in creates.values())),
        ramp_seconds=round(ramp, 1),
        total_seconds=round(t_end - t0, 1),
        triggerer_kills=1,
        triggerer_downtime_seconds=round(t_restart - t_kill, 1),
        api_requests=len(records),
        faulted_requests=sum(faulted.values()),
        faults=dict(faulted),
        fault_bursts=dict(injector.bursts),
        deadline_end_seconds_after_trigger=ends,
        deadline_seconds_left_at_kill=round(deadline_left_at_kill, 1),
        kill_seconds_after_deadline_trigger=round(t_kill - t_deadline_trigger, 1),
        deadline_reason="trigger deadline"
        if "deadline passed" in deadline_log
        else "Airflow trigger timeout",
        processed_creates=sum(per_task.values()),
        create_attempts=sum(
            1
            for r in records
            if r["method"] == "POST"
            and CREATE_PATH.search(r["api_path"] or "")
            and "e2e_mass_creates" in json.dumps(r.get("json"))
        ),
        triggers_in_snapshot=shared["trigger_snapshot"]["counts"]["triggers"],
        watcher_cursor_commit_lag_seconds=round(commit_lag, 1),
    )
    assert faulted, "no fault was injected"


# ---- 3: a task killed while it waits after its create is retried and reattaches ----------------------------
def test_killed_task_retries_and_reattaches(
    af: Airflow, fake: Fake, report: Report, shared: dict[str, Any]
) -> None:
    eval_id = fake.add_eval("e2e-killed")
    run_id = af.trigger("e2e_create_killed", {"eval_id": eval_id})
    prefix = f"e2e_create_killed/create/{run_id}/-1|"
    wait_for(
        "the first try's create",
        lambda: processed_creates(fake.requests_log(), prefix),
        timeout=240,
        interval=2,
        on_timeout=af.dump,
    )
    ti = af.task_instance("e2e_create_killed", run_id, "create")
    assert ti["state"] == "running", ti
    assert ti["try_number"] == 1, ti
    pids = wait_for("the task process", lambda: pids_of_cmdline(f"airflow worker -- {ti['id']}"), timeout=60)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    t_kill = time.time()
    log(f"SIGKILLed task process {pids} of {ti['id']}")
    wait_for(
        "try 2",
        lambda: af.task_instance("e2e_create_killed", run_id, "create")["try_number"] == 2,
        timeout=180,
        interval=2,
        on_timeout=af.dump,
    )
    created = processed_creates(fake.requests_log(), prefix)
    assert len(created) == 1
    the_run = list(fake.api("GET", f"/evals/{eval_id}/runs?limit=100")["data"])
    assert len(the_run) == 1
    run = the_run[0]["id"]
    wait_for(
        "try 2 to poll the run",
        lambda: any(
            r["method"] == "GET" and r["api_path"].endswith(run) and r["time"] > t_kill + 1
            for r in fake.requests_log()
        ),
        timeout=120,
        interval=2,
        on_timeout=af.dump,
    )
    fake.set_status(run, "completed")
    assert af.wait_dag_run("e2e_create_killed", run_id, timeout=180) == "success"
    ti = af.task_instance("e2e_create_killed", run_id, "create")
    assert ti["state"] == "success", ti
    assert ti["try_number"] == 2, ti
    assert len(processed_creates(fake.requests_log(), prefix)) == 1
    log2 = af.task_log("e2e_create_killed", run_id, "create", 2)
    assert "Reattaching to eval run" in log2, log2[-3000:]
    assert run in log2, log2[-3000:]
    shared["report_link_ti"] = {
        "dag_id": "e2e_create_killed",
        "run_id": run_id,
        "task_id": "create",
        "url": fake.get_run(eval_id, run)["report_url"],
    }
    report.set(
        "killed_task",
        dag_run=run_id,
        killed_pids=pids,
        creates_seen=1,
        final_try_number=2,
        eval_run=run,
        state="success",
    )


# ---- 4: a deferred task marked failed through the REST API cancels its run (BaseTrigger.on_kill) -------------
def test_mark_failed_cancels_run(af: Airflow, fake: Fake, report: Report) -> None:
    eval_id = fake.add_eval("e2e-cancel")
    watched = fake.add_run(eval_id, "cancel-me")
    run_id = af.trigger("e2e_cancel_on_kill", {"eval_id": eval_id, "run_id": watched})
    wait_states(af, "e2e_cancel_on_kill", run_id, "wait", 1, {"deferred"}, timeout=180)
    wait_states(af, "e2e_cancel_on_kill", run_id, "create", 1, {"deferred"}, timeout=180)
    created = af.rest(
        "GET",
        f"/dags/e2e_cancel_on_kill/dagRuns/{run_id}/taskInstances/create/xcomEntries/run_id",
        deserialize=True,
    )["value"]
    created = json.loads(created) if isinstance(created, str) and created.startswith('"') else created
    for task_id in ("wait", "create"):
        af.rest(
            "PATCH",
            f"/dags/e2e_cancel_on_kill/dagRuns/{run_id}/taskInstances/{task_id}",
            {"new_state": "failed"},
        )
    for run in (watched, created):

        def canceled(run: str = run) -> bool:
            return bool(fake.get_run(eval_id, run)["status"] == "canceled")

        wait_for(
            f"run {run} canceled on the server",
            canceled,
            timeout=120,
            interval=2,
            on_timeout=af.dump,
        )
    records = fake.requests_log()
    cancels = {
        run: [
            r
            for r in records
            if r["method"] == "POST" and run in r["api_path"] and r["api_path"] != f"/evals/{eval_id}/runs"
        ]
        for run in (watched, created)
    }
    assert all(cancels.values()), cancels
    states = {t: af.task_instance("e2e_cancel_on_kill", run_id, t)["state"] for t in ("wait", "create")}
    assert states == {"wait": "failed", "create": "failed"}, states
    report.set(
        "cancel_on_kill",
        runs_canceled=2,
        cancel_requests={k: len(v) for k, v in cancels.items()},
        task_states=states,
    )


# ---- 5: the asset-watcher example DAG runs once per finished run --------------------------------------------
def test_asset_watcher_schedules_once_per_run(af: Airflow, report: Report, shared: dict[str, Any]) -> None:
    uri = f"aoai-evals://evals/{shared['watched_eval']}/runs"
    completed = {r for r, s in shared["watched_runs"].items() if s == "completed"}
    wait_for(
        "an event for every completed watched run",
        lambda: {(e["extra"].get("payload") or {}).get("run_id") for e in asset_events(af, uri)} >= completed,
        timeout=150,
        interval=3,
        on_timeout=af.dump,
    )

    def dag_runs_done() -> list[dict[str, Any]]:
        runs = af.dag_runs(ASSET_DAG)
        return runs if runs and all(r["state"] in ("success", "failed") for r in runs) else []

    dag_runs = wait_for("the asset-scheduled DAG runs to finish", dag_runs_done, timeout=180, interval=3)
    events = asset_events(af, uri)
    per_run = Counter((e["extra"].get("payload") or {}).get("run_id") for e in events)
    assert set(per_run) == completed, per_run  # the failed run never fires
    assert set(per_run.values()) == {1}, per_run
    # The run that finished while no triggerer ran was delivered by the new triggerer, from the stored cursor.
    after_restart = [
        e
        for e in events
        if (e["extra"].get("payload") or {}).get("run_id") == shared["downtime_run"]
        and ts(e["timestamp"]) >= shared["t_restart"]
    ]
    assert len(after_restart) == 1, (events, shared["t_restart"])
    assert all(r["state"] == "success" for r in dag_runs), dag_runs
    reported: Counter[str] = Counter()
    for r in dag_runs:
        value = af.rest(
            "GET",
            f"/dags/{ASSET_DAG}/dagRuns/{r['dag_run_id']}/taskInstances/report_finished_runs"
            "/xcomEntries/return_value",
            deserialize=True,
        )["value"]
        value = json.loads(value) if isinstance(value, str) else value
        reported.update(item["run_id"] for item in value)
    assert set(reported) == completed, reported
    assert set(reported.values()) == {1}, reported
    report.set(
        "asset_watcher",
        watched_runs=len(shared["watched_runs"]),
        completed_runs=len(completed),
        asset_events=len(events),
        dag_runs=len(dag_runs),
        delivered_after_triggerer_restart=len(after_restart),
    )


# ---- 8: the UI in headless Chromium -------------------------------------------------------------------------
def test_ui_connection_form_and_report_link(af: Airflow, report: Report, shared: dict[str, Any]) -> None:
    from e2e.ui import check_ui

    assert "report_link_ti" in shared, "needs the finished task of test_killed_task_retries_and_reattaches"
    result = check_ui(af, ART / "screenshots", shared["report_link_ti"])
    report.set("ui", **result)


# ---- 9: the provider's own UI views, logged in, in headless Chromium ----------------------------------------
RELEASE_DAG = "example_release_gate"


def test_evals_views_show_the_runs_and_the_flips(
    af: Airflow, fake: Fake, report: Report, shared: dict[str, Any]
) -> None:
    from e2e.ui_evals import anonymous_refusals, check_views, start_login_api_server

    af.wait_dag(RELEASE_DAG)
    af.unpause(RELEASE_DAG)
    conf = {"dataset_file_id": fake.upload_golden_set(200)}
    # The baseline passes 180 of 200; the candidate loses 30 of those and gains none: a real regression.
    nights = {
        "baseline": (["pass"] * 180 + ["fail"] * 20, "success"),
        "candidate": (["fail"] * 30 + ["pass"] * 150 + ["fail"] * 20, "failed"),
    }
    dag_runs: dict[str, str] = {}
    for night, (outcomes, state) in nights.items():
        fake.ctl(
            "POST",
            "script",
            {"script": {"queued_seconds": 0.5, "in_progress_seconds": 1, "outcomes": outcomes}},
        )
        dag_runs[night] = af.trigger(RELEASE_DAG, conf)
        assert af.wait_dag_run(RELEASE_DAG, dag_runs[night], timeout=300) == state, night
    # More than 1 when Airflow failed a resumed try (apache/airflow#72716) and a retry reused its run; the
    # chart's 3 points below prove that no retry started a second run.
    run_eval_tries = {
        night: af.task_instance(RELEASE_DAG, dag_run, "run_eval")["try_number"]
        for night, dag_run in dag_runs.items()
    }
    evals = [e for e in fake.api("GET", "/evals?limit=100")["data"] if e["name"] == "release-gate"]
    assert len(evals) == 1, evals
    eval_id = evals[0]["id"]
    fake.add_run(
        eval_id,
        "<script>alert(1)</script>",
        queued_seconds=0,
        in_progress_seconds=0.5,
        output_items=10,
        fail_every=2,
    )
    run_id = af.rest(
        "GET",
        f"/dags/{RELEASE_DAG}/dagRuns/{dag_runs['candidate']}/taskInstances/run_eval/xcomEntries/run_id",
        deserialize=True,
    )["value"]
    proc, url = start_login_api_server(af)
    try:
        paths = [
            "/aoai-evals/",
            "/aoai-evals/connections/aoai_evals_default",
            f"/aoai-evals/connections/aoai_evals_default/evals/{eval_id}",
            f"/aoai-evals/ti/{RELEASE_DAG}/compare/-1/{dag_runs['candidate']}",
            "/aoai-evals/static/evals.css",
        ]
        refused = anonymous_refusals(url, paths)
        assert set(refused.values()) <= {401, 403}, refused
        compare_ti = {"dag_id": RELEASE_DAG, "run_id": dag_runs["candidate"], "task_id": "compare"}
        seen = check_views(af, url, fake, eval_id, "release-gate", compare_ti, ART / "screenshots")
    finally:
        proc.stop()
    assert seen["chart_points"] == 3, seen
    assert run_id in seen["chart"], seen
    assert (seen["tab"]["pass_to_fail"], seen["tab"]["fail_to_pass"]) == ("30", "0"), seen
    assert seen["tab"]["rows"] == 20, seen  # the first 20 of 30 flipped items
    report.set("ui_views", anonymous=refused, run_eval_tries=run_eval_tries, **seen)


# ---- 4b: a wait that times out cancels its run, also when no triggerer runs at its deadline -----------------
# Run after the asset watcher's test: its two triggerer kills would otherwise fall inside the watcher's cursor
# commit lag and re-deliver a finished run's event (docs/reliability.md, Known limits).
def test_timeout_cancels_the_run_without_a_triggerer(af: Airflow, fake: Fake, report: Report) -> None:
    """CreateEvalRunOperator (deferred, timeout 20 s, cancel_on_timeout by default) whose run never ends.

    Twice, the triggerer is SIGKILLed once the task has deferred:
    - *back after the deadline*: a new triggerer starts 5 s after the deadline passed (well before Airflow's
      own timeout of the deferral); the trigger sees its deadline gone at once, cancels, and yields timeout;
    - *none until Airflow's timeout*: no triggerer runs until Airflow's deferral timeout (the deadline plus
      the margin) fires and resumes the task on a worker to fail it; ``resume_execution`` cancels the run.
    Either way the run ends canceled on the service and the task fails saying so.
    """
    dag_id = "e2e_wait_deadline"
    eval_id = fake.add_eval("e2e-deadline")
    fake.ctl("POST", "script", {"script": {"queued_seconds": 0.5, "in_progress_seconds": 100000}, "count": 2})
    figures: dict[str, Any] = {}
    for case in ("back_after_deadline", "none_until_airflow_timeout"):
        with stage(f"timeout-{case}", report):
            run_id = af.trigger(dag_id, {"eval_id": eval_id})
            wait_states(af, dag_id, run_id, "create", 1, {"deferred"}, timeout=180)
            t_deferred = time.time()  # the trigger's deadline is at most WAIT_TIMEOUT after this
            created = af.rest(
                "GET",
                f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/create/xcomEntries/run_id",
                deserialize=True,
            )["value"]
            created = json.loads(created) if isinstance(created, str) and created.startswith('"') else created
            af.kill_triggerer()
            if case == "back_after_deadline":
                time.sleep(max(0.0, t_deferred + WAIT_TIMEOUT + 5 - time.time()))
                assert fake.get_run(eval_id, created)["status"] == "in_progress"  # nobody canceled it yet
                af.start_triggerer()

            def ended(run_id: str = run_id) -> str | None:
                st = af.task_instance(dag_id, run_id, "create")["state"]
                return st if st in ("failed", "success") else None

            state = wait_for(
                f"{dag_id} {run_id} create to fail", ended, timeout=300, interval=3, on_timeout=af.dump
            )
            t_failed = time.time()
            if case == "none_until_airflow_timeout":
                af.start_triggerer()
            run = fake.get_run(eval_id, created)
            task_log = af.task_log(dag_id, run_id, "create", 1)
            cancels = [
                r for r in fake.requests_log() if r["method"] == "POST" and created in (r["api_path"] or "")
            ]
            figures[case] = {
                "task_state": state,
                "run_status": run["status"],
                "cancel_requests": len(cancels),
                "failed_seconds_after_deferral": round(t_failed - t_deferred, 1),
            }
            log(f"timeout, {case}: {figures[case]}")
            assert state == "failed", figures[case]
            assert run["status"] == "canceled", figures[case]
            assert len(cancels) == 1, cancels
            assert "it was canceled (status now 'canceled')" in task_log, task_log[-3000:]
            if case == "none_until_airflow_timeout":
                assert "while no triggerer ran" in task_log, task_log[-3000:]
                # Not before Airflow's own timeout of the deferral, which lies a margin past the deadline.
                assert t_failed - t_deferred > WAIT_TIMEOUT + 60, figures[case]
            else:
                assert "while no triggerer ran" not in task_log, task_log[-3000:]
    report.set("timeout_cancels", wait_timeout_seconds=WAIT_TIMEOUT, **figures)


# ---- 10: two triggerers (HA), 200 deferred sensors: a SIGKILL, a SIGSTOP/SIGCONT, a rolling restart --------
def test_ha_triggerers_kill_freeze_rolling_restart(
    af: Airflow, fake: Fake, postgres: Postgres, report: Report
) -> None:
    """e2e/tests/ha_triggerers.py. Last before the audit: it replaces the deployment's triggerer by its own
    and leaves one of those running (threshold 20 s, heartbeat 2 s, default capacity)."""
    run_ha_scenario(af, fake, postgres, report)


# ---- 7: no trace of the API key anywhere ----------------------------------------------------------------------
def test_secret_audit(
    af: Airflow, postgres: Postgres, canary: str, report: Report, shared: dict[str, Any]
) -> None:
    af.stop()  # every log written and closed
    needles = [canary, canary.encode().hex()]
    audit = af.python(REPO / "e2e" / "audit_db.py", canary, shared["watched_eval"])
    dump = postgres.dump("airflow33", ART / "airflow-3.3" / "pg_dump.sql")
    dump_text = dump.read_text(errors="replace")
    # Task logs (incl. trigger logs), component logs, AIRFLOW_HOME, the pg_dump; PostgreSQL's and the fake's logs.
    roots = [ART / "airflow-3.3", postgres.log_path, *sorted(ART.glob("*.log"))]
    files = search_files(roots, needles)
    task_log_files = sum(1 for p in (af.home / "logs").rglob("*") if p.is_file())
    # Negative controls: the same searches must report the canary where it is planted.
    db_control = af.python(REPO / "e2e" / "audit_db.py", canary, "--plant")["negative_control"]
    file_control = file_audit_negative_control(
        {"task_log": af.home / "logs" / "dag_id=e2e_mass_sensors", "component_log": ART / "airflow-3.3"},
        canary,
        needles,
    )
    snapshot = shared.get("trigger_snapshot", {})
    report.set(
        "secret_audit_af33",
        db=audit["counts"],
        db_hits=audit["hits"],
        trigger_snapshot=snapshot.get("counts"),
        trigger_snapshot_hits=snapshot.get("hits"),
        control=audit.get("control"),
        pg_dump_bytes=len(dump_text),
        pg_dump_hits=sum(dump_text.count(n) for n in needles),
        files_searched=files["files"],
        bytes_searched=files["bytes"],
        task_log_files=task_log_files,
        file_hits=files["hits"],
        negative_control_db=db_control,
        negative_control_files=file_control,
    )
    assert audit["hits"] == [], audit["hits"]
    # The watcher's trigger is Fernet-encrypted: its eval id is found only after decryption.
    assert audit["control"]["in_decrypted_kwargs"], audit["control"]
    assert not audit["control"]["in_raw_column"], audit["control"]
    assert not any(n in dump_text for n in needles)
    assert shared["watched_eval"] in dump_text  # positive control: the dump holds the data it should
    assert task_log_files > 100, task_log_files
    assert not files["hits"], files["hits"]
    assert db_control["planted"] == ["trigger", "xcom", "rendered_fields"], db_control
    found = dict(db_control["found"])
    # The planted trigger is encrypted: a raw search (column or table scan) cannot see it.
    assert not found.pop("trigger_kwargs_raw_column"), db_control
    assert not found.pop("table_scan_trigger"), db_control
    assert all(found.values()), db_control  # found only through the decrypted kwargs, XCom, rendered fields
    assert all(file_control.values()), file_control

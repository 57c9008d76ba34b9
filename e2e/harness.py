# ruff: noqa: T201 - the suite reports its progress on stdout (pytest -s)
"""Process, database and HTTP plumbing for the end-to-end suite (no Airflow import: the suite drives
Airflow from outside, through its processes, its REST API and its database).

Everything started here is registered in ``.artifacts/e2e/pids.txt`` (process groups, and the PostgreSQL
data directory), so ``e2e/run.sh`` can stop it even when pytest itself is killed.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import requests

REPO = Path(__file__).resolve().parent.parent
ART = REPO / ".artifacts" / "e2e"
PIDS_FILE = ART / "pids.txt"
REPORT_FILE = ART / "report.json"

T = TypeVar("T")


# ---- small utilities -------------------------------------------------------------------------------------
def log(msg: str) -> None:
    print(f"[e2e {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    what: str,
    fn: Callable[[], T | None],
    timeout: float,
    interval: float = 1.0,
    on_timeout: Callable[[], Any] | None = None,
) -> T:
    """Poll ``fn`` until it returns something truthy; raise TimeoutError naming ``what`` (and the last
    value or exception) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = fn()
            if value:
                return value
            last = value
        except Exception as exc:  # noqa: BLE001 - the condition may fail while things come up
            last = exc
        if time.monotonic() >= deadline:
            if on_timeout is not None:
                on_timeout()
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r:.2000}")
        time.sleep(interval)


class Report:
    """Figures for docs/reliability.md, written to .artifacts/e2e/report.json as they are collected."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        if REPORT_FILE.exists():
            with contextlib.suppress(ValueError):
                self.data = json.loads(REPORT_FILE.read_text())

    def set(self, section: str, **values: Any) -> None:
        self.data.setdefault(section, {}).update(values)
        REPORT_FILE.parent.mkdir(parents=True, exist_ok=True)
        REPORT_FILE.write_text(json.dumps(self.data, indent=2, sort_keys=True, default=str))


@contextlib.contextmanager
def stage(name: str, report: Report | None = None) -> Iterator[None]:
    """Print ``== stage e2e/NAME: N.Ns (ok|FAILED)`` like scripts/timed.sh, and record it."""
    print(f"== stage e2e/{name}: start", flush=True)
    start = time.monotonic()
    status = "FAILED"
    try:
        yield
        status = "ok"
    finally:
        secs = time.monotonic() - start
        print(f"== stage e2e/{name}: {secs:.1f}s ({status})", flush=True)
        if report is not None:
            report.set("stages", **{name: {"seconds": round(secs, 1), "status": status}})


# ---- processes ---------------------------------------------------------------------------------------------
class Proc:
    def __init__(self, name: str, popen: subprocess.Popen[bytes], log_path: Path) -> None:
        self.name, self.popen, self.log_path = name, popen, log_path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill_group(self, sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the process group, then SIGKILL whatever is left of it. A SIGSTOPped group is sent
        SIGCONT after the SIGTERM, so it can act on it."""
        if self.alive():
            self.kill_group(signal.SIGTERM)
            self.kill_group(signal.SIGCONT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout)
        self.kill_group(signal.SIGKILL)  # children that outlived their leader
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5)

    def tail(self, lines: int = 80) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as exc:
            return f"<no log: {exc}>"


class Procs:
    """Every process the suite starts, each in its own process group, stopped in reverse order."""

    def __init__(self) -> None:
        self.procs: list[Proc] = []

    def start(
        self, name: str, argv: list[str], env: dict[str, str], log_path: Path, cwd: Path = REPO
    ) -> Proc:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as out:
            popen = subprocess.Popen(  # noqa: S603
                argv,
                env=env,
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        proc = Proc(name, popen, log_path)
        self.procs.append(proc)
        with PIDS_FILE.open("a") as f:
            f.write(f"pgid {popen.pid} {name}\n")
        log(f"started {name} (pid {popen.pid}), log {log_path.relative_to(REPO)}")
        return proc

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()


def dump_logs(procs: list[Proc], lines: int = 60) -> None:
    for proc in procs:
        print(
            f"\n----- last {lines} lines of {proc.name} ({proc.log_path}) -----\n{proc.tail(lines)}",
            flush=True,
        )


# ---- PostgreSQL ------------------------------------------------------------------------------------------------
class Postgres:
    """A throw-away cluster in a temp dir, on a loopback port, trust auth for user ``airflow``."""

    def __init__(self) -> None:
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        if not bins:
            raise RuntimeError("PostgreSQL server binaries not found (e2e/run.sh installs them with apt-get)")
        self.bindir = Path(bins[-1]).parent
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="aoai-e2e-pg-"))
        self.datadir = self.root / "data"
        self.sockdir = self.root / "sock"
        self.log_path = ART / "postgres.log"
        self.as_user: list[str] = []
        if os.geteuid() == 0:  # initdb refuses to run as root
            uid = pwd.getpwnam("postgres").pw_uid
            os.chown(self.root, uid, -1)
            self.as_user = ["runuser", "-u", "postgres", "--"]
            self.log_path = self.root / "postgres.log"
        self.url_base = f"postgresql+psycopg2://airflow@127.0.0.1:{self.port}"

    def _run(self, argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.as_user + argv, check=True, capture_output=True, text=True, **kw)  # noqa: S603

    def start(self) -> None:
        self._run(["mkdir", "-p", str(self.sockdir)])
        self._run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.datadir),
                "-U",
                "airflow",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8" if Path("/usr/lib/locale/C.utf8").exists() else "--locale=C",
            ]
        )
        with PIDS_FILE.open("a") as f:
            f.write(f"pgdata {self.datadir} {self.bindir} {' '.join(self.as_user)}\n")
        opts = (
            f"-p {self.port} -k {self.sockdir} -c listen_addresses=127.0.0.1 -c max_connections=400 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=256MB"
        )
        self._run(
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.datadir),
                "-o",
                opts,
                "-l",
                str(self.log_path),
                "-w",
                "-t",
                "60",
                "start",
            ]
        )
        log(f"PostgreSQL {self.bindir.parent.name} on 127.0.0.1:{self.port}, data {self.datadir}")

    def _client(self, tool: str) -> list[str]:
        """A PostgreSQL client tool's command line up to its own options: where the server is, as whom."""
        return [str(self.bindir / tool), "-h", "127.0.0.1", "-p", str(self.port), "-U", "airflow"]

    def psql(self, sql: str, db: str = "postgres") -> str:
        return subprocess.run(  # noqa: S603
            [*self._client("psql"), "-d", db, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql],
            check=True,
            capture_output=True,
            text=True,
        ).stdout

    def create_db(self, name: str) -> str:
        self.psql(f"CREATE DATABASE {name}")
        return f"{self.url_base}/{name}"

    def dump(self, db: str, out: Path) -> Path:
        """Every table's rows (``pg_dump --data-only``, INSERT statements, bytea as hex)."""
        with out.open("w") as f:
            subprocess.run(  # noqa: S603
                [*self._client("pg_dump"), "--data-only", "--inserts", db],
                check=True,
                stdout=f,
                text=True,
            )
        return out

    def stop(self) -> None:
        if self.datadir.exists():
            with contextlib.suppress(subprocess.CalledProcessError):
                self._run(
                    [str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate", "-w", "stop"]
                )
        with contextlib.suppress(OSError):
            if self.log_path.parent == self.root:  # appended: one file for every session
                with (ART / "postgres.log").open("ab") as out:
                    out.write(self.log_path.read_bytes())
        shutil.rmtree(self.root, ignore_errors=True)


# ---- FakeEvalsServer (a separate process, controlled over /_fake/) ----------------------------------------------
class Fake:
    def __init__(self, procs: Procs, api_key: str, python: Path) -> None:
        self.api_key = api_key
        log_path = ART / "fake-evals-server.log"
        # The log is appended to by every session: read only what this server writes.
        offset = log_path.stat().st_size if log_path.exists() else 0
        self.proc = procs.start(
            "fake-evals-server",
            [
                str(python),
                "-m",
                "airflow_provider_aoai_evals.testing",
                "--port",
                "0",
                "--flavor",
                "openai",
                "--api-key",
                api_key,
                "--request-log-limit",
                "2000000",
                "--queued-seconds",
                "1",
                "--run-seconds",
                "100000",
            ],  # API-created runs finish only when a test says so
            env={k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")},
            log_path=log_path,
        )
        line = wait_for(
            "FakeEvalsServer to listen",
            lambda: re.search(rb"listening on (http://127\.0\.0\.1:\d+)", log_path.read_bytes()[offset:]),
            timeout=30,
            interval=0.2,
        )
        self.url = line.group(1).decode()
        self.base_url = self.url + "/v1"
        self.http = requests.Session()

    def ctl(self, method: str, path: str, body: Any = None) -> Any:
        r = self.http.request(method, f"{self.url}/_fake/{path}", json=body, timeout=60)
        r.raise_for_status()
        return r.json() if r.content else None

    def api(self, method: str, path: str, body: Any = None) -> Any:
        r = self.http.request(
            method,
            f"{self.base_url}{path}",
            json=body,
            timeout=30,
            headers={"Authorization": f"Bearer {self.api_key}"},
        )
        r.raise_for_status()
        return r.json()

    def upload_golden_set(self, n: int) -> str:
        """Upload ``n`` headline rows through the Files API (as a user uploads a dataset); the file id."""
        rows = b"".join(
            json.dumps({"item": {"headline": f"h{i}", "label": "News"}}).encode() + b"\n" for i in range(n)
        )
        r = self.http.post(
            f"{self.base_url}/files",
            files={"file": ("golden.jsonl", rows)},
            data={"purpose": "evals"},
            headers={"Authorization": f"Bearer {self.api_key}"},
            timeout=30,
        )
        r.raise_for_status()
        return str(r.json()["id"])

    def add_eval(self, name: str) -> str:
        return str(self.ctl("POST", "evals", {"name": name})["id"])

    def add_run(self, eval_id: str, name: str, **script: Any) -> str:
        body = {
            "eval_id": eval_id,
            "name": name,
            "script": script or {"queued_seconds": 0.5, "in_progress_seconds": 100000},
        }
        return str(self.ctl("POST", "runs", body)["id"])

    def set_status(self, run_id: str, status: str) -> None:
        self.ctl("POST", f"runs/{run_id}/status", {"status": status})

    def get_run(self, eval_id: str, run_id: str) -> dict[str, Any]:
        return dict(self.api("GET", f"/evals/{eval_id}/runs/{run_id}"))

    def inject(self, **fault: Any) -> None:
        self.ctl("POST", "faults", fault)

    def requests_log(self) -> list[dict[str, Any]]:
        return list(self.ctl("GET", "requests")["data"])


# ---- Airflow ---------------------------------------------------------------------------------------------------
class Airflow:
    """One Airflow deployment: api-server, scheduler, dag-processor and triggerer, LocalExecutor, PostgreSQL."""

    COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")

    def __init__(
        self,
        name: str,
        venv: Path,
        home: Path,
        db_url: str,
        procs: Procs,
        extra_env: dict[str, str],
        bundles: list[tuple[str, Path]],
    ) -> None:
        self.name, self.venv, self.home, self.procs = name, venv, home, procs
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.components: dict[str, Proc] = {}
        # Every triggerer started, by name, alive or not; components["triggerer"] is the current one (the
        # latest started that is still alive), which the single-triggerer scenarios use.
        self.triggerers: dict[str, Proc] = {}
        self.triggerer_generation = 0
        shutil.rmtree(home, ignore_errors=True)
        home.mkdir(parents=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTHON", "VIRTUAL_ENV"))}
        env.update(
            {
                "AIRFLOW_HOME": str(home),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "12",
                "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "256",
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",  # the suite unpauses what it runs
                "AIRFLOW__CORE__FERNET_KEY": _fernet_key(),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
                "AIRFLOW__CORE__DAGS_FOLDER": str(bundles[0][1]),
                "AIRFLOW__API__BASE_URL": self.url,
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__SECRET_KEY": secrets.token_hex(16),
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(home / "logs"),
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "30",
                "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(
                    [
                        {
                            "name": bname,
                            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                            "kwargs": {"path": str(path), "refresh_interval": 5},
                        }
                        for bname, path in bundles
                    ]
                ),
                "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "15",
                "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "3",
                "AIRFLOW__SCHEDULER__TRIGGER_TIMEOUT_CHECK_INTERVAL": "5",
                "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "120",
                "AIRFLOW__WEBSERVER__WARN_DEPLOYMENT_EXPOSURE": "False",
            }
        )
        env.update(extra_env)
        self.env = env
        self.http = requests.Session()
        self._token: str | None = None

    # -- processes -----------------------------------------------------------------------------------------
    def airflow(self, *args: str, timeout: float = 600) -> str:
        proc = subprocess.run(  # noqa: S603
            [str(self.venv / "bin" / "airflow"), *args],
            env=self.env,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode:
            raise RuntimeError(
                f"airflow {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                f"{proc.stderr[-5000:]}"
            )
        return proc.stdout

    def migrate(self) -> None:
        self.airflow("db", "migrate")

    def _start(self, component: str, name: str | None = None, env: dict[str, str] | None = None) -> Proc:
        argv = [str(self.venv / "bin" / "airflow"), component]
        if component == "api-server":
            argv += ["--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
        name = name or component
        proc = self.procs.start(
            f"{self.name}-{name}",
            argv,
            {**self.env, **(env or {})},
            ART / self.name / f"{name}.log",
            cwd=self.home,
        )
        self.components[component] = proc
        if component == "triggerer":
            self.triggerers[name] = proc
        return proc

    def start(self) -> None:
        for component in self.COMPONENTS:
            self._start(component)
        wait_for(
            f"{self.name} api-server",
            lambda: self.http.get(f"{self.url}/api/v2/monitor/health", timeout=5).ok,
            timeout=180,
            on_timeout=self.dump,
        )
        wait_for(
            f"{self.name} scheduler, triggerer and dag-processor healthy",
            self._healthy,
            timeout=180,
            on_timeout=self.dump,
        )

    def wait_healthy(self, timeout: float = 180) -> None:
        """Until every current component is alive and the api-server reports them healthy."""
        wait_for(f"{self.name} components healthy", self._healthy, timeout=timeout, on_timeout=self.dump)

    def _healthy(self) -> bool:
        for proc in self.components.values():
            if not proc.alive():
                raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}")
        h = self.http.get(f"{self.url}/api/v2/monitor/health", timeout=5).json()
        return all(
            (h.get(k) or {}).get("status") == "healthy" for k in ("scheduler", "triggerer", "dag_processor")
        )

    # -- triggerers: any number at once, each by name ------------------------------------------------------
    # Airflow spreads triggers over every alive triggerer (one whose job heartbeat is younger than
    # [triggerer] triggerer_health_check_threshold), each up to its [triggerer] capacity; a triggerer whose
    # heartbeat is older, or whose job ended, has its triggers adopted by the others.
    def triggerer(self, name: str | None = None) -> Proc:
        """The triggerer called ``name``; without a name, the current one (``components["triggerer"]``)."""
        return self.triggerers[name] if name is not None else self.components["triggerer"]

    def alive_triggerers(self) -> list[str]:
        """Names of the triggerers whose process is alive (a SIGSTOPped one is alive), oldest first."""
        return [name for name, proc in self.triggerers.items() if proc.alive()]

    def start_triggerer(self, name: str | None = None, env: dict[str, str] | None = None) -> Proc:
        """Start a triggerer, another one if some are running; it becomes the current one. Unnamed, it is
        called ``triggerer-<n>`` (n counts the unnamed restarts); ``env`` is added to the deployment's
        environment for this process only (e.g. its ``[triggerer] capacity``). Its log is
        ``<name>.log``. A triggerer started while another is alive serves its logs on a free port
        (two cannot both listen on ``[logging] trigger_log_server_port``, 8794)."""
        if name is None:
            self.triggerer_generation += 1
            name = f"triggerer-{self.triggerer_generation}"
        if name in self.triggerers and self.triggerers[name].alive():
            raise RuntimeError(f"triggerer {name} is already running")
        extra = dict(env or {})
        if self.alive_triggerers():
            extra.setdefault("AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT", str(free_port()))
        return self._start("triggerer", name, extra)

    def kill_triggerer(self, name: str | None = None) -> int:
        """SIGKILL a triggerer and its trigger-runner child (the whole process group): a crash, no cleanup.
        Without a name, the current one. Returns its pid."""
        proc = self.triggerer(name)
        pid = proc.pid
        proc.kill_group(signal.SIGKILL)
        proc.popen.wait(10)
        self._repoint_triggerer(proc)
        return pid

    def stop_triggerer(self, name: str) -> None:
        """SIGSTOP a triggerer's whole process group: frozen (a long GC pause, a stopped container), not
        ended; its heartbeat stops, so after the threshold the others adopt its triggers."""
        self.triggerer(name).kill_group(signal.SIGSTOP)

    def cont_triggerer(self, name: str) -> None:
        """SIGCONT a triggerer frozen by :meth:`stop_triggerer`: it goes on where it stopped."""
        self.triggerer(name).kill_group(signal.SIGCONT)

    def terminate_triggerer(self, name: str, timeout: float = 60.0) -> float:
        """Stop a triggerer gracefully, as a process manager does: SIGTERM to its main process only, which
        stops its trigger runner and ends its job; wait for it to exit (SIGKILL of the group after
        ``timeout``, then TimeoutError). Returns the seconds it took to exit."""
        proc = self.triggerer(name)
        start = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill_group(signal.SIGKILL)
            proc.popen.wait(10)
            raise TimeoutError(f"triggerer {name} did not exit within {timeout:.0f}s of SIGTERM") from None
        finally:
            proc.kill_group(signal.SIGKILL)  # whatever outlived the main process (none expected)
            self._repoint_triggerer(proc)
        return time.monotonic() - start

    def _repoint_triggerer(self, gone: Proc) -> None:
        """After ``gone`` ended: if it was the current triggerer, the latest started alive one is."""
        if self.components.get("triggerer") is gone:
            alive = self.alive_triggerers()
            if alive:
                self.components["triggerer"] = self.triggerers[alive[-1]]

    def stop(self) -> None:
        for component in ("scheduler", "triggerer", "dag-processor", "api-server"):
            if component == "triggerer":
                for proc in self.triggerers.values():
                    proc.stop()
            elif component in self.components:
                self.components[component].stop()

    def dump(self) -> None:
        procs = list(self.components.values())
        procs += [p for p in self.triggerers.values() if p not in procs]
        dump_logs(procs)

    # -- REST API v2 ----------------------------------------------------------------------------------------
    @property
    def token(self) -> str:
        if self._token is None:  # [core] simple_auth_manager_all_admins: a token without credentials
            r = self.http.get(f"{self.url}/auth/token", timeout=30)
            r.raise_for_status()
            self._token = str(r.json()["access_token"])
        return self._token

    def rest(
        self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200, 201), **params: Any
    ) -> Any:
        r = self.http.request(
            method,
            f"{self.url}/api/v2{path}",
            json=body,
            params=params or None,
            timeout=60,
            headers={"Authorization": f"Bearer {self.token}"},
        )
        if r.status_code not in ok:
            raise RuntimeError(f"{method} {path} -> {r.status_code}: {r.text[:2000]}")
        return r.json() if r.content else None

    def wait_dag(self, dag_id: str, timeout: float = 240) -> None:
        def parsed() -> bool:
            r = self.http.get(
                f"{self.url}/api/v2/dags/{dag_id}",
                timeout=30,
                headers={"Authorization": f"Bearer {self.token}"},
            )
            return r.ok

        wait_for(f"DAG {dag_id} to be parsed", parsed, timeout=timeout, interval=2, on_timeout=self.dump)

    def unpause(self, dag_id: str) -> None:
        self.rest("PATCH", f"/dags/{dag_id}", {"is_paused": False})

    def trigger(self, dag_id: str, conf: dict[str, Any], run_id: str | None = None) -> str:
        body: dict[str, Any] = {"logical_date": None, "conf": conf}
        if run_id:
            body["dag_run_id"] = run_id
        return str(self.rest("POST", f"/dags/{dag_id}/dagRuns", body)["dag_run_id"])

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        return dict(self.rest("GET", f"/dags/{dag_id}/dagRuns/{run_id}"))

    def dag_runs(self, dag_id: str) -> list[dict[str, Any]]:
        return list(self.rest("GET", f"/dags/{dag_id}/dagRuns", limit=100)["dag_runs"])

    def wait_dag_run(self, dag_id: str, run_id: str, timeout: float) -> str:
        state = wait_for(
            f"DAG run {dag_id}/{run_id} to finish",
            lambda: (s := self.dag_run(dag_id, run_id)["state"]) in ("success", "failed") and s,
            timeout=timeout,
            interval=3,
            on_timeout=self.dump,
        )
        return str(state)

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            page = self.rest(
                "GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", limit=100, offset=len(out)
            )
            out += page["task_instances"]
            if not page["task_instances"] or len(out) >= page["total_entries"]:
                return out

    def task_instance(self, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
        suffix = f"/{map_index}" if map_index >= 0 else ""
        return dict(self.rest("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}{suffix}"))

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int, map_index: int = -1) -> str:
        r = self.http.get(
            f"{self.url}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
            params={"map_index": str(map_index), "full_content": "true"},
            timeout=60,
            headers={"Authorization": f"Bearer {self.token}", "Accept": "application/json"},
        )
        r.raise_for_status()
        return r.text

    def python(self, script: Path, *args: str, timeout: float = 300) -> Any:
        """Run a helper script with this deployment's Python and environment; it prints one JSON document."""
        proc = subprocess.run(  # noqa: S603
            [str(self.venv / "bin" / "python"), str(script), *args],
            env=self.env,
            cwd=self.home,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode:
            raise RuntimeError(f"{script.name} failed ({proc.returncode}):\n{proc.stderr[-5000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])


def _fernet_key() -> str:
    import base64

    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def pids_of_cmdline(fragment: str) -> list[int]:
    """Processes whose command line (as set by setproctitle) contains ``fragment``."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if fragment in cmd:
            found.append(int(d.name))
    return found


def search_files(roots: list[Path], needles: list[str]) -> dict[str, Any]:
    """Every file under ``roots`` (directories, recursively, or files), searched as bytes for any needle: counts and the files hit."""
    hits: list[str] = []
    files = size = 0
    encoded = [n.encode() for n in needles]
    seen: set[Path] = set()
    for root in roots:
        for path in [root] if root.is_file() else sorted(root.rglob("*")):
            if not path.is_file() or path.resolve() in seen:
                continue
            seen.add(path.resolve())
            try:
                data = path.read_bytes()
            except OSError:
                continue
            files += 1
            size += len(data)
            if any(n in data for n in encoded):
                hits.append(str(path))
    return {"files": files, "bytes": size, "hits": hits}


def file_audit_negative_control(roots: dict[str, Path], secret: str, needles: list[str]) -> dict[str, bool]:
    """Plant ``secret`` in one new file under each root (a task log, a component log...), check that
    :func:`search_files` reports every planted file, then delete them. Returns {root name: found}."""
    planted: dict[str, Path] = {}
    try:
        for name, root in roots.items():
            path = root / "e2e-planted-canary" / f"{name}.log"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"INFO - connecting with headers {{'Authorization': 'Bearer {secret}'}}\n")
            planted[name] = path
        hits = set(search_files(list(roots.values()), needles)["hits"])
        return {name: str(path) in hits for name, path in planted.items()}
    finally:
        for path in planted.values():
            shutil.rmtree(path.parent, ignore_errors=True)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("import this module from e2e/tests")

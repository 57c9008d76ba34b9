#!/usr/bin/env bash
# `make dist`: build the sdist and wheel into dist/ and check that what a user installs works:
#   scripts/dist.sh PYTHON CONSTRAINTS_FILE
# e.g. scripts/dist.sh .venv/bin/python constraints/airflow-3.3.2-py3.11.txt
#  1. python -m build (sdist, then the wheel from the unpacked sdist, so a file missing from the sdist
#     breaks the wheel too); 2. twine check --strict on both; 3. scripts/check_dist.py on their file lists;
#  4. the wheel (not the checkout) installed into a fresh venv outside the repository, from the pinned
#     constraints, then used from a directory outside the repository with its own AIRFLOW_HOME: the
#     provider and its connection type registered, the fake server's CLI, and example_nightly_eval run by
#     `airflow dags test` against FakeEvalsServer, all from the installed wheel.
set -euo pipefail
python=${1:?python of the build venv}
constraints=${2:?constraints file}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
# Both are used after the working directory changes: make them absolute.
[[ $python != */* ]] || python=$(cd "$(dirname "$python")" && pwd)/$(basename "$python")
[[ $constraints == /* ]] || constraints=$repo/$constraints

step() { echo "== dist: $* (at ${SECONDS}s)"; }

# ---- 1-3: build and check the files ----------------------------------------------------------------
rm -rf dist
step "python -m build"
# uv builds the isolated build environment (pip would take several times as long); quiet unless it fails.
if ! log=$("$python" -m build --installer uv --outdir dist . 2>&1); then
  echo "$log"
  exit 1
fi
ls -l dist
step "twine check --strict"
"$python" -m twine check --strict dist/*
step "scripts/check_dist.py"
"$python" scripts/check_dist.py dist

# ---- 4: install the wheel outside the repository and use it ----------------------------------------
wheel=$(ls dist/*.whl)
version=$("$python" scripts/check_dist.py --print-version)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/aoai-evals-dist-XXXX")
tmp=$(cd "$tmp" && pwd -P)
fake_pid=
cleanup() {
  if [[ -n $fake_pid ]]; then kill "$fake_pid" 2>/dev/null || true; wait "$fake_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
case $tmp/ in
  "$(pwd -P)"/*) echo "the temporary directory $tmp is inside the repository; set TMPDIR elsewhere" >&2; exit 1 ;;
esac

step "install $(basename "$wheel")[azure] into a fresh venv in $tmp (constraints: ${constraints#"$repo"/})"
# The build venv's own interpreter, not its venv: the new venv must see nothing installed there.
base_python=$("$python" -c 'import sys; print(sys._base_executable)')
"$python" -m uv venv --quiet --python "$base_python" "$tmp/venv"
"$python" -m uv pip install --quiet --system-certs --python "$tmp/venv/bin/python" -c "$constraints" \
  "$wheel[azure]"

# A clean Airflow environment, as scripts/airflow-env.sh builds one, but rooted in the temporary directory.
while IFS= read -r name; do unset "$name"; done < <(compgen -e | grep -E '^AIRFLOW' || true)
unset PYTHONPATH PYTHONHOME PYTHONSTARTUP VIRTUAL_ENV
home=$tmp/airflow-home
mkdir -p "$home/dags" "$tmp/work" "$tmp/exports"
export AIRFLOW_HOME=$home
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="sqlite:///$home/airflow.db"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__DAGS_FOLDER=$home/dags
export AIRFLOW__CORE__PLUGINS_FOLDER=$home/plugins
export AIRFLOW__LOGGING__BASE_LOG_FOLDER=$home/logs
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=False
export AIRFLOW__LOGGING__LOGGING_LEVEL=WARNING
export PATH=$tmp/venv/bin:$PATH
py=$tmp/venv/bin/python
cp example_dags/example_nightly_eval.py "$home/dags/"
# From here on the checkout is out of reach: `python -m` puts the working directory on sys.path.
cd "$tmp/work"

step "the package comes from the installed wheel"
"$py" - "$tmp/venv" "$version" <<'EOF'
import sys
from importlib.metadata import version
from pathlib import Path

import airflow_provider_aoai_evals as package
from airflow_provider_aoai_evals.get_provider_info import get_provider_info

venv, want = Path(sys.argv[1]), sys.argv[2]
where = Path(package.__file__).resolve()
assert where.is_relative_to(venv), f"imported from {where}, not from the venv {venv}"
found = (package.__version__, version("airflow-provider-aoai-evals"), get_provider_info()["versions"][0])
assert found == (want, want, want), f"__version__, metadata, provider info: {found}; expected {want}"
assert (where.parent / "py.typed").is_file(), "py.typed is not installed"
print(f"{package.__name__} {want} from {where.parent}")
EOF

step "airflow db migrate"
if ! log=$(airflow db migrate 2>&1); then echo "$log"; exit 1; fi

step "airflow providers list, airflow providers hooks"
airflow providers list -o json >"$tmp/providers.json"
airflow providers hooks -o json >"$tmp/hooks.json"
"$py" - "$tmp" "$version" <<'EOF'
import json
import sys
from pathlib import Path

tmp, want = Path(sys.argv[1]), sys.argv[2]
providers = json.loads((tmp / "providers.json").read_text())
rows = [r for r in providers if r["package_name"] == "airflow-provider-aoai-evals"]
assert rows, "airflow providers list does not show airflow-provider-aoai-evals"
assert rows[0]["version"] == want, f"airflow providers list shows version {rows[0]['version']!r}, not {want!r}"
print(f"provider {rows[0]['package_name']} {rows[0]['version']}")
hooks = [r for r in json.loads((tmp / "hooks.json").read_text()) if r["connection_type"] == "aoai_evals"]
assert hooks, "airflow providers hooks does not list the aoai_evals connection type"
assert hooks[0]["class"] == "airflow_provider_aoai_evals.hooks.evals.EvalsHook", hooks[0]
print(f"connection type aoai_evals: {hooks[0]['class']} ({hooks[0]['package_name']})")
EOF

step "python -m airflow_provider_aoai_evals.testing --help"
"$py" -m airflow_provider_aoai_evals.testing --help | sed -n 1p

step "airflow dags test example_nightly_eval against FakeEvalsServer"
key=sk-dist-check-not-a-real-key
"$py" -m airflow_provider_aoai_evals.testing --port 0 --api-key "$key" --queued-seconds 1 --run-seconds 2 \
  >"$tmp/fake.out" 2>"$tmp/fake.err" &
fake_pid=$!
url=
for _ in $(seq 100); do  # its first stdout line names the port it bound
  url=$(sed -n 's/^FakeEvalsServer listening on \(http:[^ ]*\).*/\1/p' "$tmp/fake.out")
  [[ -n $url ]] && break
  kill -0 "$fake_pid" 2>/dev/null || break
  sleep 0.1
done
if [[ -z $url ]]; then echo "FakeEvalsServer did not start:"; cat "$tmp/fake.out" "$tmp/fake.err"; exit 1; fi
echo "FakeEvalsServer at $url"
export AIRFLOW_CONN_AOAI_EVALS_DEFAULT="{\"conn_type\": \"aoai_evals\", \"host\": \"$url/v1\", \"password\": \"$key\"}"
export AIRFLOW_VAR_AOAI_EVALS_EXPORT_ROOT=file://$tmp/exports
export AOAI_EVALS_EXAMPLE_POLL_INTERVAL=1
if ! log=$(airflow dags test example_nightly_eval 2>&1); then
  echo "$log" | tail -n 60
  exit 1
fi
# The exit code only says the DAG run did not fail; check that the good run was promoted and exported.
"$py" - "$tmp/exports" <<'EOF'
import sys
from pathlib import Path

from airflow.models.dagrun import DagRun
from airflow.utils.session import create_session
from sqlalchemy import select

with create_session() as session:
    (run,) = session.scalars(select(DagRun).where(DagRun.dag_id == "example_nightly_eval")).all()
    states = {ti.task_id: str(ti.state) for ti in run.get_task_instances(session=session)}
expected = {"ensure_eval": "success", "run_eval": "success", "export_failures": "success",
            "quality_gate": "success", "promote": "success", "alert": "skipped"}
assert (str(run.state), states) == ("success", expected), (run.state, states)
exported = list(Path(sys.argv[1]).rglob("failures.jsonl"))
assert len(exported) == 1 and exported[0].stat().st_size > 0, exported
print(f"dag run {run.run_id}: {run.state}; " + ", ".join(f"{t}={s}" for t, s in states.items()))
print(f"failing items exported to {exported[0].relative_to(sys.argv[1])}")
EOF
step "ok"

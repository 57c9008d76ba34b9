#!/usr/bin/env bash
# End-to-end suite: real Airflow 3.3.2 (and a 3.1.8 smoke run) on PostgreSQL against FakeEvalsServer.
#   bash e2e/run.sh            (what `make e2e` runs; needs .venv and .venv-af31)
# Stages (each timed like scripts/timed.sh, summary at the end):
#   e2e-system-deps   apt-get install postgresql chromium chromium-driver (only what is missing; needs root)
#   e2e-python-deps   selenium, psycopg2-binary, asyncpg into the venvs (only if missing)
#   e2e-airflow-3.3   pytest e2e/tests/test_1_airflow33.py   (scenarios 1-5, 4b, 7-10)
#   e2e-airflow-3.1   pytest e2e/tests/test_2_airflow31.py   (scenario 6 + its secret audit)
# Artefacts: .artifacts/e2e/ (component logs, AIRFLOW_HOMEs with task logs, pg_dumps, screenshots, report.json).
# Every process the suite starts is listed in .artifacts/e2e/pids.txt and stopped on exit, even on failure.
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
art=.artifacts/e2e
if [[ -z ${TIMINGS_FILE:-} ]]; then  # run by hand: a fresh stage list (make passes its own)
  export TIMINGS_FILE=$repo/$art/timings.txt
  [[ ${1:-all} == all ]] && mkdir -p "$art" && : >"$TIMINGS_FILE"
fi
TIMED="bash scripts/timed.sh"
PY=.venv/bin/python

# Exact requirements of the suite (not in pyproject: the suite only; see docs/reliability.md).
PIP_33=("selenium==4.51.0" "psycopg2-binary==2.9.13" "asyncpg==0.32.0")
PIP_31=("psycopg2-binary==2.9.13" "asyncpg==0.32.0")
APT=(postgresql chromium chromium-driver)

cleanup() {
  # Whatever a killed or crashed pytest left behind: only the process groups and the cluster it recorded.
  local f=$art/pids.txt
  [[ -f $f ]] || return 0
  while read -r kind a b c; do
    case $kind in
      pgid) kill -KILL -- "-$a" 2>/dev/null || true ;;
      pgdata) [[ -d $a ]] && ${c:+$c} "$b/pg_ctl" -D "$a" -m immediate stop >/dev/null 2>&1 || true ;;
    esac
  done <"$f"
  rm -f "$f"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

system_deps() {
  local missing=()
  for p in "${APT[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]} == 0)); then echo "== system packages present: ${APT[*]}"; return 0; fi
  echo "== installing ${missing[*]}"
  local sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo -n)
  "${sudo[@]}" apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" \
      >"$art/apt-install.log" 2>&1 || { tail -30 "$art/apt-install.log"; return 1; }
  # Debian starts a default cluster on 5432; the suite uses its own, so stop that one again.
  if command -v pg_ctlcluster >/dev/null && [[ " ${missing[*]} " == *" postgresql "* ]]; then
    "${sudo[@]}" service postgresql stop >/dev/null 2>&1 || true
  fi
}

python_deps() {
  local venv=$1; shift
  local constraints=$1; shift
  if "$venv/bin/python" - "$@" <<'EOF'
import sys
from importlib.metadata import version, PackageNotFoundError
for req in sys.argv[1:]:
    name, want = req.split("==")
    try:
        if version(name) != want:
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
EOF
  then echo "== $venv has $*"; return 0; fi
  VIRTUAL_ENV=$venv "$venv/bin/uv" pip install --python "$venv/bin/python" -c "$constraints" "$@"
}

case ${1:-all} in
  system-deps) system_deps; exit ;;
  python-deps)
    python_deps .venv constraints/airflow-3.3.2-py3.11.txt "${PIP_33[@]}" &&
      python_deps .venv-af31 constraints/airflow-3.1.8-py3.11.txt "${PIP_31[@]}"
    exit ;;
  all) ;;
  *) echo "usage: e2e/run.sh [system-deps|python-deps]" >&2; exit 2 ;;
esac

mkdir -p "$art"
rm -rf "$art"/airflow-3.3 "$art"/airflow-3.1 "$art"/screenshots "$art"/report.json "$art"/*.log
: >"$art/pids.txt"
rc=0
$TIMED e2e-system-deps bash e2e/run.sh system-deps || rc=1
[[ $rc -eq 0 ]] && { $TIMED e2e-python-deps bash e2e/run.sh python-deps || rc=1; }
if [[ $rc -eq 0 ]]; then
  # Each pytest run starts its own PostgreSQL cluster and FakeEvalsServer and stops them at the end.
  $TIMED e2e-airflow-3.3 timeout 1500 $PY -m pytest -c e2e/pytest.ini e2e/tests/test_1_airflow33.py \
    2>&1 | tee "$art/pytest-3.3.log" || rc=1
  cleanup
  : >"$art/pids.txt"
  $TIMED e2e-airflow-3.1 timeout 900 $PY -m pytest -c e2e/pytest.ini e2e/tests/test_2_airflow31.py \
    2>&1 | tee "$art/pytest-3.1.log" || rc=1
fi
$TIMED --summary
# A failure's assertion sits in the middle of a long output, which CI logs may cut: repeat it last.
for log in "$art"/pytest-3.3.log "$art"/pytest-3.1.log; do
  [[ -f $log ]] && grep -q -E "^(FAILED|ERROR) " "$log" || continue
  echo "== failures in $log (first assertion lines; the whole traceback is above and in the log)"
  grep -E "^E  " "$log" | cut -c1-400 | head -40
  grep -E "^(FAILED|ERROR) " "$log" | cut -c1-400
done
echo "== e2e artefacts: $art (report.json, screenshots/, airflow-*/ logs and pg_dump.sql)"
exit $rc

#!/usr/bin/env bash
# Run a command with a clean, repo-local Airflow environment:
#   scripts/airflow-env.sh AIRFLOW_HOME cmd [args...]
# Every AIRFLOW* variable inherited from the caller's shell (a real metadata DB, connections, an
# AIRFLOW_CONFIG...) is dropped, so tests, the demo and the benchmarks never touch the user's Airflow.
# Airflow then writes only under AIRFLOW_HOME (DB, logs, airflow.cfg), which lives inside the repo.
# tests/conftest.py recognises AOAI_EVALS_AIRFLOW_ENV=1 and keeps these settings.
set -euo pipefail
home=${1:?usage: airflow-env.sh AIRFLOW_HOME cmd...}
shift
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$home"
home=$(cd "$home" && pwd)

while IFS= read -r name; do
  unset "$name"
done < <(compgen -e | grep -E '^AIRFLOW' || true)
unset PYTHONPATH PYTHONHOME PYTHONSTARTUP VIRTUAL_ENV

export AOAI_EVALS_AIRFLOW_ENV=1
export AIRFLOW_HOME=$home
export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="sqlite:///$home/airflow.db"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__DAGS_FOLDER="$repo/example_dags"
export AIRFLOW__CORE__PLUGINS_FOLDER="$home/plugins"
export AIRFLOW__LOGGING__BASE_LOG_FOLDER="$home/logs"
export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=False
exec "$@"

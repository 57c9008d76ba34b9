#!/usr/bin/env bash
# Create or update a virtual environment with uv and the pinned constraints:
#   scripts/make-venv.sh VENV_DIR CONSTRAINTS_FILE EXTRAS UV_VERSION
# e.g. scripts/make-venv.sh .venv constraints/airflow-3.3.2-py3.11.txt azure,test,lint 0.13.9
# Idempotent: an existing venv is updated in place (uv moves every pinned package to its pin).
set -euo pipefail
venv=${1:?venv dir}
constraints=${2:?constraints file}
extras=${3:?extras}
uv_version=${4:?uv version}
python=${PYTHON:-python3}

# Settings from the caller's shell that would redirect the install elsewhere or add constraints.
unset VIRTUAL_ENV PYTHONPATH PYTHONHOME UV_PYTHON UV_SYSTEM_PYTHON UV_CONSTRAINT UV_OVERRIDE \
  UV_PROJECT_ENVIRONMENT UV_BUILD_CONSTRAINT PIP_CONSTRAINT PIP_REQUIREMENT PIP_USER PIP_TARGET PIP_PREFIX

[[ -x $venv/bin/python ]] || "$python" -m venv "$venv"
if [[ "$("$venv/bin/python" -m uv --version 2>/dev/null)" != "uv $uv_version"* ]]; then
  PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/python" -m pip install --quiet --no-input "uv==$uv_version"
fi
# System certificates: works behind TLS-inspecting proxies whose CA is only in the OS trust store.
"$venv/bin/python" -m uv pip install --quiet --system-certs --python "$venv/bin/python" -c "$constraints" -e ".[$extras]"

#!/usr/bin/env bash
# Regenerate the pinned constraints, one file per tested Airflow version:
#   scripts/compile-constraints.sh [3.3.2 3.1.8 ...]
# Input:  constraints/airflow-<version>-py3.11.in  (the Airflow pin and any hand-chosen pins, with reasons)
# Output: constraints/airflow-<version>-py3.11.txt (every transitive package pinned with ==)
# The output covers runtime + the azure, test and lint extras of pyproject.toml, resolved for Python 3.11
# on Linux. Airflow's own constraint files cannot be fetched in this environment, hence this.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
uv=${UV:-uv}
versions=("$@")
[[ ${#versions[@]} -gt 0 ]] || versions=(3.3.2 3.1.8)
for v in "${versions[@]}"; do
  in=constraints/airflow-$v-py3.11.in
  out=constraints/airflow-$v-py3.11.txt
  cmd="uv pip compile pyproject.toml $in --extra azure --extra test --extra lint --python-version 3.11 --python-platform x86_64-manylinux_2_28 --no-header -o $out"
  tmp=$(mktemp)
  # shellcheck disable=SC2086
  $uv pip compile pyproject.toml "$in" --extra azure --extra test --extra lint \
    --python-version 3.11 --python-platform x86_64-manylinux_2_28 --no-header --quiet -o "$tmp"
  {
    echo "# Pinned constraints for Apache Airflow $v on Python 3.11 (Linux x86_64):"
    echo "# runtime + extras azure, test, lint of airflow-provider-aoai-evals. DO NOT EDIT BY HAND."
    echo "# Regenerate with: scripts/compile-constraints.sh $v   (uv $($uv --version | cut -d' ' -f2)), which runs"
    echo "#   $cmd"
    echo "# Hand-chosen pins from $in:"
    grep -v '^[[:space:]]*$' "$in" | sed 's/^/#   /'
    echo "#"
    cat "$tmp"
  } >"$out"
  rm -f "$tmp"
  echo "wrote $out ($(grep -c '==' "$out") pins)"
done

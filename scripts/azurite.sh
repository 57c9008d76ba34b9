#!/usr/bin/env bash
# Azurite, the Azure Storage emulator, for the Azure Blob export tests (blob service only):
#   scripts/azurite.sh install          install azurite@3.35 under .artifacts/azurite once (cached), print its path
#   scripts/azurite.sh run [ARGS...]    install if needed, then exec azurite-blob with telemetry off and ARGS
# 3.35.x is the newest line that runs on Node 20 (newer releases need Node 22). Tests start it on a free
# loopback port with in-memory storage (see tests/operators/test_output_items_azurite.py):
#   scripts/azurite.sh run --blobHost 127.0.0.1 --blobPort 0 --inMemoryPersistence --silent
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
version=${AZURITE_VERSION:-3.35}
prefix=$repo/.artifacts/azurite
bin=$prefix/node_modules/.bin/azurite-blob

install() {
  if [[ -x $bin ]] && [[ "$("$bin" --version 2>/dev/null)" == "$version"* ]]; then
    return
  fi
  command -v npm >/dev/null || { echo "azurite.sh: npm is not installed (Node 20+ needed)" >&2; exit 127; }
  mkdir -p "$prefix"
  # A lock, so parallel test processes install once.
  exec 9>"$prefix/.install.lock"
  flock 9
  if ! [[ -x $bin ]] || [[ "$("$bin" --version 2>/dev/null)" != "$version"* ]]; then
    echo "azurite.sh: installing azurite@$version into $prefix" >&2
    npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error "azurite@$version" >&2
  fi
  exec 9>&-
}

cmd=${1:-run}
[[ $# -gt 0 ]] && shift
case $cmd in
  install) install; echo "$bin" ;;
  run)
    install
    exec "$bin" --disableTelemetry --skipApiVersionCheck --loose "$@"
    ;;
  *) echo "usage: scripts/azurite.sh install | run [azurite-blob args...]" >&2; exit 2 ;;
esac

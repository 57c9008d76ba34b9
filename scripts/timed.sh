#!/usr/bin/env bash
# Run one build stage and report how long it took.
#   scripts/timed.sh STAGE cmd [args...]   run cmd; print "== stage STAGE: N.Ns (ok|FAILED rc=R)"
#   scripts/timed.sh --summary            print every stage recorded in $TIMINGS_FILE and the total
# Each stage is appended to $TIMINGS_FILE (default .artifacts/timings.txt) for the summary.
set -uo pipefail
file=${TIMINGS_FILE:-.artifacts/timings.txt}

if [[ ${1:-} == --summary ]]; then
  [[ -s $file ]] || { echo "== no stages recorded in $file"; exit 0; }
  echo "== stage timings (seconds)"
  awk -F'\t' '{ printf "   %-28s %9.1f  %s\n", $1, $2, $3; total += $2 }
              END { printf "   %-28s %9.1f\n", "TOTAL", total }' "$file"
  exit 0
fi

stage=${1:?usage: timed.sh STAGE cmd...}
shift
mkdir -p "$(dirname "$file")"
echo "== stage $stage: start"
start=$(date +%s.%N)
"$@"
rc=$?
secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
status=ok
[[ $rc -eq 0 ]] || status="FAILED rc=$rc"
printf '%s\t%s\t%s\n' "$stage" "$secs" "$status" >>"$file"
echo "== stage $stage: ${secs}s ($status)"
exit $rc

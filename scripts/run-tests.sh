#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# `make test`: the privileged suites as root, then the unit and property suites again without any
# privilege or network (docs/testing.md): inside a new user namespace (root there, nobody's
# capabilities on the host: no mounts, no loop devices, no host network) and a new network
# namespace with only `lo` up. Arguments (PYTEST_ARGS) replace all this with one plain run.
# AIRLOCK_COVERAGE=1 (CI) measures branch coverage over both passes and the `airlock` processes
# the tests start, writes docs/coverage.md and fails below the bar (scripts/coverage-report.py).
set -euo pipefail
py=$1
shift
if [ "$#" -gt 0 ]; then
  exec "$py" -m pytest -p no:cacheprovider "$@"
fi
run=("$py" -m pytest -p no:cacheprovider --durations=30)
if [ "${AIRLOCK_COVERAGE:-0}" = 1 ]; then
  export COVERAGE_FILE="$PWD/.coverage"
  rm -f "$PWD"/.coverage "$PWD"/.coverage.*
  run=("$py" -m coverage run -m pytest -p no:cacheprovider --durations=30)
fi
start=$SECONDS
"${run[@]}" tests/e2e tests/integration
echo "== privileged pass: $((SECONDS - start)) s"
echo "== unit and property tests, unprivileged and without network =="
start=$SECONDS
unshare --user --map-root-user --net -- bash -c 'ip link set lo up && exec "$@"' bash \
  "${run[@]}" tests/unit tests/property
echo "== unprivileged pass: $((SECONDS - start)) s"
if [ "${AIRLOCK_COVERAGE:-0}" = 1 ]; then
  "$py" -m coverage combine -q
  "$py" -m coverage json -q -o "$PWD/.coverage.json"
  "$py" scripts/coverage-report.py "$PWD/.coverage.json" docs/coverage.md
fi

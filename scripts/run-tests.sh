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
# The two passes run side by side: the privileged one spends most of its time waiting on one
# core (QEMU under TCG, the kernel, systemd-sysupdate), the unprivileged one needs one core and
# nothing the other touches (its own user and network namespace; pytest numbers each session's
# temporary directory).
# Its output is kept in a file and printed after the privileged pass's.
unit_log=$(mktemp /tmp/airlock-unit-pass.XXXXXX)
unit_pid=
stop_unit() {
  if [ -n "$unit_pid" ]; then kill -TERM "$unit_pid" 2>/dev/null || true; fi
  rm -f "$unit_log"
}
trap stop_unit EXIT
start=$SECONDS
(
  unit_start=$SECONDS
  status=0
  unshare --user --map-root-user --net -- bash -c 'ip link set lo up && exec "$@"' bash \
    "${run[@]}" tests/unit tests/property || status=$?
  echo "== unprivileged pass: $((SECONDS - unit_start)) s"
  exit "$status"
) >"$unit_log" 2>&1 &
unit_pid=$!
echo "== privileged pass (the unprivileged pass runs beside it, see below) =="
privileged=0
"${run[@]}" tests/e2e tests/integration || privileged=$?
echo "== privileged pass: $((SECONDS - start)) s"
unprivileged=0
wait "$unit_pid" || unprivileged=$?
unit_pid=
echo "== unit and property tests, unprivileged and without network =="
cat "$unit_log"
echo "== both passes: $((SECONDS - start)) s"
if [ "$privileged" != 0 ] || [ "$unprivileged" != 0 ]; then
  echo "make test: privileged pass exit $privileged, unprivileged pass exit $unprivileged" >&2
  exit 1
fi
if [ "${AIRLOCK_COVERAGE:-0}" = 1 ]; then
  "$py" -m coverage combine -q
  "$py" -m coverage json -q -o "$PWD/.coverage.json"
  "$py" scripts/coverage-report.py "$PWD/.coverage.json" docs/coverage.md
fi

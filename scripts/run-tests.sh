#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# `make test`: the privileged suites as root, and beside them the unit and property suites without
# any privilege or network (docs/testing.md): inside a new user namespace (root there, nobody's
# capabilities on the host: no mounts, no loop devices, no host network) and a new network
# namespace with only `lo` up. Arguments (PYTEST_ARGS) replace all this with one plain run.
# AIRLOCK_COVERAGE=1 (CI) measures branch coverage over all passes and the `airlock` processes
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
# Three pytest sessions run side by side, because the privileged tests mostly wait (QEMU under
# TCG keeps one core busy; the rest is the kernel, btrfs and systemd-sysupdate):
#   vm          the privileged tests that boot QEMU guests (tests/e2e, tests/integration/vm);
#   privileged  the other privileged tests (tests/integration);
#   unprivileged  the unit and property tests, in a new user and network namespace.
# The sessions share nothing: each has its own leak check (processes are its descendants, paths
# are under its own numbered pytest temporary directory, network namespaces carry its id), and
# every name a test makes on the host carries a unique suffix.  Each session's output is kept
# and printed when all have ended; any failing fails `make test`.
logs=$(mktemp -d /tmp/airlock-test-logs.XXXXXX)
pids=()
stop_all() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  rm -rf "$logs"
}
trap stop_all EXIT
session() {  # NAME COMMAND...: run one session in the background, its output in $logs/NAME
  local name=$1
  shift
  (
    begin=$SECONDS
    status=0
    "$@" || status=$?
    echo "== $name pass: $((SECONDS - begin)) s, exit $status"
    exit "$status"
  ) >"$logs/$name" 2>&1 &
  pids+=("$!")
}
start=$SECONDS
session vm "${run[@]}" tests/e2e tests/integration/vm
session privileged "${run[@]}" tests/integration --ignore=tests/integration/vm
session unprivileged unshare --user --map-root-user --net -- \
  bash -c 'ip link set lo up && exec "$@"' bash "${run[@]}" tests/unit tests/property
echo "== make test: three sessions started (vm, privileged, unprivileged); their output follows"
failed=()
names=(vm privileged unprivileged)
for i in 0 1 2; do
  wait "${pids[$i]}" || failed+=("${names[$i]}")
done
pids=()
for name in "${names[@]}"; do
  echo "== ${name} pass =="
  cat "$logs/$name"
done
echo "== all passes: $((SECONDS - start)) s"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "make test: failed: ${failed[*]}" >&2
  exit 1
fi
if [ "${AIRLOCK_COVERAGE:-0}" = 1 ]; then
  "$py" -m coverage combine -q
  "$py" -m coverage json -q -o "$PWD/.coverage.json"
  "$py" scripts/coverage-report.py "$PWD/.coverage.json" docs/coverage.md
fi

#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# `make test`: the privileged suites as root, then the unit and property suites again without any
# privilege or network (STYLE.md §3.5.3): inside a new user namespace (root there, nobody's
# capabilities on the host: no mounts, no loop devices, no host network) and a new network
# namespace with only `lo` up. Arguments (PYTEST_ARGS) replace all this with one plain run.
set -euo pipefail
py=$1
shift
if [ "$#" -gt 0 ]; then
  exec "$py" -m pytest -p no:cacheprovider "$@"
fi
"$py" -m pytest -p no:cacheprovider tests/e2e tests/integration
echo "== unit and property tests, unprivileged and without network =="
exec unshare --user --map-root-user --net -- bash -c \
  'ip link set lo up && exec "$0" -m pytest -p no:cacheprovider tests/unit tests/property' "$py"

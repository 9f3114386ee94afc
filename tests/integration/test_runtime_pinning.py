# SPDX-License-Identifier: MIT
"""The systemd-sysupdate the tests pin to is the one ``airlock update`` uses, on every host kind.

* The probe checks the exact version ``runtime.locate()`` reports, through ``Runtime.run``.
* A host with its own systemd-sysupdate ≥ 257: inside a throwaway overlay of the trixie root (a
  private mount namespace, nothing written to the shared root), the trixie sysupdate *is* the
  host's; ``locate()`` must pick it without looking at any runtime cache, ``Runtime.run`` must run
  it without a chroot, and ``scripts/make-runtime.sh`` must build nothing.
* sysupdate's messages reach the caller's stderr (airlock reports their tail), not the kernel log.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
from pathlib import Path
from typing import Any

import pytest

import airlock
from airlock.backends.apply import runtime
from airlock.backends.apply.runtime import Runtime
from airlock.formats import dialect
from tests.support import probes
from tests.support.oracles import RUNTIMES, require_runtime

pytestmark = pytest.mark.sysupdate

SRC = Path(airlock.__file__).resolve().parents[1]  # the tree under test (a mutant's copy too)
REPO = Path(__file__).resolve().parents[2]

# A private mount namespace: a tmpfs-backed overlay of the runtime root, /proc, /dev, /sys,
# tmpfs /run and /tmp, the sources read-only; then the runtime's own python3 runs PROGRAM.
# With "hide" the host sysupdate is masked by /dev/null (the negative control).
_RUNNER = r"""
set -e
R=$1; SRC=$2; REPO=$3; W=$4; MODE=$5; PROGRAM=$6; NAME=$7
mount -t tmpfs -o mode=0700 tmpfs "$W"
mkdir "$W/upper" "$W/work" "$W/root"
mount -t overlay overlay -o "lowerdir=$R,upperdir=$W/upper,workdir=$W/work" "$W/root"
M=$W/root
mount -t proc proc "$M/proc"
mount --rbind /dev "$M/dev"
mount --rbind /sys "$M/sys"
mount -t tmpfs tmpfs "$M/run"
mount -t tmpfs tmpfs "$M/tmp"
mkdir -p "$M/opt/src" "$M/opt/repo"
mount --bind -o ro "$SRC" "$M/opt/src"
mount --bind -o ro "$REPO" "$M/opt/repo"
if [ "$MODE" = hide ]; then mount --bind /dev/null "$M/usr/lib/systemd/systemd-sysupdate"; fi
exec chroot "$M" /usr/bin/python3 -I -c "$PROGRAM" "$NAME"
"""

_PROGRAM = r"""
import json, subprocess, sys
sys.path.insert(0, "/opt/src")
from pathlib import Path
from airlock.backends.apply.runtime import Bind, locate
from airlock.backends.apply.sysupdate import Invocation, keyring_targets
from airlock.errors import HostError
NAME = sys.argv[1]
out = {}
try:
    rt = locate(Path("/nonexistent-cache"))
except HostError as exc:
    print(json.dumps({"error": exc.code, "message": exc.message}))
    sys.exit(0)
out["located"] = [str(rt.root), rt.version, rt.chrooted]
named = locate(Path("/nonexistent-cache"), choice=NAME)
out["named"] = [str(named.root), named.version]
other = "262" if NAME == "257" else "257"
try:
    locate(Path("/nonexistent-cache"), choice=other)
    out["other"] = None
except HostError as exc:
    out["other"] = exc.message
inv = Invocation(definitions=Path("/tmp"), keyring=Path("/etc/hostname"))
out["keyring"] = [list(keyring_targets(rt, inv.keyring)),
                  inv.all_env(rt).get("SYSTEMD_OPENPGP_KEYRING")]
done = rt.run(["--version"], timeout=60)
out["version"] = [done.returncode, done.stdout.decode().split("\n")[0]]
defs = Path("/tmp/w/defs")
defs.mkdir(parents=True)
(defs / "10-a.transfer").write_text(
    "[Source]\nType=url-file\nPath=https://h/os\nMatchPattern=os_@v.raw\n\n"
    "[Target]\nPath=/run/targets/os\n")
done = rt.run(["--definitions=/srv/defs", "--offline", "--json=short", "list"],
              binds=[Bind(source=Path("/tmp/w"), target="/srv", read_only=True)], timeout=60)
out["list"] = [done.returncode, done.stdout.decode(), done.stderr.decode()[-500:]]
made = subprocess.run(["bash", "/opt/repo/scripts/make-runtime.sh", NAME], capture_output=True,
                      text=True, env={"PATH": "/usr/bin:/bin", "AIRLOCK_CACHE": "/tmp/cache"})
out["make_runtime"] = [made.returncode, made.stdout, made.stderr, Path("/tmp/cache").exists()]
print(json.dumps(out))
"""


def _as_host(tmp_path: Path, mode: str, name: str) -> dict[str, Any]:
    """Run ``_PROGRAM`` where the systemd-sysupdate of runtime ``name`` is the host's own."""
    root = require_runtime(name).root
    assert root != Path("/")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "--fork", "sh", "-c", _RUNNER, "sh",
         os.fspath(root), os.fspath(SRC), os.fspath(REPO), os.fspath(scratch), mode, _PROGRAM,
         name],
        capture_output=True, text=True, timeout=180, check=False,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.splitlines()[-1])
    assert isinstance(out, dict)
    return out


@pytest.mark.parametrize("name", RUNTIMES)
def test_a_host_sysupdate_is_used_directly(tmp_path: Path, name: str) -> None:
    major = int(name)
    out = _as_host(tmp_path, "plain", name)
    assert out["located"] == ["/", major, False]
    assert out["named"] == ["/", major]  # --runtime NAME takes the host's when it is that version
    assert "is not built" in out["other"]  # another version: its runtime root, absent here
    status, line = out["version"]
    assert status == 0
    assert line.startswith(f"systemd {name} (")
    status, stdout, stderr = out["list"]
    assert status == 0, stderr
    assert json.loads(stdout)["all"] == []
    # On a host, the host keyring goes over the keyring files that exist (the vendor one here)
    # and over the first /etc name, which sysupdate would read first; 262 also gets
    # SYSTEMD_OPENPGP_KEYRING (the host keyring's own path), since it trusts the vendor keyring
    # besides /etc's.
    targets, env = out["keyring"]
    rules = dialect.for_version(major)
    assert targets == [rules.keyrings[0], rules.keyrings[-1]]
    assert env == ("/etc/hostname" if rules.keyring_env else None)
    status, stdout, stderr, cache_made = out["make_runtime"]
    assert status == 0, stderr
    assert f"host systemd-sysupdate {name} serves runtime {name}" in stdout
    assert cache_made is False


def test_negative_control_without_the_host_sysupdate_locate_wants_the_runtime(
    tmp_path: Path,
) -> None:
    # The same world with the host binary masked: locate() now falls back to the (absent)
    # runtime cache, so the test above could tell a broken host path apart.
    out = _as_host(tmp_path, "hide", "257")
    assert out["error"] == "host.sysupdate"
    assert "not built" in str(out["message"])


def test_the_runtime_the_product_picks_is_one_the_tests_run() -> None:
    # Every oracle and differential test runs against RUNTIMES; the product's own choice must be
    # among them, or its systemd would go untested (a host with, say, its own 258).
    product = runtime.locate()
    tested = {(require_runtime(n).root, require_runtime(n).version) for n in RUNTIMES}
    assert (product.root, product.version) in tested


def test_the_probe_checks_the_exact_version_the_product_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = runtime.locate()
    assert probes.sysupdate.__wrapped__() is None
    # A locate() that claimed another version than the binary reports must fail the probe.
    claimed = Runtime(root=real.root, version=real.version + 1)
    monkeypatch.setattr(runtime, "locate", lambda *a, **k: claimed)
    probes._located.cache_clear()
    try:
        why = probes.sysupdate.__wrapped__()
    finally:
        monkeypatch.undo()
        probes._located.cache_clear()
    assert why is not None
    assert f"is {real.version}, not {real.version + 1}" in why


@pytest.fixture
def kmsg_marker() -> str:
    return f"airlock-kmsg-{secrets.token_hex(6)}"


def _kernel_log() -> str:
    return subprocess.run(
        ["dmesg"], capture_output=True, text=True, timeout=30, check=False, errors="replace"
    ).stdout


def test_sysupdate_messages_reach_stderr_not_the_kernel_log(kmsg_marker: str) -> None:
    rt = runtime.locate()
    done = rt.run([f"--component={kmsg_marker}", "list"], timeout=60)
    assert done.returncode != 0
    assert kmsg_marker in done.stderr.decode(errors="replace")
    assert kmsg_marker not in _kernel_log()


def test_negative_control_sysupdate_logging_to_the_kernel_is_seen(kmsg_marker: str) -> None:
    # What the SYSTEMD_LOG_TARGET=console default prevents, forced: the check above would see it.
    # (systemd picks the kernel log by itself as a PID 1; since ADR 0005 sysupdate is not the PID 1
    # of its namespace any more, proc's guard is, so "auto" now means the console too.)
    rt = runtime.locate()
    done = rt.run(
        [f"--component={kmsg_marker}", "list"], env={"SYSTEMD_LOG_TARGET": "kmsg"}, timeout=60
    )
    assert done.returncode != 0
    assert kmsg_marker not in done.stderr.decode(errors="replace")
    assert kmsg_marker in _kernel_log()

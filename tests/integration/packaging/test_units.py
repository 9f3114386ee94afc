# SPDX-License-Identifier: MIT
"""The package's systemd units started for real: systemd 257 boots as PID 1 of a container (the
clean root with only the .deb installed), starts ``airlock-check.service`` and then
``airlock-update.service`` as shipped (Type=notify, ProtectSystem=strict, PrivateTmp, …), and the
update lands in the world's A/B disk image and ESP on this host.

The container is systemd-nspawn 257 from an overlay of the trixie runtime (PID 1 of this machine
is not systemd; ``/run/systemd/nspawn`` is a tmpfs in a private mount namespace). The world
(tests/integration/host/world.py) is bound in at ``/srv/w`` and its btrfs at ``/srv/btrfs``; the
only configuration is what an operator writes: ``/etc/airlock/host.toml`` and a drop-in with
the staging directory and ``ReadWritePaths=`` for the image (docs/packaging.md).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from airlock import state
from airlock.layout import Layout
from tests.integration.host.conftest import mounted_btrfs
from tests.integration.host.test_update_e2e import assert_v2_installed
from tests.integration.host.world import World, build, host_transfers
from tests.integration.packaging.conftest import DebRoot, Installed, in_private_namespace
from tests.support import schemas

pytestmark = [pytest.mark.btrfs, pytest.mark.sandbox, pytest.mark.sysupdate, pytest.mark.slow]

W, BTRFS, OUT = Path("/srv/w"), Path("/srv/btrfs"), Path("/srv/out")

DROP_IN = f"""[Service]
Environment=AIRLOCK_STAGING_DIR={BTRFS}/staging
ReadWritePaths={W} {BTRFS}
"""

DRIVER_UNIT = """[Unit]
Description=airlock packaging test: start the units, record what systemd saw, power off
After=multi-user.target

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/airlock-test-driver
ExecStopPost=/usr/bin/systemctl --no-block poweroff
"""

# Start each unit as an operator would and record its result.  Every sd_notify message the service
# manager received for the update is in the journal: PID 1 logs each at debug level, in the order
# it handled them (polling StatusText would miss the short-lived ones).
DRIVER = """#!/bin/bash
set -u
out=/srv/out
exec >"$out/driver.log" 2>&1
watch() {
  local unit=$1 last="" s a i
  for i in $(seq 3000); do
    # the state first: the status read after it is the final one once the unit is inactive
    a=$(systemctl show -P ActiveState "$unit"); s=$(systemctl show -P StatusText "$unit")
    if [ "$s" != "$last" ]; then echo "$s" >> "$out/$unit.status"; last=$s; fi
    case $a in active|activating|deactivating) sleep 0.05;; *) break;; esac
  done
  systemctl show -p Type -p Result -p ExecMainStatus -p ActiveState -p StatusText "$unit" \
    > "$out/$unit.show"
}
# nspawn covers files in /proc (boot_id, …); the kernel lets a user namespace (bubblewrap) mount
# a new proc only if one is fully visible somewhere, as on any real host: provide one.
mkdir -p /run/airlock-test-proc && mount -t proc proc /run/airlock-test-proc
# In a container systemd relaxes its boot partition checks and would take the root's plain /boot
# directory for an XBOOTLDR partition, which systemd-sysupdate prefers to the configured ESP as
# $BOOT; a real host's /boot is not one unless it is. This root has none.
rm -rf /boot
timeout 120 systemctl start airlock-check.service; echo "check=$?" >> "$out/rc"
watch airlock-check.service
airlock status --json > "$out/status-checked.json"  # reads /etc/airlock/host.toml
systemctl log-level debug
timeout 120 systemctl start airlock-update.service; echo "update=$?" >> "$out/rc"
watch airlock-update.service
systemctl log-level info
airlock status --json > "$out/status-updated.json"
journalctl -u airlock-update.service -o cat --no-pager > "$out/update.journal"
systemctl show -p NextElapseUSecRealtime -p UnitFileState airlock-check.timer > "$out/timer.show"
"""


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with mounted_btrfs(tmp_path) as btrfs:
        w = build(tmp_path / "w", btrfs)
        try:
            yield w
        finally:
            w.key.close()


def _container_view(w: World) -> World:
    """The world as the container sees it: the same files at /srv/w and /srv/btrfs."""

    def inside(p: Path) -> Path:
        return W / p.relative_to(w.root)

    return dataclasses.replace(
        w, root=W, staging=BTRFS / "staging", image=inside(w.image), esp=inside(w.esp),
        release=inside(w.release), state_file=inside(w.state_file), lock=inside(w.lock),
        config=w.root / "container.toml",
    )  # fmt: skip


def _prepare(root: DebRoot, w: World) -> None:
    """The operator's files in the container, and the test driver."""
    view = _container_view(w)
    host_transfers(w.root / "etc/sysupdate.d", view.image)  # Path= as the container sees it
    view.write_config(view.copy_in(), keyring=W / w.key.pubring.relative_to(w.root))
    etc = root.upper / "etc"
    (etc / "airlock").mkdir(parents=True)
    (etc / "airlock/host.toml").write_text(view.config.read_text())
    for unit in ("airlock-check.service", "airlock-update.service"):
        (etc / f"systemd/system/{unit}.d").mkdir(parents=True)
        (etc / f"systemd/system/{unit}.d/test.conf").write_text(DROP_IN)
    (etc / "systemd/system/airlock-test-driver.service").write_text(DRIVER_UNIT)
    wants = etc / "systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    os.symlink("../airlock-test-driver.service", wants / "airlock-test-driver.service")
    driver = root.upper / "usr/local/sbin/airlock-test-driver"
    driver.parent.mkdir(parents=True)
    driver.write_text(DRIVER)
    driver.chmod(0o755)


def _boot(root: DebRoot, runner: Path, binds: dict[Path, Path]) -> None:
    """Boot ``root`` with systemd-nspawn (from a throwaway overlay of the runtime) until the
    driver powers it off.  Everything is mounted in a private mount namespace."""
    for d in ("upper", "work", "root"):
        (runner / d).mkdir(parents=True)
    # nspawn runs from the runner root made the root of the private mount namespace (pivot_root,
    # not chroot: in a chroot the kernel refuses new user namespaces, which bubblewrap needs),
    # with /proc/sys writable in the container (bubblewrap's --disable-userns sets a sysctl in
    # its own user namespace; nspawn makes /proc/sys read-only by default).
    script = """
lower=$1 base=$2 runtime=$3 runner=$4; shift 4
mount -t overlay overlay -o "lowerdir=$lower,upperdir=$base/upper,workdir=$base/work" "$base/root"
mount -t overlay overlay -o "lowerdir=$runtime,upperdir=$runner/upper,workdir=$runner/work" \
  "$runner/root"
for d in proc dev sys; do mount --rbind "/$d" "$runner/root/$d"; done
mount -t tmpfs tmpfs "$runner/root/run"
mkdir -p "$runner/root/run/systemd/nspawn" "$runner/root/mnt/c" "$runner/root/mnt/old"
mount --rbind "$base/root" "$runner/root/mnt/c"
args=()
for pair in "$@"; do
  src=${pair%%=*} dst=${pair#*=}
  mkdir -p "$runner/root/mnt/$dst"
  mount --rbind "$src" "$runner/root/mnt/$dst"
  args+=("--bind=/mnt/$dst:$dst")
done
cd "$runner/root"
pivot_root . mnt/old
exec /usr/sbin/chroot . /bin/sh -c 'umount -l /mnt/old && exec "$@"' sh \
  /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin SYSTEMD_NSPAWN_API_VFS_WRITABLE=1 \
  systemd-nspawn -q -D /mnt/c --register=no --keep-unit --private-network --boot "${args[@]}"
"""
    done = in_private_namespace(
        script,
        [root.lower, str(root.base), str(Layout.load().runtime().root), str(runner),
         *(f"{src}={dst}" for src, dst in binds.items())],
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]


_NOTIFIED = re.compile(r"Got notification message from PID \d+(?: \((.*)\)|: (.*))$")
_TAG = re.compile(r"(?:^|, )([A-Z_]+)=")


def _notifications(journal: list[str]) -> list[tuple[int, dict[str, str]]]:
    """(line index, fields) of each sd_notify message PID 1 logged (``A=1, B=text, …``)."""
    out = []
    for index, line in enumerate(journal):
        if (m := _NOTIFIED.search(line)) is None:
            continue
        joined = m.group(1) or m.group(2) or ""
        starts = list(_TAG.finditer(joined))  # a value may itself contain ", "
        fields = {
            tag.group(1): joined[tag.end() : nxt.start() if nxt else len(joined)]
            for tag, nxt in zip(starts, [*starts[1:], None], strict=True)
        }
        out.append((index, fields))
    return out


def _show(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def test_check_then_update_run_as_systemd_services(
    installed: Installed, world: World, tmp_path: Path
) -> None:
    root = installed.root.child(tmp_path / "booted")
    _prepare(root, world)
    out = tmp_path / "out"
    out.mkdir()
    _boot(root, tmp_path / "runner",
          {world.root: W, world.staging.parent: BTRFS, out: OUT})  # fmt: skip
    log = (out / "driver.log").read_text() if (out / "driver.log").exists() else "no driver log"
    assert (out / "rc").read_text().split() == ["check=0", "update=0"], log

    check = _show(out / "airlock-check.service.show")
    assert check["Type"] == "notify"
    assert (check["Result"], check["ExecMainStatus"]) == ("success", "100")  # newer available
    (checked,) = schemas.check_output(
        ("status", "--json"), (out / "status-checked.json").read_text()
    )
    assert checked["available"] == "2"
    assert checked["next"]["action"] == "update"

    update = _show(out / "airlock-update.service.show")
    assert (update["Type"], update["Result"], update["ExecMainStatus"]) == (
        "notify",
        "success",
        "0",
    )
    # What `systemctl status` showed while it ran, from every message the service manager got:
    # ready at once, each step, apply's progress, the result, received before the process exited.
    journal = (out / "update.journal").read_text().splitlines()
    got = _notifications(journal)
    assert got and got[0][1].get("READY") == "1", journal[-40:]
    seen = [tags["STATUS"] for _, tags in got if "STATUS" in tags]
    assert any(s.startswith("fetch: sandbox") for s in seen), seen
    assert any(re.fullmatch(r"apply: \d+%", s) for s in seen), seen
    assert seen[-1] == "Updated; the new version is used after a reboot.", seen
    exited = next(i for i, line in enumerate(journal) if "Main process exited" in line)
    assert got[-1][0] < exited, journal[-40:]
    (updated,) = schemas.check_output(
        ("status", "--json"), (out / "status-updated.json").read_text()
    )
    assert updated["pending"] == ["2"]
    assert updated["next"]["action"] == "reboot"
    assert any("✓ apply" in line for line in journal)
    timer = _show(out / "timer.show")
    assert timer["UnitFileState"] == "enabled"

    # The real effect, read on this host: slot B and the ESP hold version 2, the state says so.
    assert_v2_installed(world)
    saved = state.load(world.state_file)
    assert (saved.pending, saved.floor) == ("2", "1")  # the floor rises once 2 has booted
    json.dumps(saved.to_json())

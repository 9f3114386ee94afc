# SPDX-License-Identifier: MIT
"""SIGKILL ``airlock update --fetcher qemu`` while the guest downloads into ``shared`` (issue #20):
QEMU, its forwarders and its scratch files die with airlock, nothing holds the staging area, and
the rerun converges.  Survivors are looked for below this test (the session is a subreaper), in
the killed run's process tree and in its run record, never by command line."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from airlock import pids
from airlock.release.serve import ServeConfig, serving
from tests.integration.host.conftest import btrfs_dir  # noqa: F401 - the fixture
from tests.integration.host.test_update_e2e import assert_no_leftovers, assert_v2_installed
from tests.integration.host.world import World, build, events
from tests.support import killer, leaks
from tests.support.killer import Point
from tests.support.releases import write_vm_transfers

pytestmark = [
    pytest.mark.vm,
    pytest.mark.btrfs,
    pytest.mark.sysupdate,
    pytest.mark.slow,
    pytest.mark.timeout(900),  # two runs through QEMU of up to 400 s each
]

QEMU = "qemu-system-x86_64"


@pytest.fixture
def world(tmp_path: Path, btrfs_dir: Path, guest_dir: Path) -> Iterator[World]:  # noqa: F811
    w = build(tmp_path / "w", btrfs_dir)
    write_vm_transfers(w.root / "etc/vm-sysupdate.d")
    try:
        yield w
    finally:
        w.key.close()


def test_qemu_dies_with_a_sigkilled_airlock_update_and_the_rerun_converges(world: World) -> None:
    w = world
    shared = w.staging / "shared"
    recorded: set[int] = set()

    def guest_is_writing() -> bool:
        if not (shared.is_dir() and any(shared.iterdir())):
            return False
        record = json.loads((w.staging / "run.json").read_text())
        for child in record["children"]:
            for key in ("guard", "init"):
                who = pids.ProcessId.from_json(child.get(key))
                if who is not None:
                    recorded.add(who.pid)
        return True

    with serving(ServeConfig(root=w.release, port=0)) as server:
        (w.root / "etc/update-url").write_text(server.url + "\n")
        w.write_config(
            ["/usr/bin/airlock", "agent", "--share", "/host", "--timeout", "240"],
            {"fetcher.timeout_s": 300},
        )
        killed = killer.kill_at(
            [sys.executable, "-m", "airlock", "update", str(w.staging), "--json",
             "--fetcher", "qemu", "--config", str(w.config)],
            Point(name="qemu-downloading", step="fetch", ready=guest_is_writing),
            timeout_s=400,
        )  # fmt: skip
        assert killed.returncode == -signal.SIGKILL
        assert QEMU in killed.programs  # the guest was running when airlock died
        assert killer.gone(killed.tree) == set()
        assert killer.gone(recorded) == set()
        assert not [p for p in leaks.descendants(os.getpid()) if leaks.exe_name(p) == QEMU]
        assert killer.released(w.staging) == set()  # no 9p export of shared is left
        assert list((w.staging / "tmp").glob("airlock-qemu-*")) == []  # its guard removed it

        rerun = w.update("--fetcher", "qemu", timeout=400)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        assert events(rerun.stdout)[-1]["outcome"] == "updated"
    assert_v2_installed(w)
    assert_no_leftovers(w)
    assert not os.path.lexists(w.staging / "run.json")

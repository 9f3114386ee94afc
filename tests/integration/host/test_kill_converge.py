# SPDX-License-Identifier: MIT
"""SIGKILL ``airlock update --json`` right after the ``step-started`` event of each step.

Then the rerun converges (v2 installed, state recorded) with no mounts, snapshots or locks left.
No test hook in the product: the test only reads the JSON events."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from airlock import lock, state
from airlock.fsutil import mounts_below

from .test_update_e2e import assert_v2_installed
from .world import World, build, events

pytestmark = [pytest.mark.btrfs, pytest.mark.sandbox, pytest.mark.sysupdate]

STEPS = ["lock", "prepare", "clean", "fetch", "freeze", "inspect", "apply", "record", "cleanup"]


@pytest.fixture
def world(tmp_path: Path, btrfs_dir: Path) -> Iterator[World]:
    w = build(tmp_path / "w", btrfs_dir)
    try:
        yield w
    finally:
        w.key.close()


def _orphans(w: World) -> list[int]:
    """Processes of a killed run: a sandbox (names the staging dir) or sysupdate (the image)."""
    markers = (str(w.staging).encode(), str(w.image).encode())
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit() and int(pid) != os.getpid():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                if any(m in cmdline for m in markers):
                    found.append(int(pid))
            except OSError:
                pass
    return found


def _kill_after(w: World, step: str) -> bool:
    """Run update, SIGKILL it right after step-started(step); True if the kill happened."""
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airlock",
            "update",
            str(w.staging),
            "--json",
            "--config",
            str(w.config),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert p.stdout is not None
    killed = False
    for line in p.stdout:
        ev = json.loads(line)
        if ev.get("event") == "step-started" and ev.get("step") == step:
            os.kill(p.pid, signal.SIGKILL)
            killed = True
            break
    p.stdout.close()
    p.wait(timeout=120)
    return killed


@pytest.mark.parametrize("step", STEPS)
def test_sigkill_at_each_step_then_rerun_converges(world: World, step: str) -> None:
    w = world
    assert _kill_after(w, step)
    # A child started by the killed run (sysupdate during apply) dies with it (setpriv
    # --pdeathsig + unshare --kill-child); allow only the kernel's reaping delay.
    deadline = time.monotonic() + 10
    while _orphans(w) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _orphans(w) == []
    rerun = w.update()
    assert rerun.returncode == 0, rerun.stderr
    assert events(rerun.stdout)[-1]["outcome"] in ("updated", "up-to-date")
    assert_v2_installed(w)
    saved = state.load(w.state_file)
    # 2 is installed (also when the run was killed between apply and record) but has not booted:
    # the floor stays at the running 1 until it has.
    assert (saved.pending, saved.floor, saved.booted) == ("2", "1", "1")
    assert saved.last_check is not None
    assert not os.path.lexists(w.staging / "snapshot")
    assert mounts_below(w.staging) == []
    assert mounts_below(w.root) == []
    with lock.hold(w.lock):
        pass
    assert _orphans(w) == []

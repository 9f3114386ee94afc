# SPDX-License-Identifier: MIT
"""``airlock demo`` SIGKILLed during its first update leaves nothing but its work directory, and the
next ``airlock demo`` removes that first (README: "nothing stays behind").

Checked from the host, attributed without command lines: every process the demo had (found below
it at the kill: the server, the update, the sandbox, sysupdate, gpg) is gone; no process is left in
any mount, network or PID namespace the demo made (so its mounts, its loopback-only network and
the netns handle are gone with them); no loop device is backed by a file of its work directory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from airlock.backends.fetcher import unprivileged
from airlock.lab import workdir
from tests.support import killer
from tests.support.killer import Point

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.btrfs,
    pytest.mark.sandbox,
    pytest.mark.sysupdate,
    pytest.mark.slow,
    pytest.mark.timeout(1500),
]


def _loops_under(path: Path) -> set[str]:
    found = set()
    for dev in Path("/sys/block").glob("loop*"):
        try:
            backing = (dev / "loop" / "backing_file").read_text().strip()
        except OSError:
            continue
        if backing.startswith(os.fspath(path)):
            found.add(f"{dev.name} {backing}")
    return found


def test_demo_killed_during_its_first_update_leaves_only_a_swept_work_directory(
    new_processes: Callable[[], set[int]],
) -> None:
    parent = workdir.default_parent()  # this session's TMPDIR (tests/conftest.py)
    before = set(parent.glob(f"{workdir.PREFIX}*"))
    demo = [sys.executable, "-m", "airlock", "demo", "--json"]
    # The first update's sandbox is running: the demo is inside `airlock update` 1.0 -> 2.0.
    killed = killer.kill_at(demo, Point(name="demo", step=None, child=("bwrap",)), timeout_s=900)
    assert killed.returncode == -signal.SIGKILL
    assert "bwrap" in killed.programs
    assert killer.gone(killed.tree) == set()
    deadline = time.monotonic() + 10
    while killer.inhabited(killed.namespaces) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert killer.inhabited(killed.namespaces) == set()
    assert len(killed.namespaces) >= 3  # its mount and network namespaces, the guards' PID ones
    (work,) = set(parent.glob(f"{workdir.PREFIX}*")) - before
    assert (work / workdir.LOCK).exists()
    deadline = time.monotonic() + 10
    while _loops_under(work) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _loops_under(work) == set()
    assert [m for m in Path("/proc/self/mountinfo").read_text().split() if str(work) in m] == []
    # The sandbox's guard died with it, so the scratch of the killed lab's share is still there
    # (the control that the check below can fail) ...
    scratch = unprivileged.scratch_path(unprivileged.SANDBOX_PREFIX, work / workdir.SHARE)
    assert scratch.is_dir()

    # The next demo removes the killed one's work directory first, then runs through.
    again = subprocess.run(demo, capture_output=True, text=True, timeout=1200, check=False)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"removed {work}" in again.stderr.replace("'", "")
    assert not work.exists()
    assert not scratch.exists()  # ... and the lab that swept the work directory removed it
    assert set(parent.glob(f"{workdir.PREFIX}*")) == before
    assert new_processes() == set()

# SPDX-License-Identifier: MIT
"""SIGTERM (``systemctl stop``, ``kill``) stops ``airlock update`` cleanly: the fetcher is gone,
nothing is mounted, no snapshot or lock is left, exit 130; the next run then updates normally.

The negative control is the crash matrix next door (test_crash_matrix.py): SIGKILLed, the run
cannot clean up; its processes die with it only through the guards, and the next run's prepare
step converges.  The fetcher is found as the crash matrix finds processes: by descent from the
airlock process, never by command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from airlock import lock
from airlock.errors import ExitStatus
from airlock.fsutil import mounts_below
from tests.support import killer, leaks

from .world import World

pytestmark = [pytest.mark.btrfs, pytest.mark.sandbox, pytest.mark.sysupdate]


def test_sigterm_during_fetch_cleans_up_and_exits_130(world: World) -> None:
    w = world
    w.write_config(["/bin/sleep", "60"])  # a fetcher that is still running when the stop comes
    p = subprocess.Popen(
        [sys.executable, "-m", "airlock", "update", str(w.staging), "--json",
         "--config", str(w.config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert p.stdout is not None
    for line in p.stdout:
        if json.loads(line) == {"v": 1, "event": "step-started", "step": "fetch",
                                "detail": "sandbox, timeout 60 s"}:  # fmt: skip
            break
    deadline = time.monotonic() + 10
    tree: set[int] = set()
    while time.monotonic() < deadline:  # the sandbox is up: its payload, sleep, runs
        tree = leaks.descendants(p.pid)
        if any(leaks.exe_name(pid) == "sleep" for pid in tree):
            break
        time.sleep(0.05)
    assert any(leaks.exe_name(pid) == "sleep" for pid in tree), "the fetcher never started"
    p.send_signal(signal.SIGTERM)
    _, stderr = p.communicate(timeout=60)
    assert p.returncode == ExitStatus.INTERRUPTED, stderr
    assert "error: interrupted" in stderr
    assert "Traceback" not in stderr
    assert killer.gone(tree, within_s=5) == set()  # the whole tree, the fetcher included
    assert not os.path.lexists(w.staging / "snapshot")
    assert mounts_below(w.staging) == []
    assert mounts_below(w.root) == []
    with lock.hold(w.lock):
        pass
    w.write_config(w.copy_in())
    assert w.update().returncode == 0

# SPDX-License-Identifier: MIT
"""Negative controls for the leak check (tests/support/leaks.py): leak on purpose, see it seen."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tests.support import leaks


def test_an_orphaned_daemon_is_seen(leak_scope: tuple[str, Path]) -> None:
    base, tmpdir = leak_scope
    before = leaks.snapshot(base, tmpdir)
    # Double fork into a new session: the parent is gone at once, the daemon is an orphan.
    subprocess.run(["/bin/sh", "-c", "setsid sleep 300 >/dev/null 2>&1 &"], check=True)
    leaked = leaks.new_since(before, base, tmpdir, wait_s=0)
    deadline = time.monotonic() + 10
    while "sleep 300" not in str(leaked) and time.monotonic() < deadline:  # still exec'ing
        time.sleep(0.01)
        leaked = leaks.new_since(before, base, tmpdir, wait_s=0)
    found = {int(p.split()[0]) for p in leaked.get("processes", [])}
    try:
        assert len(found) == 1
        assert "sleep 300" in leaked["processes"][0]
    finally:
        for pid in found:
            os.kill(pid, signal.SIGKILL)
        while leaks.alive(found):
            time.sleep(0.01)
    assert leaks.new_since(before, base, tmpdir, wait_s=0) == {}


def test_a_temporary_file_is_seen(leak_scope: tuple[str, Path]) -> None:
    base, tmpdir = leak_scope
    before = leaks.snapshot(base, tmpdir)
    left = tmpdir / "airlock-left-behind"
    left.mkdir()
    try:
        assert leaks.new_since(before, base, tmpdir, wait_s=0) == {"tmp": [left.name]}
    finally:
        left.rmdir()


def test_processes_that_are_not_ours_are_never_counted() -> None:
    ours = leaks.descendants(os.getpid())
    assert 1 not in ours
    assert os.getppid() not in ours  # whoever started pytest is not its descendant

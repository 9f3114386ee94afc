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


def test_a_process_below_a_world_supervisor_is_the_worlds_and_only_then(
    leak_scope: tuple[str, Path],
) -> None:
    """A module's world may restart its own services (s6 after each update): what runs below its
    supervisor is not a test's leak while the world is named — and is one when it is not."""
    base, tmpdir = leak_scope
    supervisor = subprocess.Popen(
        ["/bin/sh", "-c", "read -r go; sleep 300 & wait"], stdin=subprocess.PIPE
    )
    try:
        before = leaks.snapshot(base, tmpdir)  # the supervisor is already there
        assert supervisor.stdin is not None
        supervisor.stdin.write(b"go\n")
        supervisor.stdin.flush()
        deadline = time.monotonic() + 10
        while len(leaks.descendants(supervisor.pid)) < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        restarted = leaks.descendants(supervisor.pid)
        assert len(restarted) == 1
        with leaks.world(lambda: [supervisor.pid]):
            assert leaks.new_since(before, base, tmpdir, wait_s=0) == {}
        # The control: the same process, no world named.
        leaked = leaks.new_since(before, base, tmpdir, wait_s=0)
        assert {int(p.split()[0]) for p in leaked["processes"]} == restarted
    finally:
        for pid in leaks.descendants(supervisor.pid):
            os.kill(pid, signal.SIGKILL)
        supervisor.kill()
        supervisor.wait()
        assert supervisor.stdin is not None
        supervisor.stdin.close()

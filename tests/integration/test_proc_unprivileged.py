# SPDX-License-Identifier: MIT
"""airlock.proc for an unprivileged caller (the agent in the sandbox, the release tools as a user):
no PID namespace can be made, so the guard runs the command as a plain child (ADR 0005,
decision 3)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.support import leaks

SRC = str(Path(__file__).resolve().parents[2] / "src")
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]

_RUN = """
from airlock import proc
with proc.spawn(["/bin/sh", "-c", "setsid sleep 300 >/dev/null 2>&1 & exit 0"]) as child:
    print("contained", child.contained, "status", child.wait(30), flush=True)
"""

_HOLD = """
import sys, time
from airlock import proc
with proc.spawn(["/bin/sh", "-c", "echo ready; exec sleep 300"], stdout=sys.stdout) as child:
    time.sleep(600)
"""


def _as_nobody(program: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*NOBODY, "/usr/bin/python3", "-c", program],
        stdout=subprocess.PIPE,
        text=True,
        env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"},
        cwd="/",
    )


def test_what_the_command_left_is_killed_when_it_exits(
    new_processes: Callable[[], set[int]],
) -> None:
    caller = _as_nobody(_RUN)
    out, _ = caller.communicate(timeout=60)
    assert out.split() == ["contained", "False", "status", "0"]
    assert new_processes() == set()  # the init, a subreaper, killed the orphaned daemon


def test_the_command_dies_with_its_killed_caller(new_processes: Callable[[], set[int]]) -> None:
    caller = _as_nobody(_HOLD)
    try:
        assert caller.stdout is not None
        assert caller.stdout.readline() == "ready\n"
        deadline = time.monotonic() + 10
        while not any(leaks.exe_name(p) == "sleep" for p in leaks.descendants(caller.pid)):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        tree = leaks.descendants(caller.pid)
        caller.send_signal(signal.SIGKILL)
        assert caller.wait(timeout=30) == -signal.SIGKILL
        deadline = time.monotonic() + 10
        while leaks.alive(tree) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [leaks.describe(p) for p in leaks.alive(tree)] == []  # guard, init, command
        assert new_processes() == set()
    finally:
        for pid in new_processes():
            os.kill(pid, signal.SIGKILL)

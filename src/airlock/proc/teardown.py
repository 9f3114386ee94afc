# SPDX-License-Identifier: MIT
"""Teardown guards: for what is not airlock's child (Spectrum's VM, which s6 runs), a process that
runs ``Teardown`` steps if airlock dies while it is armed (``guard.py``, teardown mode)."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
from collections.abc import Iterator, Sequence

from airlock import pids
from airlock.errors import HostError
from airlock.proc.child import GRACE_S, guard_argv, read_report
from airlock.proc.observe import Ended, Started, notify
from airlock.proc.teardown_steps import Teardown
from airlock.proc.tools import base_env


def _start_teardown(steps: Sequence[Teardown]) -> tuple[subprocess.Popen[bytes], socket.socket]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    spec = json.dumps([s.as_json() for s in steps])
    try:
        popen = subprocess.Popen(
            guard_argv(theirs.fileno(), "teardown", spec),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=base_env(),
            process_group=0,
            pass_fds=(theirs.fileno(),),
            close_fds=True,
        )
    except OSError as exc:
        ours.close()
        raise HostError(f"Failed to start the teardown guard: {exc.strerror}") from exc
    finally:
        theirs.close()
    words = read_report(ours, ("teardown guard",))
    if words != ["armed"]:
        popen.kill()
        popen.wait()
        ours.close()
        raise HostError("Failed to start the teardown guard", code="host.command")
    return popen, ours


@contextlib.contextmanager
def teardown_guard(steps: Sequence[Teardown]) -> Iterator[None]:
    """If airlock dies inside the ``with`` block, a separate process runs ``steps``.

    Leaving the block by any path (airlock is alive and cleans up itself) disarms it.

    Raises:
        HostError: the guard could not be started.
    """
    popen, ours = _start_teardown(steps)
    who = pids.identify(popen.pid) or pids.ProcessId(pid=popen.pid, start=0)
    notify(Started(guard=who, init=None, teardown=tuple(steps)))
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            ours.sendall(b"disarm\n")
        try:
            popen.wait(timeout=GRACE_S)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()
        ours.close()
        notify(Ended(guard=who))


def teardown_now(steps: Sequence[Teardown]) -> bool:
    """Run ``steps`` now, as a guard would on airlock's death; True if no critical step failed.

    Raises:
        HostError: the guard could not be started.
    """
    popen, ours = _start_teardown(steps)
    ours.close()  # exactly what airlock's death looks like to the guard
    budget = sum(s.timeout_s for s in steps) + GRACE_S
    try:
        return popen.wait(timeout=budget) == 0
    except subprocess.TimeoutExpired:
        popen.kill()
        popen.wait()
        return False

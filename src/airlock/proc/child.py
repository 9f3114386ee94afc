# SPDX-License-Identifier: MIT
"""``Child``: a process under its guard (``guard.py``), started by ``start``.

The guard reports on a unix socket whose other end only airlock holds (``started INIT ns|plain``,
answered by ``ack`` once we hold a pidfd of the namespace's init, or ``failed ERRNO WHAT``); that
socket is also its lifeline: closing it (airlock's death) makes the guard kill everything.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import select
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from airlock import pids
from airlock.errors import HostError
from airlock.proc.observe import Ended, Started, notify
from airlock.proc.tools import tool
from airlock.text import display_argv

logger = logging.getLogger(__name__)

GRACE_S = 3.0
START_TIMEOUT_S = 60.0  # the guard reports its start well within this, even on a loaded machine
GUARD = Path(__file__).with_name("guard.py")
_POLL_MAX_S = 1e6  # poll() takes an int of milliseconds; a longer timeout is waited out in full

Stream = int | IO[bytes] | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RunAs:
    """Who a command runs as: set up by its guard (``guard.py``, ``AS``) just before ``execve``.

    Attributes:
        uid: the host uid every one of its uids becomes (no supplementary groups are kept).
        gid: the host gid every one of its gids becomes.
        netns: a network namespace file (``/run/netns/NAME``) it joins first, as root.
        own_netns: instead, a new network namespace of its own, made first, as root: nothing in
            it but a loopback interface that is down (for a command that needs no network at
            all; the namespace ends with its last process).
        binds: ``(source, target)`` bind mounts made first, as root, visible only in the
            command's own mount namespace: how a path below a directory the uid may not
            enter reaches it (``target`` is an existing directory it may enter).
        max_processes: ``RLIMIT_NPROC`` (soft and hard): how many processes and threads that
            uid may have on the whole machine before a fork or thread start fails.
    """

    uid: int
    gid: int
    netns: Path | None = None
    own_netns: bool = False
    binds: tuple[tuple[Path, Path], ...] = ()
    max_processes: int | None = None

    def spec(self) -> str:
        """The guard's ``AS`` argument.

        Raises:
            ValueError: an id out of range, or a path the guard's syntax cannot carry.
        """
        if not (0 < self.uid < 2**32 - 1 and 0 < self.gid < 2**32 - 1):
            raise ValueError("run-as ids must be unprivileged (1 to 2^32-2)")
        paths = [self.netns or Path("-")] + [p for pair in self.binds for p in pair]
        for path in paths:
            text = os.fspath(path)
            if text != "-" and (not os.path.isabs(text) or any(c in text for c in ":=\0")):
                raise ValueError(f"cannot pass {text!r} to the guard")
        if self.max_processes is not None and self.max_processes < 1:
            raise ValueError("run-as max_processes must be positive")
        if self.own_netns and self.netns is not None:
            raise ValueError("run-as takes a network namespace to join or its own, not both")
        binds = [f"{os.fspath(s)}={os.fspath(d)}" for s, d in self.binds]
        nproc = "-" if self.max_processes is None else str(self.max_processes)
        netns = "+" if self.own_netns else os.fspath(self.netns or "-")
        return ":".join([str(self.uid), str(self.gid), nproc, netns, *binds])


def describe_status(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"returned non-zero exit code {returncode}"


# The guard is imported, not run as a script: a script is compiled on every start (≈ 4 ms of
# each child's), a module's bytecode is cached like the rest of airlock's.  Its directory is
# appended to the path, after the standard library, so nothing there can shadow a module it uses.
_LAUNCH = "import sys; sys.path.append(sys.argv.pop(1)); import guard; guard.main(sys.argv[1:])"


def guard_argv(ctl: int, mode: str, *args: str) -> list[str]:
    return [
        sys.executable,
        "-I",
        "-S",
        "-c",
        _LAUNCH,
        os.fspath(GUARD.parent),
        str(ctl),
        mode,
        *args,
    ]


def read_report(sock: socket.socket, args: tuple[str, ...]) -> list[str]:
    """The guard's first line.

    Raises:
        HostError: the guard died or stayed silent.
    """
    sock.settimeout(START_TIMEOUT_S)
    data = b""
    try:
        while not data.endswith(b"\n"):
            chunk = sock.recv(256)
            if not chunk:
                break
            data += chunk
    except OSError as exc:
        raise HostError(
            f"Failed to start {display_argv(args)}: the guard did not report ({exc})",
            code="host.command",
        ) from exc
    return data.decode("ascii", "replace").split()


class Child:
    """A child under its guard.  ``pid`` is the guard's; the child's namespace ends with it."""

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        ctl: socket.socket,
        init: int,
        init_fd: int,
        *,
        contained: bool,
    ) -> None:
        self._popen, self._ctl, self._init_fd = popen, ctl, init_fd
        # The guard is our child and not reaped yet, so its pid is still its own.  Waiting on a
        # pidfd returns as soon as it exits; Popen.wait(timeout) polls with sleeps that double up
        # to 50 ms and so added up to half a child's run time to every short command.
        self._guard_fd = os.pidfd_open(popen.pid)
        self.guard_id = pids.identify(popen.pid) or pids.ProcessId(pid=popen.pid, start=0)
        self.init_id = pids.identify(init)
        self.contained = contained  # False: an unprivileged caller, no PID namespace

    @property
    def pid(self) -> int:
        """The guard's pid (the leader of the process group everything here belongs to)."""
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        """The command's exit status (negative: killed by that signal), once it is known."""
        return self._popen.returncode

    def poll(self) -> int | None:
        """The exit status if the child has finished (and left nothing behind), else ``None``."""
        if self._popen.poll() is None:
            return None
        self._await_init()
        return self._popen.returncode

    def wait(self, timeout: float | None) -> int | None:
        """Wait up to ``timeout`` seconds; the exit status, or ``None`` if still running."""
        if not self._wait_guard(timeout):
            return None
        self._await_init()
        return self._popen.returncode

    def _wait_guard(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` seconds (``None``: for ever) for the guard; True once reaped."""
        if self._popen.returncode is None and timeout is not None and timeout < _POLL_MAX_S:
            poller = select.poll()
            poller.register(self._guard_fd, select.POLLIN)
            if not poller.poll(max(0, math.ceil(timeout * 1000))):
                return False
        self._popen.wait()  # it has exited (or no timeout): waitpid returns at once
        return True

    def kill(self) -> None:
        """SIGTERM to everything here, SIGKILL after ``GRACE_S``; returns once all are gone."""
        if self._popen.poll() is None:  # not reaped: its pid (the group's id) cannot be reused
            self._signal(signal.SIGTERM)
            if not self._wait_guard(GRACE_S):
                self._signal(signal.SIGKILL)
                self._popen.wait()
        self._await_init()

    def _signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._popen.pid, sig)
        if sig == signal.SIGKILL:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                signal.pidfd_send_signal(self._init_fd, sig)

    def _await_init(self) -> None:
        """The init's exit completes only once its namespace is empty; wait for that."""
        if self._init_fd < 0:
            return
        if not pids.wait_gone_fd(self._init_fd, timeout_s=GRACE_S):
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._init_fd, signal.SIGKILL)
            if not pids.wait_gone_fd(self._init_fd, timeout_s=30.0):
                logger.warning("the namespace of pid %d did not end", self._popen.pid)
                return
        os.close(self._init_fd)
        self._init_fd = -1

    def close(self) -> None:
        """Stop what is left and release the guard (never before it is gone)."""
        try:
            self.kill()
        finally:
            self._ctl.close()
            if self._guard_fd >= 0:
                os.close(self._guard_fd)
                self._guard_fd = -1
            notify(Ended(guard=self.guard_id))


def start(
    args: tuple[str, ...],
    *,
    env: dict[str, str],
    cwd: Path | None,
    stdin: Stream,
    stdout: Stream,
    stderr: Stream,
    pass_fds: Sequence[int],
    share_mounts: bool,
    scratch: Sequence[Path],
    share_pids: bool = False,
    run_as: RunAs | None = None,
) -> Child:
    program = args[0] if os.path.isabs(args[0]) else tool(args[0])
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    required = "1" if os.geteuid() == 0 else "0"
    mounts = "host" if share_pids else "shared" if share_mounts else "own"
    remove = [os.fspath(p.absolute()) for p in scratch]
    if run_as is not None and mounts != "own":
        raise ValueError("run_as needs the command's own mount namespace (its binds stay there)")
    as_ = "-" if run_as is None else run_as.spec()
    try:
        popen = subprocess.Popen(
            [
                *guard_argv(theirs.fileno(), "run", required, mounts, as_, *remove, "--"),
                program,
                *args[1:],
            ],
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            env=env,
            cwd=cwd,
            process_group=0,
            pass_fds=(*pass_fds, theirs.fileno()),
            close_fds=True,
        )
    except OSError as exc:
        ours.close()
        raise HostError(
            f"Failed to start {display_argv(args)}: {exc.strerror}", code="host.command"
        ) from exc
    finally:
        theirs.close()
    try:
        words = read_report(ours, args)
        if len(words) == 3 and words[0] == "started" and words[1].isdigit():
            # The guard does not reap the init before our "ack": the pid is still the init's.
            init_fd = os.pidfd_open(int(words[1]))
            ours.sendall(b"ack\n")
        else:
            init_fd = -1
    except (HostError, OSError):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGKILL)
        popen.wait()
        ours.close()
        raise
    if init_fd >= 0:
        if words[2] != "ns":
            logger.debug("no PID namespace for %s (unprivileged)", display_argv(args))
        child = Child(popen, ours, int(words[1]), init_fd, contained=words[2] == "ns")
        notify(Started(guard=child.guard_id, init=child.init_id))
        return child
    popen.wait()
    ours.close()
    reason = "the guard failed"
    if len(words) == 3 and words[0] == "failed" and words[1].isdigit():
        reason = os.strerror(int(words[1])) if int(words[1]) else "it exited"
        if words[2] in ("unshare", "setup"):
            reason = f"cannot set up its namespaces: {reason}"
    raise HostError(f"Failed to start {display_argv(args)}: {reason}", code="host.command")

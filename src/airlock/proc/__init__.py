# SPDX-License-Identifier: MIT
"""The only package that starts processes, and the reason none of them outlives airlock.

Every start takes an argv list (never a shell string), a rebuilt minimal environment and stdin
from /dev/null unless input is given; a bare program name is resolved once, against the fixed
``BASE_PATH`` (``tool``), never against the caller's ``PATH``.  Every child runs under the guard
(``proc/guard.py``, ADR 0005): the guard puts it in a new PID namespace whose init dies with the
guard, and the guard dies with airlock, whatever kills airlock (SIGKILL and the OOM killer
included).  When the namespace's init is gone the kernel has killed every process in it, so a
child that ``wait`` or ``kill`` reports finished has left nothing running behind: no daemon, no
double-forked grandchild, no orphan writer.

``run`` waits with a timeout (SIGTERM to the namespace, SIGKILL after a grace period,
``CommandTimedOut``) and keeps a bounded amount of output (``drain.Drain``).  ``spawn`` starts a
long-running child that is stopped on every exit path of its ``with`` block.  ``guard`` arms a
process that runs teardown commands if airlock dies inside its ``with`` block, for what is not
airlock's child (a VM supervised by s6).  ``observe`` lets the pipeline record who is running, so
that the next run can stop what a killed one left (``pipeline/leftovers.py``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from airlock.drain import Drain
from airlock.errors import CommandFailed, CommandTimedOut
from airlock.proc.child import (
    GRACE_S,
    GUARD,
    START_TIMEOUT_S,
    Child,
    RunAs,
    Stream,
    describe_status,
    start,
)
from airlock.proc.observe import Ended, Observer, Started, observe
from airlock.proc.teardown import teardown_guard, teardown_now
from airlock.proc.teardown_steps import Teardown
from airlock.proc.tools import BASE_PATH, base_env, check_executable, tool
from airlock.text import display_argv, tail

__all__ = [
    "BASE_PATH",
    "GRACE_S",
    "GUARD",
    "START_TIMEOUT_S",
    "Argv",
    "Child",
    "Completed",
    "Ended",
    "Observer",
    "RunAs",
    "Started",
    "Teardown",
    "base_env",
    "check_executable",
    "kill",
    "observe",
    "run",
    "spawn",
    "teardown_guard",
    "teardown_now",
    "tool",
    "wait",
]

logger = logging.getLogger(__name__)

Argv = Sequence[str | os.PathLike[str]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Completed:
    """A finished child process."""

    argv: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: bytes


def _environment(env: Mapping[str, str] | None, inherit_env: bool) -> dict[str, str]:
    if inherit_env:
        return {**os.environ, **(env or {})}
    return base_env(env)


@contextlib.contextmanager
def spawn(
    argv: Argv,
    *,
    env: Mapping[str, str] | None = None,
    inherit_env: bool = False,
    cwd: Path | None = None,
    stdin: Stream = subprocess.DEVNULL,
    stdout: Stream = subprocess.DEVNULL,
    stderr: Stream = subprocess.DEVNULL,
    pass_fds: Sequence[int] = (),
    share_mounts: bool = False,
    scratch: Sequence[Path] = (),
    share_pids: bool = False,
    run_as: RunAs | None = None,
) -> Iterator[Child]:
    """Start a long-running child that is stopped, with everything it started, on every exit path.

    The caller waits with ``wait(child, timeout)``; leaving the ``with`` block kills what is left.
    The child gets its own mount namespace (a copy of ours, with a /proc of its own PID
    namespace) unless ``share_mounts``: for the commands that mount or unmount for us.  The
    ``scratch`` directories are removed once the child and everything it started are gone, even
    if airlock is dead by then.  With ``run_as`` (airlock must be root, and the mount namespace
    its own) the command runs as that unprivileged host uid and gid (``RunAs``).

    Raises:
        HostError: the program could not be started.
    """
    args = tuple(os.fspath(a) for a in argv)
    logger.debug("spawning %s", display_argv(args))
    child = start(
        args,
        env=_environment(env, inherit_env),
        cwd=cwd,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        pass_fds=pass_fds,
        share_mounts=share_mounts,
        scratch=scratch,
        share_pids=share_pids,
        run_as=run_as,
    )
    try:
        yield child
    finally:
        child.close()


def _feed(fd: int, data: bytes) -> None:
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except OSError:
        pass  # the child closed its stdin early: what it read is what it gets
    finally:
        os.close(fd)


def run(
    argv: Argv,
    *,
    timeout: float,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    inherit_env: bool = False,
    cwd: Path | None = None,
    max_output: int = 1 << 20,
    check: bool = True,
    pass_fds: Sequence[int] = (),
    share_mounts: bool = False,
    scratch: Sequence[Path] = (),
    share_pids: bool = False,
    run_as: RunAs | None = None,
) -> Completed:
    """Run ``argv`` to completion (a ``spawn`` whose output is drained and bounded).

    Args:
        argv: program and arguments; a bare program name is resolved by ``tool``.
        timeout: seconds before everything the command started is terminated.
        input: bytes fed to stdin (stdin is /dev/null otherwise).
        env: variables added to the minimal base environment.
        inherit_env: start from ``os.environ`` instead of the minimal environment.
        cwd: working directory.
        max_output: bytes kept of stdout and of stderr each.
        check: raise ``CommandFailed`` on a non-zero exit status.
        pass_fds: file descriptors the child inherits.
        share_mounts: run in our mount namespace (the command mounts or unmounts for us).
        share_pids: no PID namespace either (only the lab, for a long-lived world whose /proc
            must show the pids its processes have): a subreaper that kills what the command
            left when it exits, and the command dies with the guard; implies ``share_mounts``.
        scratch: directories removed once the command and all it started are gone.
        run_as: the unprivileged host uid and gid the command runs as (``RunAs``).

    Returns:
        The completed process.

    Raises:
        CommandFailed: non-zero exit and ``check``.
        CommandTimedOut: the timeout expired.
        HostError: the program could not be started.
    """
    args = tuple(os.fspath(a) for a in argv)
    out_r, out_w = os.pipe2(os.O_CLOEXEC)
    err_r, err_w = os.pipe2(os.O_CLOEXEC)
    in_r, in_w = os.pipe2(os.O_CLOEXEC) if input is not None else (-1, -1)
    out, err = Drain(out_r, head=max_output), Drain(err_r, head=max_output)
    try:
        with spawn(
            args,
            env=env,
            inherit_env=inherit_env,
            cwd=cwd,
            stdin=in_r if input is not None else subprocess.DEVNULL,
            stdout=out_w,
            stderr=err_w,
            pass_fds=pass_fds,
            share_mounts=share_mounts,
            scratch=scratch,
            share_pids=share_pids,
            run_as=run_as,
        ) as child:
            for fd in (out_w, err_w, in_r):
                if fd >= 0:
                    os.close(fd)
            out_w = err_w = in_r = -1
            if input is not None:
                threading.Thread(target=_feed, args=(in_w, input), daemon=True).start()
                in_w = -1
            returncode = child.wait(timeout)
            if returncode is None:
                child.kill()
                raise CommandTimedOut(
                    f"{display_argv(args)} timed out after {timeout:g} s and was killed"
                )
    finally:
        for fd in (out_w, err_w, in_r, in_w):
            if fd >= 0:
                os.close(fd)
        out.close(GRACE_S)
        err.close(GRACE_S)
    result = Completed(argv=args, returncode=returncode, stdout=out.head, stderr=err.head)
    if check and returncode != 0:
        detail = tail(result.stderr) or tail(result.stdout)
        raise CommandFailed(
            f"{display_argv(args)} {describe_status(returncode)}"
            + (f": {detail}" if detail else ""),
            returncode=returncode,
            stdout=result.stdout,
            stderr=result.stderr,
        )
    return result


def wait(child: Child, *, timeout: float) -> int | None:
    """Wait up to ``timeout`` seconds; return the exit status, or ``None`` if still running."""
    return child.wait(timeout)


def kill(child: Child) -> None:
    """Terminate a spawned child and everything it started (SIGTERM, grace, SIGKILL)."""
    child.kill()

# SPDX-License-Identifier: MIT
"""The only module that starts processes.

Every start takes an argv list (never a shell string), a required timeout, a rebuilt minimal
environment and stdin from /dev/null unless input is given.  Each child runs in its own process
group; on timeout the whole group gets SIGTERM, then SIGKILL after a grace period, is reaped, and
``CommandTimedOut`` is raised.  Output is captured with a bound.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from airlock.errors import CommandFailed, CommandTimedOut, HostError
from airlock.text import display_argv, tail

logger = logging.getLogger(__name__)

BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
GRACE_S = 3.0

Argv = Sequence[str | os.PathLike[str]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Completed:
    """A finished child process."""

    argv: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: bytes


def check_executable(path: Path, *, hint: str | None = None) -> None:
    """An executable from config: absolute, a regular file, root-owned, not writable by others.

    Raises:
        HostError: ``host.executable``.
    """
    try:
        st = path.stat()
    except OSError as exc:
        raise HostError(
            f"Failed to find {path}: {exc.strerror}", code="host.executable", hint=hint
        ) from exc
    if not path.is_absolute() or not stat.S_ISREG(st.st_mode) or not st.st_mode & 0o111:
        raise HostError(f"Refusing {path}: not an absolute executable file", code="host.executable")
    if st.st_uid != 0 or st.st_mode & 0o022:
        raise HostError(
            f"Refusing {path}: not owned by root or writable by others", code="host.executable"
        )


def base_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A minimal environment: fixed PATH, C.UTF-8, plus ``extra``."""
    env = {"PATH": BASE_PATH, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
    if extra:
        env.update(extra)
    return env


def _describe_status(returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"returned non-zero exit code {returncode}"


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=GRACE_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    else:
        # The leader is gone; make sure no straggler of its group survives.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


def _drain(stream: IO[bytes], sink: bytearray, max_output: int) -> None:
    while True:
        chunk = stream.read(65536)
        if not chunk:
            return
        room = max_output - len(sink)
        if room > 0:
            sink += chunk[:room]


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
) -> Completed:
    """Run ``argv`` to completion.

    Args:
        argv: program and arguments; the program should be an absolute path.
        timeout: seconds before the process group is terminated.
        input: bytes fed to stdin (stdin is /dev/null otherwise).
        env: variables added to the minimal base environment.
        inherit_env: start from ``os.environ`` instead of the minimal environment.
        cwd: working directory.
        max_output: bytes kept of stdout and of stderr each.
        check: raise ``CommandFailed`` on a non-zero exit status.
        pass_fds: file descriptors the child inherits.

    Returns:
        The completed process.

    Raises:
        CommandFailed: non-zero exit and ``check``.
        CommandTimedOut: the timeout expired.
        HostError: the program could not be started.
    """
    args = tuple(os.fspath(a) for a in argv)
    full_env = dict(os.environ) if inherit_env else {}
    full_env.update(base_env(env) if not inherit_env else (env or {}))
    logger.debug("running %s", display_argv(args))
    try:
        proc = subprocess.Popen(
            args,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=full_env,
            cwd=cwd,
            process_group=0,
            pass_fds=tuple(pass_fds),
            close_fds=True,
        )
    except OSError as exc:
        raise HostError(
            f"Failed to start {display_argv(args)}: {exc.strerror}", code="host.command"
        ) from exc
    out, err = bytearray(), bytearray()
    assert proc.stdout is not None  # noqa: S101 - PIPE given above
    assert proc.stderr is not None  # noqa: S101 - PIPE given above
    readers = [
        threading.Thread(target=_drain, args=(proc.stdout, out, max_output), daemon=True),
        threading.Thread(target=_drain, args=(proc.stderr, err, max_output), daemon=True),
    ]
    for t in readers:
        t.start()
    if input is not None:
        assert proc.stdin is not None  # noqa: S101 - PIPE given above
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write(input)
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
    deadline = time.monotonic() + timeout
    try:
        proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        for t in readers:
            t.join(timeout=GRACE_S)
        raise CommandTimedOut(
            f"{display_argv(args)} timed out after {timeout:g} s and was killed"
        ) from None
    except BaseException:
        _kill_group(proc)
        raise
    for t in readers:
        t.join(timeout=GRACE_S)
    result = Completed(argv=args, returncode=proc.returncode, stdout=bytes(out), stderr=bytes(err))
    if check and proc.returncode != 0:
        detail = tail(result.stderr) or tail(result.stdout)
        raise CommandFailed(
            f"{display_argv(args)} {_describe_status(proc.returncode)}"
            + (f": {detail}" if detail else ""),
            returncode=proc.returncode,
            stdout=result.stdout,
            stderr=result.stderr,
        )
    return result


@contextlib.contextmanager
def spawn(
    argv: Argv,
    *,
    env: Mapping[str, str] | None = None,
    inherit_env: bool = False,
    cwd: Path | None = None,
    stdout: int | IO[bytes] | None = subprocess.DEVNULL,
    stderr: int | IO[bytes] | None = subprocess.DEVNULL,
    pass_fds: Sequence[int] = (),
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a long-running child that is terminated (whole group) on every exit path.

    The caller waits with ``wait(proc, timeout)``; leaving the ``with`` block kills what is left.
    """
    args = tuple(os.fspath(a) for a in argv)
    full_env = dict(os.environ) if inherit_env else {}
    full_env.update(base_env(env) if not inherit_env else (env or {}))
    logger.debug("spawning %s", display_argv(args))
    try:
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            env=full_env,
            cwd=cwd,
            process_group=0,
            pass_fds=tuple(pass_fds),
            close_fds=True,
        )
    except OSError as exc:
        raise HostError(
            f"Failed to start {display_argv(args)}: {exc.strerror}", code="host.command"
        ) from exc
    try:
        yield proc
    finally:
        if proc.poll() is None:
            _kill_group(proc)
        else:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)


def wait(proc: subprocess.Popen[bytes], *, timeout: float) -> int | None:
    """Wait up to ``timeout`` seconds; return the exit status, or ``None`` if still running."""
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def kill(proc: subprocess.Popen[bytes]) -> None:
    """Terminate a spawned child's whole process group now (SIGTERM, grace, SIGKILL)."""
    _kill_group(proc)

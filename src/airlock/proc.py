# SPDX-License-Identifier: MIT
"""The only module that starts processes, and the reason none of them outlives airlock.

Every start takes an argv list (never a shell string), a rebuilt minimal environment and stdin
from /dev/null unless input is given; a bare program name is resolved once, against the fixed
``BASE_PATH`` (``tool``), never against the caller's ``PATH``.  Every child runs under the guard
(``airlock/guard.py``, ADR 0005): the guard puts it in a new PID namespace whose init dies with the
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
import functools
import json
import logging
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from airlock import pids
from airlock.drain import Drain
from airlock.errors import CommandFailed, CommandTimedOut, HostError
from airlock.text import display, display_argv, tail

logger = logging.getLogger(__name__)

BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
GRACE_S = 3.0
START_TIMEOUT_S = 60.0  # the guard reports its start well within this, even on a loaded machine
GUARD = Path(__file__).with_name("guard.py")

Argv = Sequence[str | os.PathLike[str]]
Stream = int | IO[bytes] | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Completed:
    """A finished child process."""

    argv: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Teardown:
    """One command a ``guard`` runs if airlock dies (see ``airlock/guard.py``).

    Attributes:
        argv: absolute program path and arguments.
        timeout_s: the step's process group is SIGKILLed after this.
        when: ``always``, or only if the step before ran and succeeded (``ok``) or failed
            (``failed``: a fallback).
        critical: its failure (unless a following ``failed`` step succeeds) fails the teardown.
    """

    argv: tuple[str, ...]
    timeout_s: float = 60.0
    when: str = "always"
    critical: bool = True

    def as_json(self) -> dict[str, object]:
        """The form the guard reads."""
        return {
            "argv": list(self.argv),
            "timeout_s": self.timeout_s,
            "when": self.when,
            "critical": self.critical,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Started:
    """A guard started: ``init`` is its namespace's init (``None`` for a teardown guard)."""

    guard: pids.ProcessId
    init: pids.ProcessId | None
    teardown: tuple[Teardown, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Ended:
    """A guard and everything under it are gone, or a teardown guard was disarmed."""

    guard: pids.ProcessId


Observer = Callable[[Started | Ended], None]
_observers: list[Observer] = []
_observers_lock = threading.Lock()


@contextlib.contextmanager
def observe(callback: Observer) -> Iterator[None]:
    """Call ``callback`` for every guard started or ended inside the ``with`` block."""
    with _observers_lock:
        _observers.append(callback)
    try:
        yield
    finally:
        with _observers_lock:
            _observers.remove(callback)


def _notify(event: Started | Ended) -> None:
    with _observers_lock:
        callbacks = list(_observers)
    for callback in callbacks:
        callback(event)


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


@functools.cache
def tool(name: str) -> str:
    """The absolute path of system tool ``name``, looked up once in ``BASE_PATH``.

    Raises:
        HostError: ``host.command`` when no directory of ``BASE_PATH`` has it.
    """
    if "/" in name:
        raise HostError(f"Refusing program {display(name)}: not a bare name", code="host.command")
    for directory in BASE_PATH.split(":"):
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    raise HostError(f"Failed to find {display(name)} in {BASE_PATH}", code="host.command")


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


def _guard_argv(ctl: int, mode: str, *args: str) -> list[str]:
    return [sys.executable, "-I", "-S", os.fspath(GUARD), str(ctl), mode, *args]


def _report(sock: socket.socket, args: tuple[str, ...]) -> list[str]:
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
        try:
            self._popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self._await_init()
        return self._popen.returncode

    def kill(self) -> None:
        """SIGTERM to everything here, SIGKILL after ``GRACE_S``; returns once all are gone."""
        if self._popen.poll() is None:  # not reaped: its pid (the group's id) cannot be reused
            self._signal(signal.SIGTERM)
            try:
                self._popen.wait(timeout=GRACE_S)
            except subprocess.TimeoutExpired:
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
            _notify(Ended(guard=self.guard_id))


def _start(
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
) -> Child:
    program = args[0] if os.path.isabs(args[0]) else tool(args[0])
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    required = "1" if os.geteuid() == 0 else "0"
    mounts = "shared" if share_mounts else "own"
    remove = [os.fspath(p.absolute()) for p in scratch]
    try:
        popen = subprocess.Popen(
            [
                *_guard_argv(theirs.fileno(), "run", required, mounts, *remove, "--"),
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
        words = _report(ours, args)
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
        _notify(Started(guard=child.guard_id, init=child.init_id))
        return child
    popen.wait()
    ours.close()
    reason = "the guard failed"
    if len(words) == 3 and words[0] == "failed" and words[1].isdigit():
        reason = os.strerror(int(words[1])) if int(words[1]) else "it exited"
        if words[2] in ("unshare", "setup"):
            reason = f"cannot set up its namespaces: {reason}"
    raise HostError(f"Failed to start {display_argv(args)}: {reason}", code="host.command")


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
) -> Iterator[Child]:
    """Start a long-running child that is stopped, with everything it started, on every exit path.

    The caller waits with ``wait(child, timeout)``; leaving the ``with`` block kills what is left.
    The child gets its own mount namespace (a copy of ours, with a /proc of its own PID
    namespace) unless ``share_mounts``: for the commands that mount or unmount for us.  The
    ``scratch`` directories are removed once the child and everything it started are gone, even
    if airlock is dead by then.

    Raises:
        HostError: the program could not be started.
    """
    args = tuple(os.fspath(a) for a in argv)
    logger.debug("spawning %s", display_argv(args))
    child = _start(
        args,
        env=_environment(env, inherit_env),
        cwd=cwd,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        pass_fds=pass_fds,
        share_mounts=share_mounts,
        scratch=scratch,
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
        scratch: directories removed once the command and all it started are gone.

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
            f"{display_argv(args)} {_describe_status(returncode)}"
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


def _start_teardown(steps: Sequence[Teardown]) -> tuple[subprocess.Popen[bytes], socket.socket]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    spec = json.dumps([s.as_json() for s in steps])
    try:
        popen = subprocess.Popen(
            _guard_argv(theirs.fileno(), "teardown", spec),
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
    words = _report(ours, ("teardown guard",))
    if words != ["armed"]:
        popen.kill()
        popen.wait()
        ours.close()
        raise HostError("Failed to start the teardown guard", code="host.command")
    return popen, ours


@contextlib.contextmanager
def guard(steps: Sequence[Teardown]) -> Iterator[None]:
    """If airlock dies inside the ``with`` block, a separate process runs ``steps``.

    Leaving the block by any path (airlock is alive and cleans up itself) disarms it.

    Raises:
        HostError: the guard could not be started.
    """
    popen, ours = _start_teardown(steps)
    who = pids.identify(popen.pid) or pids.ProcessId(pid=popen.pid, start=0)
    _notify(Started(guard=who, init=None, teardown=tuple(steps)))
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
        _notify(Ended(guard=who))


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

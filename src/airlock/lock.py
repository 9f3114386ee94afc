# SPDX-License-Identifier: MIT
"""The global update lock: a whole-file write record lock on ``/run/update-lock`` by default.

Spectrum takes this lock with ``s6-setlock /run/update-lock``.  skalibs' ``fd_lock`` (2.13 in
Debian 12, 2.14 in Debian 13) takes a POSIX record lock with ``fcntl``: a write lock over the whole
file, which ``flock`` does not conflict with.  airlock takes an *open file description* record lock
(``F_OFD_SETLK``) over the whole file: the kernel makes OFD and POSIX record locks exclude each
other, so airlock and ``s6-setlock`` wait for each other (docs/adr/0132).  An OFD lock belongs to
the open file, not the process, so closing another descriptor of the same file (reading the holder
pid) cannot drop it, as it would drop a POSIX lock.

The holder's pid: ``F_OFD_GETLK`` reports it for a POSIX holder (``s6-setlock``); an OFD holder (an
airlock) is reported as -1, so airlock also writes its pid into the lock file (advisory text, read
bounded).  By default a second run fails at once (``busy.lock``); ``wait`` blocks like
``s6-setlock``, bounded by ``wait_timeout_s``.  The kernel releases the lock when its holder dies,
so a SIGKILL never leaves a stale lock; the file itself stays (harmless, reused).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from airlock.errors import BusyError, HostError
from airlock.settings import BOOL, PATH, SECONDS, setting

_POLL_S = 0.2
# struct flock (x86-64, aarch64): l_type, l_whence, l_start, l_len, l_pid, padding.
_FLOCK = struct.Struct("@hhqqi4x")


@dataclass(frozen=True, slots=True, kw_only=True)
class LockConfig:
    """``[lock]``: which file serialises updates, and whether a second run waits for it."""

    SECTION: ClassVar[str] = "lock"

    path: Path = setting(
        Path("/run/update-lock"), kind=PATH, help="the lock file (Spectrum's s6-setlock path)"
    )
    wait: bool = setting(
        False,
        kind=BOOL,
        flag="--wait",
        help="wait for the lock instead of failing at once (spectrum-update waits by default)",
    )
    wait_timeout_s: float = setting(
        12 * 3600.0,
        kind=SECONDS,
        help="how long a waiting run waits for the lock (a whole other run fits)",
    )


def _request(kind: int) -> bytes:
    return _FLOCK.pack(kind, os.SEEK_SET, 0, 0, 0)


def _posix_holder(fd: int) -> int | None:
    """The pid ``F_OFD_GETLK`` reports for a conflicting lock (POSIX holders only)."""
    try:
        raw = fcntl.fcntl(fd, fcntl.F_OFD_GETLK, _request(fcntl.F_WRLCK))
    except OSError:
        return None
    kind, _, _, _, pid = _FLOCK.unpack(raw)
    return pid if kind != fcntl.F_UNLCK and pid > 0 else None


def _recorded_pid(path: Path) -> int | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        raw = os.read(fd, 32)
    finally:
        os.close(fd)
    try:
        pid = int(raw.strip() or b"-1")
    except ValueError:
        return None
    return pid if pid > 0 else None


def holder_pid(path: Path, fd: int | None = None) -> int | None:
    """The pid holding the lock on ``path``, or ``None`` when it is free or unknown.

    A POSIX holder (``s6-setlock``) is asked of the kernel through ``fd`` when given; otherwise
    the pid an airlock holder recorded in the file.
    """
    if fd is not None and (pid := _posix_holder(fd)) is not None:
        return pid
    return _recorded_pid(path)


def _open(path: Path) -> int:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise HostError(
            f"Failed to open lock file {os.fspath(path)}: {exc.strerror}", code="host.lock"
        ) from exc


def _try(fd: int) -> bool:
    try:
        fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _request(fcntl.F_WRLCK))
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def _busy(path: Path, fd: int, *, waited_s: float | None) -> BusyError:
    pid = holder_pid(path, fd)
    who = f"pid {pid}" if pid is not None else "another process"
    if waited_s is None:
        return BusyError(
            f"An update is already running ({who} holds {os.fspath(path)})",
            hint="wait for it to finish, or pass --wait",
        )
    return BusyError(
        f"Gave up waiting for the update lock after {waited_s:g} s ({who} holds "
        f"{os.fspath(path)})",
        hint="an update that long may be stuck: look at that process",
    )


@contextlib.contextmanager
def hold(
    path: Path,
    *,
    wait: bool = False,
    timeout_s: float | None = None,
    on_wait: Callable[[int | None], None] | None = None,
) -> Iterator[None]:
    """Hold the exclusive lock on ``path`` for the ``with`` block.

    Args:
        path: the lock file (created 0600 if missing; never followed if a symlink).
        wait: block until the lock is free instead of failing at once.
        timeout_s: with ``wait``, give up after this many seconds (``None``: forever).
        on_wait: called once, with the holder's pid, when the lock is busy and we wait.

    Raises:
        BusyError: another process holds the lock (and ``wait`` is false or timed out); the
            message names the holder's pid when it is known.
        HostError: the lock file cannot be opened.
    """
    fd = _open(path)
    try:
        start = time.monotonic()
        told = False
        while not _try(fd):
            if not wait:
                raise _busy(path, fd, waited_s=None)
            if timeout_s is not None and time.monotonic() - start >= timeout_s:
                raise _busy(path, fd, waited_s=timeout_s)
            if not told and on_wait is not None:
                on_wait(holder_pid(path, fd))
                told = True
            time.sleep(_POLL_S)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
    finally:
        os.close(fd)

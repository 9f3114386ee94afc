# SPDX-License-Identifier: MIT
"""The global update lock: one ``flock`` on a host path we choose (``/run/update-lock`` by default).

This is the equivalent of Spectrum's ``s6-setlock /run/update-lock``, but it fails fast by default:
a second run gets ``BusyError`` naming the pid that holds the lock (written into the lock file by
the holder, so it is advisory text, read bounded).  ``wait=True`` blocks like ``s6-setlock``, with
an optional timeout.  The lock is released by the kernel when the holder dies, so a SIGKILL never
leaves a stale lock behind; the file itself stays (it is harmless and reused).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from airlock.errors import BusyError, HostError
from airlock.settings import BOOL, PATH, setting

_POLL_S = 0.1


@dataclass(frozen=True, slots=True, kw_only=True)
class LockConfig:
    """``[lock]``: which file serialises updates, and whether a second run waits for it."""

    SECTION: ClassVar[str] = "lock"

    path: Path = setting(
        Path("/run/update-lock"), kind=PATH, help="the lock file (Spectrum's s6-setlock path)"
    )
    wait: bool = setting(
        False, kind=BOOL, flag="--wait", help="wait for the lock instead of failing at once"
    )


def holder_pid(path: Path) -> int | None:
    """The pid recorded in the lock file, or ``None`` when absent or unreadable."""
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
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise
    return True


@contextlib.contextmanager
def hold(path: Path, *, wait: bool = False, timeout_s: float | None = None) -> Iterator[None]:
    """Hold the exclusive lock on ``path`` for the ``with`` block.

    Args:
        path: the lock file (created 0600 if missing; never followed if a symlink).
        wait: block until the lock is free instead of failing at once.
        timeout_s: with ``wait``, give up after this many seconds (``None``: forever).

    Raises:
        BusyError: another process holds the lock (and ``wait`` is false or timed out).
        HostError: the lock file cannot be opened.
    """
    fd = _open(path)
    try:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not _try(fd):
            if not wait or (deadline is not None and time.monotonic() >= deadline):
                pid = holder_pid(path)
                who = f"pid {pid}" if pid is not None else "another process"
                raise BusyError(
                    f"An update is already running ({who} holds {os.fspath(path)})",
                    hint="wait for it to finish, or pass --wait",
                )
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

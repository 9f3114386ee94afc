# SPDX-License-Identifier: MIT
"""File-descriptor-relative filesystem primitives.

Trees the VM wrote are only ever touched relative to one directory fd with ``O_NOFOLLOW``; host
files we own are written atomically (temporary name, fsync, rename, fsync of the directory).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
from collections.abc import Iterator
from pathlib import Path

_libc = ctypes.CDLL(None, use_errno=True)

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC | os.O_NONBLOCK


def syncfs(fd: int) -> None:
    """``syncfs(2)`` on the filesystem holding ``fd`` (``os.syncfs`` exists only from 3.12).

    Raises:
        OSError: the system call failed.
    """
    if _libc.syncfs(fd) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def syncfs_path(path: Path) -> None:
    """``syncfs(2)`` on the filesystem holding ``path``."""
    fd = os.open(path, DIR_FLAGS)
    try:
        syncfs(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def open_dir_nofollow(path: Path | str, *, dir_fd: int | None = None) -> Iterator[int]:
    """Open a directory without following a final symlink; yield the fd and close it after."""
    fd = os.open(path, DIR_FLAGS, dir_fd=dir_fd)
    try:
        yield fd
    finally:
        os.close(fd)


def read_bounded(fd: int, max_bytes: int) -> bytes:
    """Read all of ``fd`` but refuse more than ``max_bytes``.

    Raises:
        ValueError: the file holds more than ``max_bytes`` bytes.
    """
    chunks: list[bytes] = []
    total = 0
    while True:
        chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > max_bytes:
            raise ValueError(f"more than {max_bytes} bytes")
        chunks.append(chunk)


def fsync_dir(path: Path) -> None:
    """fsync a directory so that renames and unlinks in it are durable."""
    fd = os.open(path, DIR_FLAGS)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` atomically: temporary name, fsync, rename, fsync the directory."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def _unescape_mountinfo(field: bytes) -> str:
    """A mountinfo path field: the kernel writes space, tab, newline and ``\\`` as ``\\ooo``."""
    out = bytearray()
    i = 0
    while i < len(field):
        octal = field[i + 1 : i + 4]
        if field[i : i + 1] == b"\\" and re.fullmatch(rb"[0-3][0-7][0-7]", octal):
            out.append(int(octal, 8))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return os.fsdecode(bytes(out))


def mount_points(mountinfo: bytes | None = None) -> list[str]:
    """Every mount point of this mount namespace (``/proc/self/mountinfo``, field 5), decoded."""
    if mountinfo is None:
        mountinfo = Path("/proc/self/mountinfo").read_bytes()
    return [_unescape_mountinfo(line.split()[4]) for line in mountinfo.splitlines() if line]


def mounts_below(path: Path, *, mountinfo: bytes | None = None) -> list[str]:
    """Mount points at or below ``path`` in this mount namespace, deepest first."""
    prefix = os.fspath(path)
    found = [t for t in mount_points(mountinfo) if t == prefix or t.startswith(prefix + "/")]
    return sorted(found, key=len, reverse=True)

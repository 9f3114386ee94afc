# SPDX-License-Identifier: MIT
"""An all-or-nothing change to one flat directory: new files in, old files out.

Trusts: the directory is the maintainer's (no hostile writer races us; ``publish`` also holds an
``flock`` on it).  Guarantees: new content is written to dot-prefixed temporary names and fsynced
before anything visible changes; every name that is replaced or removed is first hard-linked to a
backup name; on any error the renames are undone from the backups, so the directory's listing and
contents are exactly what they were.  After success the backups are unlinked and the directory is
fsynced.  Temporary and backup names start with ``.airlock-publish-`` (sysupdate never lists
dot-files, and the publisher never hashes them).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import secrets
import stat
from collections.abc import Callable
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

PREFIX = ".airlock-publish-"
CHUNK_BYTES = 1 << 20


@dataclass(slots=True, kw_only=True)
class Transaction:
    """Stage files into ``dir_fd``, then ``commit()`` or ``abort()``."""

    dir_fd: int
    token: str = field(default_factory=lambda: secrets.token_hex(6))
    _staged: dict[str, str] = field(default_factory=dict)  # final name → temporary name
    _remove: list[str] = field(default_factory=list)
    _counter: int = 0

    def _tmp_name(self, kind: str) -> str:
        self._counter += 1
        return f"{PREFIX}{self.token}-{kind}{self._counter}"

    def stage_bytes(self, name: str, data: bytes, *, mode: int = 0o644) -> None:
        """Write ``data`` to a temporary name that ``commit`` renames to ``name``."""
        tmp = self._tmp_name("new")
        fd = os.open(
            tmp,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW,
            0o600,
            dir_fd=self.dir_fd,
        )
        self._staged[name] = tmp
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)

    def stage_copy(
        self,
        name: str,
        source_fd: int,
        *,
        mode: int = 0o644,
        observe: Callable[[bytes], None] | None = None,
    ) -> tuple[str, int]:
        """Copy ``source_fd`` (from its start) to a temporary name; return (sha256, size).

        The digest is of the bytes written, so a source that changes while being copied cannot
        make the manifest disagree with the published file; ``observe`` sees the same bytes (the
        block index is built from them).
        """
        tmp = self._tmp_name("new")
        fd = os.open(
            tmp,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW,
            0o600,
            dir_fd=self.dir_fd,
        )
        self._staged[name] = tmp
        digest = hashlib.sha256()
        size = 0
        try:
            offset = 0
            while chunk := os.pread(source_fd, CHUNK_BYTES, offset):
                offset += len(chunk)
                digest.update(chunk)
                if observe is not None:
                    observe(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view) :]
                size += len(chunk)
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        return digest.hexdigest(), size

    def remove(self, name: str) -> None:
        """Remove ``name`` on commit (it must exist then)."""
        self._remove.append(name)

    def abort(self) -> None:
        """Delete every temporary file; the directory is as before."""
        for tmp in self._staged.values():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=self.dir_fd)
        self._staged.clear()
        self._remove.clear()

    def _exists(self, name: str) -> bool:
        try:
            os.stat(name, dir_fd=self.dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return True

    def commit(self) -> None:
        """Make every staged file visible and every removal happen, or none of them."""
        backups: dict[str, str] = {}
        done: list[str] = []  # final names changed so far, in order
        try:
            for name in [*self._staged, *self._remove]:
                if self._exists(name) and name not in backups:
                    backup = self._tmp_name("old")
                    os.link(
                        name,
                        backup,
                        src_dir_fd=self.dir_fd,
                        dst_dir_fd=self.dir_fd,
                        follow_symlinks=False,
                    )
                    backups[name] = backup
            os.fsync(self.dir_fd)
            for name, tmp in self._staged.items():
                os.rename(tmp, name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
                done.append(name)
            for name in self._remove:
                os.unlink(name, dir_fd=self.dir_fd)
                done.append(name)
            os.fsync(self.dir_fd)
        except BaseException:
            self._roll_back(done, backups)
            raise
        for backup in backups.values():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(backup, dir_fd=self.dir_fd)
        os.fsync(self.dir_fd)
        self._staged.clear()
        self._remove.clear()

    def _roll_back(self, done: list[str], backups: dict[str, str]) -> None:
        for name in reversed(done):
            if name in backups:
                os.rename(backups.pop(name), name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=self.dir_fd)
        for backup in backups.values():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(backup, dir_fd=self.dir_fd)
        self.abort()
        with contextlib.suppress(OSError):
            os.fsync(self.dir_fd)
        logger.debug("rolled back a failed publish")


def stale_entries(dir_fd: int) -> tuple[str, ...]:
    """Leftover temporary/backup files of a killed publish (regular files only)."""
    found: list[str] = []
    for name in os.listdir(dir_fd):
        if name.startswith(PREFIX):
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if stat.S_ISREG(st.st_mode):
                found.append(name)
    return tuple(sorted(found))

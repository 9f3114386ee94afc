# SPDX-License-Identifier: MIT
"""Block indexes in the release directory (``NAME.blocks``, format in ``formats.blockindex``).

Trusts: the maintainer's release directory (``publish`` holds its lock).  Every payload that stays
in the directory gets an index that matches its current bytes; an index whose payload is gone
is removed with it.  Indexes are not listed in ``SHA256SUMS``: only the update VM reads them, as
untrusted hints (ADR 0074).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable

from airlock import fsutil
from airlock.formats import blockindex
from airlock.release import commit


def hash_existing(dir_fd: int, name: str) -> tuple[str, bytes]:
    """SHA-256 and block index of a payload already in the release directory."""
    fd = os.open(name, fsutil.FILE_FLAGS, dir_fd=dir_fd)
    try:
        os.set_blocking(fd, True)
        builder = blockindex.Builder()
        while chunk := os.read(fd, commit.CHUNK_BYTES):
            builder.update(chunk)
        return builder.sha256, builder.finish()
    finally:
        os.close(fd)


def read_index(dir_fd: int, name: str, limit: int) -> bytes | None:
    """The current bytes of ``name``'s block index (``None`` if absent or not a regular file)."""
    try:
        fd = os.open(blockindex.index_name(name), fsutil.FILE_FLAGS, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        os.set_blocking(fd, True)
        return os.pread(fd, limit + 1, 0)
    finally:
        os.close(fd)


def orphans(dir_fd: int, payloads: set[str], is_payload: Callable[[str], bool]) -> list[str]:
    """Block indexes of payloads that will not be in the directory after this publish."""
    found = []
    for name in os.listdir(dir_fd):
        base = name.removesuffix(blockindex.SUFFIX)
        if base != name and base not in payloads and is_payload(base):
            found.append(name)
    return sorted(found)

# SPDX-License-Identifier: MIT
"""The no-follow walk of a frozen staging snapshot, relative to one directory fd.

Everything in the directory was written by the untrusted update VM.  This module lists it without
following anything and without opening any entry: it reads directory entries from the dir fd and
``fstatat(AT_SYMLINK_NOFOLLOW)`` each one.  It trusts only the kernel's answers about the directory
it was handed.

It refuses (raises ``InspectionError``, rejecting the whole snapshot) on:

* more entries than ``Limits.max_entries`` (``reject.count``; the scan stops there);
* a name outside Spectrum's rule ``^[A-Za-z][A-Za-z0-9_.-]*$``, not ending in ``.``, at most
  ``Limits.max_name_bytes`` bytes (``reject.name``);
* an entry that is not a regular file: symlink, directory, FIFO, socket, device (``reject.type``);
* a regular file with more than one hard link (``reject.links``) or a set-user/group-ID bit
  (``reject.mode``);
* a file larger than ``Limits.max_file_bytes``, all files together larger than
  ``Limits.max_total_bytes`` (``reject.size``);
* a sparse file: larger than ``SPARSE_EXEMPT_BYTES`` with fewer than half of its bytes allocated
  (``st_blocks``), ``reject.sparse``.  Hashing reads every byte of a hole, so a sparse file would
  let the VM make the host hash gigabytes it never wrote (docs/adr/0160 explains the rule: small
  files, btrfs inline extents and compression, reflinks).

Names starting with ``.`` are systemd-sysupdate temporaries (Spectrum's ``updates-dir-check``
deletes
them): they are listed as temporaries to drop and never opened.  A dot-*directory* cannot be removed
with ``unlink`` and is refused like any directory.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass

from airlock.errors import InspectionError
from airlock.formats import names
from airlock.limits import Limits
from airlock.text import display

logger = logging.getLogger(__name__)

# docs/adr/0160: files up to 1 MiB are exempt (inline extents, tail blocks, the cost is nil);
# above it at least half of st_size must be allocated.  btrfs counts compressed extents at their
# uncompressed length and every reflinked extent in full, so neither trips this.
SPARSE_EXEMPT_BYTES = 1 << 20
ST_BLOCK_BYTES = 512  # st_blocks is in 512-byte units whatever the filesystem's block size


@dataclass(frozen=True, slots=True, kw_only=True)
class ListedFile:
    """A regular file with a safe name, as ``fstatat`` saw it.  Its content is still untrusted."""

    name: str
    size: int
    dev: int
    ino: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Temporary:
    """A dot-entry (a sysupdate temporary): never opened, only dropped.

    ``name`` is the raw name (``os.fsdecode`` form, usable with ``dir_fd=``), never printed;
    ``name_display`` is its escaped form.
    """

    name: str
    name_display: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Listing:
    """The structural content of a snapshot directory that passed every walk check."""

    files: tuple[ListedFile, ...]
    temporaries: tuple[Temporary, ...]
    total_bytes: int

    def get(self, name: str) -> ListedFile | None:
        """The listed file called ``name``, or ``None``."""
        for f in self.files:
            if f.name == name:
                return f
        return None


def _refuse(message: str, *, code: str, raw_name: bytes) -> InspectionError:
    return InspectionError(message, code=code, subject=raw_name)


def _check_regular(st: os.stat_result, raw: bytes, limits: Limits) -> None:
    shown = display(raw)
    if not stat.S_ISREG(st.st_mode):
        kind = _kind(st.st_mode)
        raise _refuse(
            f"Refusing {shown}: it is a {kind}, not a regular file",
            code="reject.type",
            raw_name=raw,
        )
    if st.st_nlink != 1:
        raise _refuse(
            f"Refusing {shown}: it has {st.st_nlink} hard links", code="reject.links", raw_name=raw
        )
    if st.st_mode & (stat.S_ISUID | stat.S_ISGID):
        raise _refuse(
            f"Refusing {shown}: set-user-ID or set-group-ID bit", code="reject.mode", raw_name=raw
        )
    if st.st_size > limits.max_file_bytes:
        raise _refuse(
            f"Refusing {shown}: {st.st_size} bytes exceeds the cap of {limits.max_file_bytes}",
            code="reject.size",
            raw_name=raw,
        )
    allocated = st.st_blocks * ST_BLOCK_BYTES
    if st.st_size > SPARSE_EXEMPT_BYTES and 2 * allocated < st.st_size:
        raise _refuse(
            f"Refusing {shown}: sparse, {st.st_size} bytes of which only {allocated} are"
            " allocated",
            code="reject.sparse",
            raw_name=raw,
        )


def _kind(mode: int) -> str:
    kinds = (
        (stat.S_ISLNK, "symbolic link"),
        (stat.S_ISDIR, "directory"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    )
    for test, name in kinds:
        if test(mode):
            return name
    return "file of unknown type"


def walk(dir_fd: int, *, limits: Limits) -> Listing:
    """List the snapshot directory ``dir_fd`` without following or opening any entry.

    Args:
        dir_fd: a directory fd opened with ``O_DIRECTORY|O_NOFOLLOW`` (``fsutil.DIR_FLAGS``).
        limits: the caps.

    Returns:
        The regular files (sorted by name) and the dot-temporaries.

    Raises:
        InspectionError: ``reject.count``, ``reject.name``, ``reject.type``, ``reject.links``,
            ``reject.mode``, ``reject.size`` or ``reject.sparse``; the first problem found
            rejects the snapshot.
        OSError: the directory itself could not be read.
    """
    files: list[ListedFile] = []
    temporaries: list[Temporary] = []
    total = 0
    count = 0
    # os.scandir(fd) reads the entries of exactly this open directory (fdopendir on a dup).
    with os.scandir(dir_fd) as it:
        for entry in it:
            count += 1
            if count > limits.max_entries:
                raise InspectionError(
                    f"Refusing snapshot: more than {limits.max_entries} entries",
                    code="reject.count",
                )
            raw = os.fsencode(entry.name)
            # fstatat(dir_fd, name, AT_SYMLINK_NOFOLLOW): no open, no follow.
            try:
                st = os.stat(entry.name, dir_fd=dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                # Only possible on a live directory, never on a read-only snapshot.
                raise _refuse(
                    f"Refusing {display(raw)}: it vanished during the walk",
                    code="reject.type",
                    raw_name=raw,
                ) from None
            if raw.startswith(b"."):
                if stat.S_ISDIR(st.st_mode):
                    raise _refuse(
                        f"Refusing {display(raw)}: it is a directory",
                        code="reject.type",
                        raw_name=raw,
                    )
                logger.debug("temporary %s listed to drop", display(raw))
                temporaries.append(Temporary(name=entry.name, name_display=display(raw)))
                continue
            # Spectrum's order: name rule before type.
            if len(raw) > limits.max_name_bytes or not names.is_safe(raw):
                raise _refuse(
                    f"Refusing {display(raw)}: name outside the safe-name rule",
                    code="reject.name",
                    raw_name=raw,
                )
            _check_regular(st, raw, limits)
            total += st.st_size
            if total > limits.max_total_bytes:
                raise _refuse(
                    f"Refusing snapshot: files exceed the total cap of {limits.max_total_bytes}"
                    " bytes",
                    code="reject.size",
                    raw_name=raw,
                )
            files.append(ListedFile(name=entry.name, size=st.st_size, dev=st.st_dev, ino=st.st_ino))
    files.sort(key=lambda f: f.name)
    temporaries.sort(key=lambda t: t.name)
    return Listing(files=tuple(files), temporaries=tuple(temporaries), total_bytes=total)

# SPDX-License-Identifier: MIT
"""SHA-256 of one open file from a read-only memory map, in windows, under a read lease (ADR 0150).

Hashing from a map saves the copy out of the page cache that ``readv`` makes (about a third of the
time per GiB on the development machine), so one thread hashes at ``openssl dgst``'s speed.  The
hazard of a map is ``SIGBUS``: touching a page past the end of a file that shrank after it was
mapped ends the process.  In the pipeline nothing can shrink the file — the judge reads a true
read-only btrfs snapshot of a share whose VM is down — but ``airlock inspect DIR`` may be pointed
at a writable directory, so the map is only ever read under a kernel **read lease**
(``F_SETLEASE F_RDLCK``):

* the lease is granted only while nobody has the file open for writing (``EAGAIN`` otherwise);
* from then on, every open for writing, ``truncate(2)`` and ``O_TRUNC`` open of the file *breaks*
  the lease and **waits** (``/proc/sys/fs/lease-break-time``, 45 s by default) until the holder
  releases it;
* before every window, and once after the last, the hasher asks ``F_GETLEASE``: a pending break
  reads as ``F_UNLCK``, and the hasher stops touching the map, releases the lease and refuses the
  file (``reject.size``).  The truncation then proceeds against a map nobody reads.

A window is hashed in milliseconds, far below the break time, and a break time under
``MIN_LEASE_BREAK_S`` disables the map.  When no lease can be had (a writer exists, the file system
has no leases, the caller neither owns the file nor has ``CAP_LEASE``) the caller falls back to
plain reads, with the same result.  The break is never signalled: the lease's signal is set to
``SIGURG`` (ignored by default) before it is taken and its owner cleared after, so a break cannot
deliver ``SIGIO``, whose default action would end the process; it is polled instead.

What a lease does not cover: an I/O error while a mapped page is read in raises ``SIGBUS`` as well
(``readv`` would return ``EIO``).  The process then ends before anything is applied, as under
``kill -9``, which the pipeline is built to survive (ADR 0060); see ADR 0150.
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import signal
import threading
from pathlib import Path

from airlock.errors import InspectionError

#: Bytes hashed between two checks of the lease.  At ≈ 1 GB/s a window takes ≈ 16 ms.
WINDOW_BYTES = 16 << 20
#: Below this break time (seconds) a window might outlast the lease: plain reads are used instead.
MIN_LEASE_BREAK_S = 5
_LEASE_BREAK_TIME = Path("/proc/sys/fs/lease-break-time")


class Changed(Exception):
    """The lease was broken: someone opened the file for writing or truncated it while hashing."""


def _break_time_s() -> int:
    try:
        return int(_LEASE_BREAK_TIME.read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return 0


def take_lease(fd: int, size: int) -> bool:
    """Take a read lease on ``fd`` (opened read-only) so that the file cannot shrink unnoticed.

    Args:
        fd: the file, opened read-only.
        size: the size the caller expects; checked again once the lease is held (a file cut
            before the lease was granted would fault past its end).

    Returns:
        True when the lease is held (release it with ``drop_lease``); False when none can be had
        or the size differs, and the caller must read instead of mapping (and will see the size).
    """
    if _break_time_s() < MIN_LEASE_BREAK_S:
        return False
    try:
        # The signal first: lease_setup() makes this process the owner, and a break sends the
        # fd's signal to the owner; SIGIO would end the process, SIGURG is ignored by default.
        fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGURG)
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except OSError:  # EAGAIN: open for writing; EINVAL/ENOLCK: no leases here; EACCES: not owner
        return False
    fcntl.fcntl(fd, fcntl.F_SETOWN, 0)  # and no owner: a break sends nothing, it is polled
    if os.fstat(fd).st_size != size or not lease_held(fd):
        drop_lease(fd)
        return False
    return True


def lease_held(fd: int) -> bool:
    """Whether the read lease is still held and no break is pending (``F_UNLCK`` when one is)."""
    return fcntl.fcntl(fd, fcntl.F_GETLEASE) == fcntl.F_RDLCK


def drop_lease(fd: int) -> None:
    """Release the lease, letting a waiting truncation or writer proceed."""
    try:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
    except OSError:  # already gone (broken by timeout)
        pass


def sha256_mapped(
    fd: int, size: int, stop: threading.Event, *, window: int | None = None
) -> str | None:
    """SHA-256 of the first ``size`` bytes of ``fd``, read from a read-only map under a held lease.

    The caller holds the lease (``take_lease``) and has checked with ``fstat`` that the file is
    ``size`` bytes long.

    Args:
        fd: the open, leased file.
        size: its size; exactly these bytes are hashed.
        stop: set by another thread to cancel; then None is returned.
        window: bytes between two checks of the lease (default ``WINDOW_BYTES``).

    Returns:
        The hex digest, or None when ``stop`` was set.

    Raises:
        Changed: the lease was broken before the last byte was hashed.
    """
    h = hashlib.sha256()
    step = window or WINDOW_BYTES
    if size == 0:  # mmap refuses an empty length; there is nothing to read
        if not lease_held(fd):
            raise Changed
        return h.hexdigest()
    mm = mmap.mmap(fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
    try:
        mm.madvise(mmap.MADV_SEQUENTIAL)
        with memoryview(mm) as view:
            for start in range(0, size, step):
                if stop.is_set():
                    return None
                if not lease_held(fd):  # a break is pending: touch no more pages
                    raise Changed
                h.update(view[start : start + step])
    finally:
        mm.close()
    if not lease_held(fd):  # broken during the last window: its bytes are not trustworthy
        raise Changed
    return h.hexdigest()


def refuse_changed(name: str, shown: str) -> InspectionError:
    """The refusal for a file whose lease was broken while it was hashed."""
    return InspectionError(
        f"Refusing {shown}: it was opened for writing or truncated while being hashed",
        code="reject.size",
        subject=name,
    )

# SPDX-License-Identifier: MIT
"""SHA-256 of listed files, streamed from fds opened relative to the snapshot's directory fd.

It trusts nothing about the file but what ``fstat`` on the very fd it reads reports.  Each file is
opened ``O_RDONLY|O_NOFOLLOW|O_NOCTTY|O_NONBLOCK|O_CLOEXEC`` with ``dir_fd=``; the same fd must be a
regular file with one link, the same inode and exactly the size the walk saw (which the walk already
checked against the caps).  Reading more or fewer bytes than that size refuses the file, so a file
that changes under us cannot make the hash cover other bytes than the size promised.

Files are hashed in parallel threads, largest first: ``hashlib`` releases the GIL while hashing
large buffers, so two files use two cores.  A file that has a core to spare (fewer files than
threads, or a file that dominates the release, as Spectrum's root image does) is read with
``os.readv`` by a helper thread while this one hashes; every other file is hashed from a read-only
memory map under a read lease (``untrusted.mapped``, ADR 0150: no copy out of the page cache; a
truncation or a writer while hashing refuses the file), or read where no lease can be had.
Digests are returned, not judged: comparing them with the manifest is ``trusted.verify``'s job.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import stat
import threading
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass

from airlock.errors import HostError, InspectionError
from airlock.fsutil import FILE_FLAGS
from airlock.limits import Limits
from airlock.text import display
from airlock.untrusted import mapped
from airlock.untrusted.walk import ListedFile

logger = logging.getLogger(__name__)

HEAD_BYTES = 8  # enough for every compression magic sysupdate recognises
#: A file this many times larger than all the others together gets a read-ahead thread.
DOMINANT = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class Digest:
    """The SHA-256 (64 lowercase hex) of the ``size`` bytes read from ``name``.

    ``head`` is the first ``HEAD_BYTES`` bytes (fewer for a shorter file), read from the same fd.
    """

    name: str
    size: int
    sha256: str
    head: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class Hashed:
    """Digests of every requested file, in request order, and the number of bytes read."""

    digests: tuple[Digest, ...]
    bytes_hashed: int


def open_checked(dir_fd: int, listed: ListedFile) -> int:
    """Open ``listed`` relative to ``dir_fd`` without following, and re-check it on the fd.

    Returns:
        An open fd; the caller closes it.

    Raises:
        InspectionError: ``reject.type``, ``reject.links`` or ``reject.size`` when the fd is not
            the regular, single-link file of the size the walk saw.
    """
    shown = display(listed.name)
    try:
        fd = os.open(listed.name, FILE_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        raise InspectionError(
            f"Refusing {shown}: cannot open it ({exc.strerror})",
            code="reject.type",
            subject=listed.name,
        ) from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) != (listed.dev, listed.ino):
            raise InspectionError(
                f"Refusing {shown}: it changed type or identity since the walk",
                code="reject.type",
                subject=listed.name,
            )
        if st.st_nlink != 1:
            raise InspectionError(
                f"Refusing {shown}: it has {st.st_nlink} hard links",
                code="reject.links",
                subject=listed.name,
            )
        if st.st_size != listed.size:
            raise InspectionError(
                f"Refusing {shown}: its size changed from {listed.size} to {st.st_size} bytes",
                code="reject.size",
                subject=listed.name,
            )
    except BaseException:
        os.close(fd)
        raise
    return fd


def _stream_plain(fd: int, size: int, buffer_bytes: int, stop: threading.Event) -> tuple[int, str]:
    h = hashlib.sha256()
    buf = bytearray(buffer_bytes)
    view = memoryview(buf)
    done = 0
    while not stop.is_set():
        n = os.readv(fd, [buf])
        if n == 0:
            break
        done += n
        if done > size:
            break
        h.update(view[:n])
    return done, h.hexdigest()


def _stream_pipelined(
    fd: int, size: int, buffer_bytes: int, stop: threading.Event
) -> tuple[int, str]:
    """Read in a helper thread while this one hashes: the copy out of the page cache overlaps
    the hashing (about 10 % faster for one file on an otherwise idle second core)."""
    free: queue.SimpleQueue[bytearray | None] = queue.SimpleQueue()
    filled: queue.SimpleQueue[tuple[bytearray | None, int, BaseException | None]] = (
        queue.SimpleQueue()
    )
    for _ in range(3):
        free.put(bytearray(buffer_bytes))
    halt = threading.Event()

    def reader() -> None:
        try:
            while not halt.is_set():
                b = free.get()
                if b is None:
                    return
                n = os.readv(fd, [b])
                filled.put((b, n, None))
                if n == 0:
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the hashing thread, re-raised there
            filled.put((None, 0, exc))

    thread = threading.Thread(target=reader, name="airlock-read", daemon=True)
    thread.start()
    h = hashlib.sha256()
    done = 0
    try:
        while not stop.is_set():
            b, n, exc = filled.get()
            if exc is not None:
                raise exc
            if b is None or n == 0:
                break
            done += n
            if done > size:
                break
            h.update(memoryview(b)[:n])
            free.put(b)
    finally:
        halt.set()
        free.put(None)
        thread.join()
    return done, h.hexdigest()


def _stream(
    fd: int, listed: ListedFile, buffer_bytes: int, stop: threading.Event, pipelined: bool
) -> tuple[int, str]:
    """Read ahead in a helper thread, else hash from a leased read-only map (ADR 0150), else read.

    With a core to spare, a reader thread copying into small buffers beats the map: the hashing
    thread then reads bytes the reader just brought into the CPU cache.
    """
    if pipelined:
        return _stream_pipelined(fd, listed.size, buffer_bytes, stop)
    if listed.size and mapped.take_lease(fd, listed.size):
        try:
            sha256 = mapped.sha256_mapped(fd, listed.size, stop)
        except mapped.Changed:
            raise mapped.refuse_changed(listed.name, display(listed.name)) from None
        finally:
            mapped.drop_lease(fd)
        return listed.size, sha256 or ""  # None: cancelled, which the caller checks first
    return _stream_plain(fd, listed.size, buffer_bytes, stop)


def _hash_one(
    dir_fd: int, listed: ListedFile, buffer_bytes: int, stop: threading.Event, pipelined: bool
) -> Digest:
    fd = open_checked(dir_fd, listed)
    try:
        try:
            head = os.pread(fd, HEAD_BYTES, 0)  # pread: the stream below still starts at 0
        except OSError as exc:
            raise HostError(
                f"Failed to read {display(listed.name)}: {exc.strerror}", code="host.read"
            ) from exc
        if listed.size:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
        try:
            done, sha256 = _stream(fd, listed, buffer_bytes, stop, pipelined)
        except OSError as exc:
            raise HostError(
                f"Failed to read {display(listed.name)}: {exc.strerror}", code="host.read"
            ) from exc
        if stop.is_set():
            raise InspectionError("hashing cancelled", code="reject.cancelled")
        if done != listed.size:
            got = "more" if done > listed.size else str(done)
            raise InspectionError(
                f"Refusing {display(listed.name)}: read {got} bytes, expected {listed.size}",
                code="reject.size",
                subject=listed.name,
            )
    finally:
        os.close(fd)
    logger.debug("hashed %s (%d bytes)", display(listed.name), done)
    return Digest(name=listed.name, size=done, sha256=sha256, head=head)


def read_ahead(files: Sequence[ListedFile], threads: int) -> frozenset[int]:
    """Indices of the files hashed with a read-ahead thread (the others: a leased map).

    Fewer files than threads: each gets a reader on a spare core.  Otherwise, with two threads or
    more, a file at least ``DOMINANT`` times larger than all others together (Spectrum's root
    image beside its verity file and UKI) gets one: the small files are done on the other core
    long before it, which is then free to read ahead.
    """
    if len(files) < threads:
        return frozenset(range(len(files)))
    if threads < 2 or len(files) < 2:
        return frozenset()
    big = max(range(len(files)), key=lambda i: files[i].size)
    rest = sum(f.size for i, f in enumerate(files) if i != big)
    return frozenset({big}) if files[big].size >= DOMINANT * rest else frozenset()


def hash_files(dir_fd: int, files: Sequence[ListedFile], *, limits: Limits) -> Hashed:
    """Stream SHA-256 of ``files`` from fds opened relative to ``dir_fd``, in parallel threads.

    Args:
        dir_fd: the snapshot's directory fd.
        files: entries of the walk's ``Listing``.
        limits: ``hash_threads`` and ``hash_buffer_bytes``.

    Returns:
        The digests in the order of ``files`` and the total number of bytes hashed.

    Raises:
        InspectionError: a file is not what the walk saw (see ``open_checked``) or its length
            differs from its size while reading (``reject.size``).
        HostError: ``host.read`` when reading fails (an I/O error of the snapshot's filesystem).
    """
    workers = max(1, min(limits.hash_threads, len(files)))
    buffer_bytes = max(64 * 1024, limits.hash_buffer_bytes)
    stop = threading.Event()
    ahead = read_ahead(files, limits.hash_threads)
    if workers == 1:
        digests = [
            _hash_one(dir_fd, f, buffer_bytes, stop, i in ahead) for i, f in enumerate(files)
        ]
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="airlock-hash") as pool:
            # Largest first, so that the small files fill the other threads meanwhile.
            futures = {
                i: pool.submit(_hash_one, dir_fd, files[i], buffer_bytes, stop, i in ahead)
                for i in sorted(range(len(files)), key=lambda i: -files[i].size)
            }
            finished, _ = wait(futures.values(), return_when=FIRST_EXCEPTION)
            for fut in finished:
                exc = fut.exception()
                if exc is not None:
                    # The first failure decides; the other threads stop at their next read.
                    stop.set()
                    raise exc
            digests = [futures[i].result() for i in range(len(files))]
    return Hashed(digests=tuple(digests), bytes_hashed=sum(d.size for d in digests))

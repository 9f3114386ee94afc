# SPDX-License-Identifier: MIT
"""Where a whole-file download's bytes go: hashed and written on two threads (inside the VM).

Writes only into the descriptor it is given (the partial file in ``updates/``).  See ADR 0073 for
why receiving, hashing and writing run on separate threads and why written ranges are dropped
from the page cache.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from typing import TYPE_CHECKING

from airlock.agent.transport import CHUNK_BYTES

if TYPE_CHECKING:
    from hashlib import _Hash as Hash

logger = logging.getLogger(__name__)

FLUSH_BYTES = 16 << 20


class Writer:
    """Hashes and writes filled buffers, in order, on two more threads (bounded buffer pool).

    Receiving, hashing and writing each take about a third of the CPU time of a download; SHA-256
    and ``pwrite`` release the GIL, so on two or more cores they overlap.  A buffer goes back to
    the pool when both threads are done with it.
    """

    def __init__(self, fd: int, offset: int, digest: Hash, *, buffers: int = 6) -> None:
        self._fd = fd
        self._offset = offset
        self._digest = digest
        self._free: queue.SimpleQueue[bytearray] = queue.SimpleQueue()
        self._to_hash: queue.SimpleQueue[tuple[bytearray, int] | None] = queue.SimpleQueue()
        self._to_write: queue.SimpleQueue[tuple[bytearray, int] | None] = queue.SimpleQueue()
        for _ in range(buffers):
            self._free.put(bytearray(CHUNK_BYTES))
        self._users: dict[int, int] = {}
        self._flushed = offset - offset % FLUSH_BYTES
        self._lock = threading.Lock()
        self._error: OSError | None = None
        self._threads = [
            threading.Thread(target=self._hash, name="airlock-hash", daemon=True),
            threading.Thread(target=self._write, name="airlock-write", daemon=True),
        ]

    def __enter__(self) -> Writer:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._to_hash.put(None)
        self._to_write.put(None)
        for t in self._threads:
            t.join()
        if self._error is not None and exc[0] is None:
            raise self._error

    def take(self) -> bytearray:
        """A free buffer (waits while the writer is behind); raises a write failure early."""
        if self._error is not None:
            raise self._error
        return self._free.get()

    def give(self, buf: bytearray, n: int) -> None:
        """Hand over ``buf`` whose first ``n`` bytes are the next bytes of the file."""
        if not n:
            self._free.put(buf)
            return
        with self._lock:
            self._users[id(buf)] = 2
        self._to_hash.put((buf, n))
        self._to_write.put((buf, n))

    def _done(self, buf: bytearray) -> None:
        with self._lock:
            self._users[id(buf)] -= 1
            last = self._users[id(buf)] == 0
        if last:
            self._free.put(buf)

    def _flush_behind(self) -> None:
        """Start writing back each finished 16 MiB, and drop it from the page cache once written.

        The final ``fsync`` then waits for the last few MiB instead of the whole file, and a
        download does not fill the page cache (measured: half the system CPU time per GiB).
        ``POSIX_FADV_DONTNEED`` starts writeback of dirty pages and drops only clean ones.
        """
        step = FLUSH_BYTES
        while self._offset - self._flushed >= step:
            _advise_done(self._fd, self._flushed, step)
            if self._flushed >= 2 * step:
                _advise_done(self._fd, self._flushed - 2 * step, step)
            self._flushed += step

    def _hash(self) -> None:
        while (item := self._to_hash.get()) is not None:
            buf, n = item
            self._digest.update(memoryview(buf)[:n])
            self._done(buf)

    def _write(self) -> None:
        while (item := self._to_write.get()) is not None:
            buf, n = item
            if self._error is None:
                try:
                    pwrite_all(self._fd, memoryview(buf)[:n], self._offset)
                    self._offset += n
                    self._flush_behind()
                except OSError as exc:
                    self._error = exc
            self._done(buf)


def _advise_done(fd: int, offset: int, length: int) -> None:
    """Tell the kernel a written range will not be read again (an optimisation only)."""
    try:
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)
    except OSError as exc:  # e.g. a share file system without page-cache advice
        logger.debug("posix_fadvise: %s", exc.strerror)


def pwrite_all(fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
    """Write all of ``data`` at ``offset``."""
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n

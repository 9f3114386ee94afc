# SPDX-License-Identifier: MIT
"""Bounded, retried, resumable downloads into the share's ``updates/`` (inside the VM).

Trusts nothing from the server.  Every read has a cap (the manifest 1 MiB, a signature 64 KiB, a
payload the configured maximum file size) and the whole run a deadline; a trickle or a stall hits
one of them.  Payloads are written to ``.NAME.partial`` (a dot-temporary the host deletes),
resumed with ``Range`` and ``If-Range`` after an interruption, hashed, fsynced, and only then
renamed to ``NAME``; a file whose hash differs from the manifest never gets its real name.  All
file operations are relative to one directory fd of ``updates/``; ``NAME`` is a checked safe name.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import queue
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from airlock.agent.transport import CHUNK_BYTES, Body, RestartError, Source, TransientError
from airlock.errors import FetchError
from airlock.events import Event, Notice, Reporter, Step, StepProgress
from airlock.text import display

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from hashlib import _Hash as Hash

T = TypeVar("T")
SMALL_CHUNK_BYTES = 64 * 1024
FLUSH_BYTES = 16 << 20
PROGRESS_INTERVAL_S = 0.5
MAX_VALIDATOR_BYTES = 512


@dataclass(frozen=True, slots=True, kw_only=True)
class Budget:
    """Limits of one agent run."""

    deadline: float  # time.monotonic() value
    max_manifest_bytes: int
    max_signature_bytes: int
    max_file_bytes: int
    max_total_bytes: int
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 15.0


def partial_name(name: str) -> str:
    """The dot-temporary a payload is downloaded to."""
    return f".{name}.partial"


def validator_name(name: str) -> str:
    """The dot-temporary that remembers the server's validator for ``If-Range``."""
    return f".{name}.partial.validator"


class SerialReporter:
    """Passes events on one at a time (downloads of byte ranges run in several threads)."""

    def __init__(self, inner: Reporter) -> None:
        self.inner = inner
        self._lock = threading.Lock()

    def emit(self, event: Event) -> None:
        """Forward ``event``."""
        with self._lock:
            self.inner.emit(event)


class Meter:
    """Bytes, rate and ETA of one file, as throttled ``StepProgress`` events (thread-safe)."""

    def __init__(self, reporter: Reporter, item: str, *, done: int, total: int) -> None:
        self._lock = threading.Lock()
        self._reporter = reporter
        self._item = item
        self._start = time.monotonic()
        self._base = done
        self.done = done
        self.total = total
        self._last = 0.0
        self._reported = -1

    def add(self, n: int, *, final: bool = False) -> None:
        """Count ``n`` more bytes; emit at most every half second (and at the end)."""
        with self._lock:
            self._add(n, final)

    def _add(self, n: int, final: bool) -> None:
        self.done += n
        now = time.monotonic()
        if not final and now - self._last < PROGRESS_INTERVAL_S:
            return
        if final and self._reported == self.done:
            return
        self._last = now
        self._reported = self.done
        elapsed = max(now - self._start, 1e-6)
        rate = (self.done - self._base) / elapsed
        eta = (self.total - self.done) / rate if self.total and rate > 0 else None
        self._reporter.emit(
            StepProgress(
                step=Step.DOWNLOAD,
                done=self.done,
                total=self.total,
                item=self._item,
                rate=round(rate, 1),
                eta_s=None if eta is None else round(max(eta, 0.0), 1),
            )
        )


class Downloader:
    """Fetches through one ``Source`` within one ``Budget``; counts payload bytes received.

    ``fork`` makes another ``Source`` for the same URL (its own connection), for byte ranges
    fetched in parallel; ``None``: one connection only.
    """

    def __init__(
        self,
        source: Source,
        budget: Budget,
        reporter: Reporter,
        *,
        fork: Callable[[], Source] | None = None,
    ) -> None:
        self.source = source
        self.budget = budget
        self.reporter: Reporter = SerialReporter(reporter)
        self.fork = fork
        self.payload_bytes = 0
        self._count_lock = threading.Lock()
        self._sleep: Callable[[float], None] = time.sleep

    def check_deadline(self, what: str) -> None:
        """Raise ``fetch.timeout`` once the run's deadline has passed."""
        if time.monotonic() > self.budget.deadline:
            raise FetchError(
                f"Failed to fetch {what}: the time limit ran out",
                code="fetch.timeout",
                hint="the server stalled or is too slow; raise --timeout if the link is slow",
            )

    def retrying(self, what: str, attempt: Callable[[], T]) -> T:
        """Run ``attempt`` until it succeeds, backing off after transient failures."""
        delay = self.budget.backoff_initial_s
        tries = 0
        while True:
            self.check_deadline(what)
            tries += 1
            try:
                return attempt()
            except TransientError as exc:
                if time.monotonic() + delay > self.budget.deadline:
                    raise FetchError(
                        f"{exc.message} (gave up after {tries} attempts: time limit)",
                        code="fetch.timeout" if tries > 1 else exc.code,
                    ) from exc
                self.reporter.emit(Notice(message=f"{exc.message}; retrying in {delay:.1f} s"))
                self._sleep(delay)
                delay = min(delay * 2, self.budget.backoff_max_s)

    def get_small(self, name: str, *, limit: int) -> bytes | None:
        """The whole of a small file (manifest, signature, block index), or ``None`` when absent."""
        return self.retrying(display(name), lambda: self._get_small_once(name, limit))

    def _get_small_once(self, name: str, limit: int) -> bytes | None:
        what = display(name)
        with self.source.open(name) as body:
            if body is None:
                return None
            if body.length is not None and body.length > limit:
                raise FetchError(
                    f"Refusing {what}: {body.length} bytes announced, limit {limit}",
                    code="fetch.too-large",
                )
            data = bytearray()
            view = memoryview(bytearray(SMALL_CHUNK_BYTES))
            while n := body.readinto(view):
                data += view[:n]
                if len(data) > limit:
                    raise FetchError(
                        f"Refusing {what}: more than {limit} bytes", code="fetch.too-large"
                    )
                self.check_deadline(what)
            return bytes(data)

    def count(self, n: int, what: str) -> None:
        """Count ``n`` payload bytes received against the run's cap."""
        with self._count_lock:
            self.payload_bytes += n
            total = self.payload_bytes
        if total > self.budget.max_total_bytes:
            raise FetchError(
                f"Refusing {what}: this run received more than "
                f"{self.budget.max_total_bytes} payload bytes",
                code="fetch.too-large",
            )

    def download(self, dir_fd: int, name: str, sha256: str) -> None:
        """Download ``name`` into ``dir_fd`` with the given SHA-256, resuming a partial file."""
        state = {"restarted": False}

        def attempt() -> None:
            try:
                self._download_once(dir_fd, name, sha256, state)
            except RestartError as exc:
                if state["restarted"]:
                    raise FetchError(exc.message, code="fetch.range") from exc
                logger.info("%s; starting again", exc.message)
                state["restarted"] = True
                _unlink(dir_fd, partial_name(name))
                _unlink(dir_fd, validator_name(name))
                raise TransientError(exc.message) from exc

        try:
            self.retrying(display(name), attempt)
        except OSError as exc:
            raise FetchError(
                f"Failed to write {display(name)} into updates/: {exc.strerror}",
                code="fetch.write",
            ) from exc

    def _download_once(self, dir_fd: int, name: str, sha256: str, state: dict[str, bool]) -> None:
        what = display(name)
        part = partial_name(name)
        fd = os.open(
            part, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dir_fd
        )
        try:
            digest, offset = _hash_existing(fd)
            resumed = offset > 0
            validator = _read_validator(dir_fd, name) if offset else None
            with self.source.open(name, offset=offset, validator=validator) as body:
                if body is None:
                    raise FetchError(f"Failed to fetch {what}: not found", code="fetch.missing")
                if body.offset != offset:
                    logger.info("server sent %s from the start", what)
                    os.ftruncate(fd, 0)
                    digest, offset, resumed = hashlib.sha256(), 0, False
                if body.validator:
                    _write_validator(dir_fd, name, body.validator)
                total = offset + body.length if body.length is not None else 0
                if total > self.budget.max_file_bytes:
                    raise FetchError(
                        f"Refusing {what}: {total} bytes announced, limit "
                        f"{self.budget.max_file_bytes}",
                        code="fetch.too-large",
                    )
                meter = Meter(self.reporter, what, done=offset, total=total)
                self._receive(fd, body, offset, digest, what, meter)
                meter.add(0, final=True)
            good = digest.hexdigest() == sha256
            if good:
                os.fsync(fd)
        finally:
            os.close(fd)
        if not good:
            _unlink(dir_fd, part)
            _unlink(dir_fd, validator_name(name))
            if resumed and not state["restarted"]:
                state["restarted"] = True
                raise TransientError(f"Digest of resumed {what} differs from the manifest")
            raise FetchError(
                f"Refusing {what}: its SHA-256 differs from the manifest", code="fetch.digest"
            )
        os.rename(part, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        _unlink(dir_fd, validator_name(name))
        os.fsync(dir_fd)

    def _receive(
        self, fd: int, body: Body, offset: int, digest: Hash, what: str, meter: Meter
    ) -> None:
        """Stream ``body`` into ``fd`` from ``offset``, hashing it into ``digest``.

        This thread receives into pooled 1 MiB buffers; a second one hashes and writes them (both
        release the GIL), so the three overlap.  Every received byte is written before this
        returns, also on failure, so a later attempt can resume after it.
        """
        limit = self.budget.max_file_bytes
        with _Writer(fd, offset, digest) as writer:
            eof = False
            while not eof:
                buf = writer.take()
                view = memoryview(buf)
                filled = 0
                try:
                    while filled < len(view):
                        got = body.readinto(view[filled:])
                        if got == 0:
                            eof = True
                            break
                        if offset + filled + got > limit:
                            filled = max(limit - offset, 0)  # nothing past the cap is written
                            raise FetchError(
                                f"Refusing {what}: more than {limit} bytes", code="fetch.too-large"
                            )
                        filled += got
                        self.count(got, what)
                        self.check_deadline(what)
                finally:
                    writer.give(buf, filled)
                offset += filled
                meter.add(filled)


class _Writer:
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

    def __enter__(self) -> _Writer:
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


def _hash_existing(fd: int) -> tuple[Hash, int]:
    """SHA-256 and length of what ``fd`` holds (read from its start)."""
    digest = hashlib.sha256()
    buf = bytearray(CHUNK_BYTES)
    view = memoryview(buf)
    offset = 0
    while n := os.preadv(fd, [view], offset):
        digest.update(view[:n])
        offset += n
    return digest, offset


def hash_file(dir_fd: int, name: str, *, limit: int) -> str | None:
    """SHA-256 of the regular file ``name`` in ``dir_fd`` (no symlink), or ``None``."""
    try:
        fd = os.open(
            name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd
        )
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            return None
        digest, _ = _hash_existing(fd)
        return digest.hexdigest()
    finally:
        os.close(fd)


def _read_validator(dir_fd: int, name: str) -> str | None:
    try:
        fd = os.open(
            validator_name(name), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd
        )
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        raw = f.read(MAX_VALIDATOR_BYTES + 1)
    text = raw.decode("ascii", errors="replace").strip()
    if len(raw) > MAX_VALIDATOR_BYTES or not text.isprintable():
        return None
    return text or None


def _write_validator(dir_fd: int, name: str, validator: str) -> None:
    fd = os.open(
        validator_name(name),
        os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
        0o644,
        dir_fd=dir_fd,
    )
    with os.fdopen(fd, "wb") as f:
        f.write(validator[:MAX_VALIDATOR_BYTES].encode("ascii", errors="replace"))


def _unlink(dir_fd: int, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name, dir_fd=dir_fd)


def write_atomic(dir_fd: int, name: str, data: bytes) -> None:
    """Write ``data`` to ``.NAME.partial``, fsync, rename to ``NAME``."""
    part = partial_name(name)
    fd = os.open(
        part,
        os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
        0o644,
        dir_fd=dir_fd,
    )
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.rename(part, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def remove(dir_fd: int, name: str) -> None:
    """Unlink ``name`` if present; a directory or an undeletable entry is left for the host."""
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    except OSError as exc:
        logger.info("Failed to remove %s: %s", display(name), exc.strerror)

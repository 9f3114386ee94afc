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
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from airlock.agent.progress import Meter, SerialReporter
from airlock.agent.transport import CHUNK_BYTES, Body, RestartError, Source, TransientError
from airlock.agent.writer import Writer
from airlock.errors import FetchError
from airlock.events import Notice, Reporter
from airlock.text import display

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from hashlib import _Hash as Hash

T = TypeVar("T")
SMALL_CHUNK_BYTES = 64 * 1024
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
        with Writer(fd, offset, digest) as writer:
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

# SPDX-License-Identifier: MIT
"""file:// for the agent: an offline source such as a USB stick bound read-only into the VM.

Names are opened relative to the base directory's fd, without following a final symlink, and
only regular files are read (a FIFO, device or directory is ``fetch.file``).  The validator for
resuming is the file's inode, size and modification time.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import urllib.parse
from collections.abc import Callable, Iterator

from airlock.agent.transport import Body, RangeError, TransientError
from airlock.errors import FetchError
from airlock.text import display


class FileSource:
    """file:// below one base directory."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._base = urllib.parse.unquote(urllib.parse.urlsplit(url).path)

    def close(self) -> None:
        """Nothing to release."""

    @contextlib.contextmanager
    def _file(self, name: str) -> Iterator[tuple[int, os.stat_result] | None]:
        what = display(name)
        try:
            dfd = os.open(self._base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise TransientError(
                f"Failed to open the offline source {display(self._base)}: {exc.strerror}"
            ) from exc
        try:
            fd = os.open(
                name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd
            )
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                yield None
                return
            raise FetchError(
                f"Failed to open {what} in the offline source: {exc.strerror}", code="fetch.file"
            ) from exc
        finally:
            os.close(dfd)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise FetchError(f"Refusing {what}: not a regular file", code="fetch.file")
            yield fd, st
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def open(
        self, name: str, *, offset: int = 0, validator: str | None = None
    ) -> Iterator[Body | None]:
        """Open ``name`` below the base directory (no final symlink, regular files only)."""
        with self._file(name) as found:
            if found is None:
                yield None
                return
            fd, st = found
            current = _file_validator(st)
            start = offset if 0 < offset <= st.st_size and validator == current else 0
            yield Body(
                offset=start,
                length=st.st_size - start,
                validator=current,
                size=st.st_size,
                readinto=_pread_reader(fd, start, st.st_size),
            )

    @contextlib.contextmanager
    def open_range(
        self, name: str, start: int, end: int, *, validator: str | None = None
    ) -> Iterator[Body]:
        """Bytes ``[start, end)`` of ``name``; ``RangeError`` if it changed or is too short."""
        with self._file(name) as found:
            if found is None:
                raise FetchError(
                    f"Failed to fetch {display(name)}: not found", code="fetch.missing"
                )
            fd, st = found
            current = _file_validator(st)
            if end > st.st_size or (validator is not None and validator != current):
                raise RangeError(f"Failed to fetch a range of {display(name)}: the file changed")
            yield Body(
                offset=start,
                length=end - start,
                validator=current,
                size=st.st_size,
                readinto=_pread_reader(fd, start, end),
            )


def _file_validator(st: os.stat_result) -> str:
    return f"{st.st_ino}-{st.st_size}-{st.st_mtime_ns}"


def _pread_reader(fd: int, start: int, end: int) -> Callable[[memoryview], int]:
    state = {"pos": start}

    def readinto(view: memoryview) -> int:
        pos = state["pos"]
        want = min(len(view), end - pos)
        if want <= 0:
            return 0
        n = os.preadv(fd, [view[:want]], pos)
        state["pos"] = pos + n
        return n

    return readinto

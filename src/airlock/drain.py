# SPDX-License-Identifier: MIT
"""``Drain``: the one bounded reader of child output (``proc.run``, the VM console, the sandbox).

A daemon thread reads a pipe to EOF.  Whatever the writer sends, memory stays bounded: the first
``head`` bytes and the last ``tail`` bytes are kept, the total is counted, and at most
``log_limit`` bytes are copied into an optional log file, followed by ``marker`` when the output was
longer.  The bytes are untrusted when the writer is: callers escape them (``text.tail``/``display``)
before they reach a message.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import BinaryIO

from airlock.errors import HostError

_CHUNK = 65536


class Drain:
    """Reads ``fd`` (which it owns and closes) in a daemon thread; see the module docstring."""

    def __init__(
        self,
        fd: int,
        *,
        head: int = 0,
        tail: int = 0,
        log_path: Path | None = None,
        log_limit: int = 0,
        marker: bytes = b"",
    ) -> None:
        """Start reading at once.

        Raises:
            HostError: ``host.log`` when the log file cannot be created (``fd`` is closed then).
        """
        self._fd, self._head_limit, self._tail_limit = fd, head, tail
        self._log_limit, self._marker = log_limit, marker
        self._log: BinaryIO | None = None
        if log_path is not None:
            try:
                self._log = open(log_path, "wb")  # closed by the thread
            except OSError as exc:
                os.close(fd)
                raise HostError(
                    f"Failed to open the log {log_path}: {exc.strerror}", code="host.log"
                ) from exc
        self._head = bytearray()
        self._tail = bytearray()
        self.total = 0
        self._log_full = False
        self._thread = threading.Thread(target=self._pump, name="airlock-drain", daemon=True)
        self._thread.start()

    @property
    def head(self) -> bytes:
        """The first ``head`` bytes read."""
        return bytes(self._head)

    @property
    def tail(self) -> bytes:
        """The last ``tail`` bytes read."""
        return bytes(self._tail)

    def _pump(self) -> None:
        try:
            while True:
                try:
                    chunk = os.read(self._fd, _CHUNK)
                except InterruptedError:
                    continue
                except OSError:
                    return
                if not chunk:
                    return
                self._keep(chunk)
        finally:
            os.close(self._fd)
            if self._log is not None:
                with contextlib.suppress(OSError):
                    self._log.close()

    def _keep(self, chunk: bytes) -> None:
        room = self._head_limit - len(self._head)
        if room > 0:
            self._head += chunk[:room]
        if self._tail_limit:
            self._tail += chunk
            del self._tail[: -self._tail_limit]
        if self._log is not None and not self._log_full:
            room = self._log_limit - self.total
            with contextlib.suppress(OSError):
                self._log.write(chunk[:room])
                if len(chunk) > room:
                    self._log_full = True
                    self._log.write(self._marker)
        self.total += len(chunk)

    def close(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for EOF; False if a writer still holds the pipe."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

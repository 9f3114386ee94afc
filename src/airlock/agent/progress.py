# SPDX-License-Identifier: MIT
"""Download progress inside the VM: thread-safe event forwarding and per-file meters.

Byte ranges of one file are fetched on several threads (``agent.delta``); everything here may be
called from any of them.
"""

from __future__ import annotations

import threading
import time

from airlock.events import Event, Reporter, Step, StepProgress

PROGRESS_INTERVAL_S = 0.5


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

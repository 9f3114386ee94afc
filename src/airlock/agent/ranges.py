# SPDX-License-Identifier: MIT
"""Byte ranges of one file, fetched over several connections into its partial file (inside the VM).

Every answer must be a ``206`` for exactly the range asked for (``web.HttpSource.open_range``),
of a file of the size the block index gave, with the validator of the first answer (sent back as
``If-Range``): otherwise ``RangeError``, and the caller downloads the whole file instead.  A
range cut by a transient failure is retried from where it stopped.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Sequence

from airlock.agent.fetch import Downloader
from airlock.agent.progress import Meter
from airlock.agent.transport import CHUNK_BYTES, Body, RangeError, Source
from airlock.agent.writer import pwrite_all
from airlock.text import display

PARALLEL = 8  # connections fetching byte ranges at once


class RangeFetcher:
    """Downloads byte ranges of one file into ``fd``; every answer must belong to one file.

    Up to ``PARALLEL`` connections fetch ranges at the same time (``Downloader.fork``), so a
    delta of many small ranges is not one round trip per range on a slow link.
    """

    def __init__(self, downloader: Downloader, fd: int, name: str, size: int, meter: Meter) -> None:
        self.downloader = downloader
        self.fd = fd
        self.name = name
        self.what = display(name)
        self.size = size
        self.meter = meter
        self.validator: str | None = None
        self.fetched = 0
        self._lock = threading.Lock()

    def fetch_all(self, ranges: Sequence[tuple[int, int]]) -> None:
        """Fetch every range; the first failure stops the others and is raised."""
        pending = collections.deque(ranges)
        errors: list[BaseException] = []
        extra = min(PARALLEL, len(ranges)) - 1 if self.downloader.fork else 0
        sources = [self.downloader.source]
        try:
            sources += [self.downloader.fork() for _ in range(extra)]  # type: ignore[misc]
            workers = [
                threading.Thread(target=self._work, args=(src, pending, errors), daemon=True)
                for src in sources[1:]
            ]
            for t in workers:
                t.start()
            self._work(sources[0], pending, errors)
            for t in workers:
                t.join()
        finally:
            for src in sources[1:]:
                src.close()
        if errors:
            raise errors[0]

    def _work(
        self,
        source: Source,
        pending: collections.deque[tuple[int, int]],
        errors: list[BaseException],
    ) -> None:
        buf = memoryview(bytearray(CHUNK_BYTES))
        while True:
            with self._lock:
                if errors or not pending:
                    return
                start, end = pending.popleft()
            try:
                pos = [start]
                self.downloader.retrying(
                    self.what,
                    lambda: self._attempt(source, buf, pos, end),  # noqa: B023
                )
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                with self._lock:
                    errors.append(exc)
                return

    def _check(self, body: Body) -> None:
        if body.size is not None and body.size != self.size:
            raise RangeError(f"{self.what} on the server has {body.size} bytes, its index says "
                             f"{self.size}")  # fmt: skip
        with self._lock:
            if self.validator is None:
                self.validator = body.validator
            elif body.validator is not None and body.validator != self.validator:
                raise RangeError(f"{self.what} changed on the server during the download")

    def _attempt(self, source: Source, buf: memoryview, pos: list[int], end: int) -> None:
        d = self.downloader
        with source.open_range(self.name, pos[0], end, validator=self.validator) as body:
            self._check(body)
            while n := body.readinto(buf):
                pwrite_all(self.fd, buf[:n], pos[0])
                pos[0] += n
                with self._lock:
                    self.fetched += n
                d.count(n, self.what)
                self.meter.add(n)
                d.check_deadline(self.what)

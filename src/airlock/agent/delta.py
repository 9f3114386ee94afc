# SPDX-License-Identifier: MIT
"""Delta downloads (inside the VM): build a new file from blocks the VM already has, fetch the rest.

Trusts nothing: the block index (``NAME.blocks``, ``formats.blockindex``) comes from the server
unsigned, and the seeds are the VM's own earlier downloads in ``updates/``.  Neither can change
what is accepted: the assembled file gets its real name only if its SHA-256 equals the signed
manifest's, and the host hashes it again from the frozen snapshot.  A missing, malformed or
mismatching index, a server that does not answer byte ranges exactly, a file that changes on the
server between requests, or an assembled file with the wrong hash all end the delta attempt with
a notice, and the caller downloads the whole file as before.

For one file: fetch and parse the index (its header must carry the manifest's SHA-256); keep the
blocks of ``.NAME.partial`` that already match (a delta or a whole-file download cut earlier);
read the seeds block by block (4 KiB-aligned, ADR 0074) and copy every block the index still
needs; fetch the remaining blocks with ``Range`` requests, neighbours coalesced (gaps merged
smallest first while they add at most 2 % to the bytes needed); copy blocks that occur twice in
the new file locally; hash the whole file, fsync, rename.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from airlock.agent import selection
from airlock.agent.fetch import Downloader, Meter, partial_name, pwrite_all, validator_name
from airlock.agent.transport import CHUNK_BYTES, RangeError
from airlock.errors import BlockIndexError, FetchError
from airlock.events import Notice, Step
from airlock.formats import blockindex, definitions, version
from airlock.text import display

logger = logging.getLogger(__name__)

MAX_INDEX_BYTES = 64 << 20  # the index of a 16 GiB image; larger images are fetched whole
MERGE_SLACK = 0.02  # coalescing may add this share of the needed bytes
MAX_SEEDS = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class DeltaResult:
    """What one delta download did."""

    reused_bytes: int  # copied from seeds or kept from the partial file
    fetched_bytes: int  # received in byte ranges
    index_bytes: int
    ranges: int


def seeds(listing: Sequence[str], transfer: definitions.Transfer, current: str | None) -> list[str]:
    """Files of other versions of ``transfer`` in ``updates/``, newest first (``MAX_SEEDS``)."""
    found = []
    for name in listing:
        v = selection.file_version(transfer, name)
        if v is not None and (current is None or version.compare(v, current) != 0):
            found.append((version.key(v), name))
    found.sort(reverse=True)
    return [name for _key, name in found[:MAX_SEEDS]]


def fetch_index(downloader: Downloader, name: str, sha256: str) -> blockindex.BlockIndex | None:
    """The usable index of ``name``, or ``None`` (with a notice when it exists but is unusable)."""
    what = display(name)
    try:
        raw = downloader.get_small(blockindex.index_name(name), limit=MAX_INDEX_BYTES)
        if raw is None:
            logger.debug("no block index for %s", what)
            return None
        index = blockindex.parse(raw, max_file_bytes=downloader.budget.max_file_bytes)
        if index.header.sha256 != sha256:
            raise BlockIndexError(f"Block index of {what} describes other content")
    except FetchError as exc:
        if exc.code == "fetch.timeout":
            raise
        _notice(downloader, f"{exc.message}; downloading the whole file")
        return None
    return index


def _notice(downloader: Downloader, message: str) -> None:
    downloader.reporter.emit(Notice(message=message, step=Step.DOWNLOAD))


class _Plan:
    """Which blocks of the new file are still needed, keyed by digest."""

    def __init__(self, index: blockindex.BlockIndex) -> None:
        self.index = index
        self.header = index.header
        self.have = bytearray(self.header.blocks)
        self.needed: dict[bytes, list[int]] = {}

    def keep_matching(self, fd: int) -> int:
        """Mark the blocks ``fd`` already holds; return their bytes."""
        kept = 0
        size = min(os.fstat(fd).st_size, self.header.file_bytes)
        for start, view in _blocks(fd, size, self.header.block_bytes):
            i = start // self.header.block_bytes
            end = self.index.block_range(i)[1]
            if start + len(view) == end and _digest(view, self.header) == self.index.digest(i):
                self.have[i] = 1
                kept += len(view)
        return kept

    def build_needed(self) -> None:
        """The digest → block numbers map of every block not yet held."""
        needed: dict[bytes, list[int]] = {}
        for i in range(self.header.blocks):
            if not self.have[i]:
                needed.setdefault(self.index.digest(i), []).append(i)
        self.needed = needed

    def copy_from(self, seed_fd: int, fd: int) -> int:
        """Copy every needed block found in ``seed_fd`` into ``fd``; return the bytes copied."""
        copied = 0
        size = os.fstat(seed_fd).st_size
        for _start, view in _blocks(seed_fd, size, self.header.block_bytes):
            if not self.needed:
                break
            targets = self.needed.pop(_digest(view, self.header), None)
            if targets is None:
                continue
            for i in targets:
                start, end = self.index.block_range(i)
                if end - start != len(view):
                    continue  # a short last block cannot equal a whole one
                pwrite_all(fd, view, start)
                self.have[i] = 1
                copied += len(view)
        return copied

    def to_fetch(self) -> list[int]:
        """Block numbers to download: the first block of each needed digest."""
        return sorted(targets[0] for targets in self.needed.values())

    def copy_duplicates(self, fd: int) -> int:
        """Fill the other blocks of each fetched digest from its first copy."""
        copied = 0
        for targets in self.needed.values():
            first_start, first_end = self.index.block_range(targets[0])
            data = os.pread(fd, first_end - first_start, first_start)
            for i in targets[1:]:
                pwrite_all(fd, data, self.index.block_range(i)[0])
                copied += len(data)
        return copied


def _digest(view: memoryview, header: blockindex.Header) -> bytes:
    return hashlib.sha256(view).digest()[: header.digest_bytes]


def _blocks(fd: int, size: int, block: int) -> Iterator[tuple[int, memoryview]]:
    """(offset, view) of each block of ``fd`` up to ``size`` (views valid until the next one)."""
    buf = bytearray(CHUNK_BYTES - CHUNK_BYTES % block)
    whole = memoryview(buf)
    offset = 0
    while offset < size:
        n = os.preadv(fd, [whole[: min(len(buf), size - offset)]], offset)
        if n <= 0:
            return
        for start in range(0, n, block):
            yield offset + start, whole[start : min(start + block, n)]
        offset += n


def coalesce(blocks: Sequence[int], header: blockindex.Header) -> list[tuple[int, int]]:
    """Byte ranges ``[start, end)`` covering ``blocks`` (sorted), gaps merged within the slack."""
    if not blocks:
        return []
    runs: list[list[int]] = [[blocks[0], blocks[0] + 1]]
    for b in blocks[1:]:
        if b == runs[-1][1]:
            runs[-1][1] = b + 1
        else:
            runs.append([b, b + 1])
    budget = MERGE_SLACK * len(blocks)
    gaps = sorted(range(len(runs) - 1), key=lambda k: runs[k + 1][0] - runs[k][1])
    merge = set()
    for k in gaps:
        width = runs[k + 1][0] - runs[k][1]
        if width > budget:
            break
        budget -= width
        merge.add(k)
    out: list[tuple[int, int]] = []
    start = runs[0][0]
    for k in range(len(runs)):
        if k in merge:
            continue
        out.append((start, runs[k][1]))
        if k + 1 < len(runs):
            start = runs[k + 1][0]
    size = header.file_bytes
    return [(a * header.block_bytes, min(b * header.block_bytes, size)) for a, b in out]


class _RangeFetcher:
    """Downloads byte ranges of one file into ``fd``; every answer must belong to one file."""

    def __init__(self, downloader: Downloader, fd: int, name: str, size: int, meter: Meter) -> None:
        self.downloader = downloader
        self.fd = fd
        self.name = name
        self.size = size
        self.meter = meter
        self.validator: str | None = None
        self.fetched = 0
        self._buf = memoryview(bytearray(CHUNK_BYTES))

    def fetch(self, start: int, end: int) -> None:
        """Fetch ``[start, end)``, retrying transient failures from where they stopped."""
        pos = [start]
        self.downloader.retrying(display(self.name), lambda: self._attempt(pos, end))

    def _attempt(self, pos: list[int], end: int) -> None:
        what = display(self.name)
        d = self.downloader
        with d.source.open_range(self.name, pos[0], end, validator=self.validator) as body:
            if body.size is not None and body.size != self.size:
                raise RangeError(f"{what} on the server has {body.size} bytes, its index says "
                                 f"{self.size}")  # fmt: skip
            if self.validator is None:
                self.validator = body.validator
            elif body.validator is not None and body.validator != self.validator:
                raise RangeError(f"{what} changed on the server during the download")
            while n := body.readinto(self._buf):
                pwrite_all(self.fd, self._buf[:n], pos[0])
                pos[0] += n
                self.fetched += n
                d.count(n, what)
                self.meter.add(n)
                d.check_deadline(what)


def seed_fds(dir_fd: int, seeds: Sequence[str]) -> list[tuple[str, int]]:
    """Open the seed files that are regular files (no symlink followed)."""
    out = []
    for name in seeds:
        try:
            fd = os.open(
                name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd
            )
        except OSError:
            continue
        if stat.S_ISREG(os.fstat(fd).st_mode):
            out.append((name, fd))
        else:
            os.close(fd)
    return out


def assemble(
    downloader: Downloader,
    dir_fd: int,
    name: str,
    sha256: str,
    index: blockindex.BlockIndex,
    seeds: Sequence[str],
) -> DeltaResult | None:
    """Delta-download ``name``; ``None`` when the caller must download the whole file instead.

    Raises:
        FetchError: the network failed beyond retries, or a cap or the deadline was hit (the
            partial file is kept for the next run).
        OSError: ``updates/`` is not writable.
    """
    what = display(name)
    part = partial_name(name)
    header = index.header
    fd = os.open(part, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dir_fd)
    try:
        plan = _Plan(index)
        reused = plan.keep_matching(fd)
        os.ftruncate(fd, header.file_bytes)
        plan.build_needed()
        opened = seed_fds(dir_fd, seeds)
        try:
            for _seed, seed_fd in opened:
                reused += plan.copy_from(seed_fd, fd)
        finally:
            for _seed, seed_fd in opened:
                os.close(seed_fd)
        if reused == 0:
            _give_up(downloader, dir_fd, part, f"Nothing of {what} found locally; downloading "
                     "the whole file")  # fmt: skip
            return None
        ranges = coalesce(plan.to_fetch(), header)
        wanted = sum(b - a for a, b in ranges)
        _notice(
            downloader,
            f"{what}: {reused} of {header.file_bytes} bytes found locally; fetching {wanted} "
            f"bytes in {len(ranges)} ranges",
        )
        meter = Meter(downloader.reporter, what, done=0, total=wanted)
        fetcher = _RangeFetcher(downloader, fd, name, header.file_bytes, meter)
        try:
            for start, end in ranges:
                fetcher.fetch(start, end)
        except RangeError as exc:
            _give_up(downloader, dir_fd, part, f"{exc.message}; downloading the whole file")
            return None
        meter.add(0, final=True)
        reused += plan.copy_duplicates(fd)
        if _sha256(fd) != sha256:
            _give_up(downloader, dir_fd, part, f"Assembled {what} differs from the manifest; "
                     "downloading the whole file")  # fmt: skip
            return None
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(part, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    _unlink(dir_fd, validator_name(name))
    os.fsync(dir_fd)
    return DeltaResult(
        reused_bytes=reused,
        fetched_bytes=fetcher.fetched,
        index_bytes=header.index_bytes,
        ranges=len(ranges),
    )


def _give_up(downloader: Downloader, dir_fd: int, part: str, message: str) -> None:
    _notice(downloader, message)
    _unlink(dir_fd, part)


def _unlink(dir_fd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


def _sha256(fd: int) -> str:
    digest = hashlib.sha256()
    size = os.fstat(fd).st_size
    for _start, view in _blocks(fd, size, CHUNK_BYTES):
        digest.update(view)
    return digest.hexdigest()

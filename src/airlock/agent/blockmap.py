# SPDX-License-Identifier: MIT
"""Which pieces of a new file the VM already has: a block index matched against local files.

Inside the VM; trusts nothing.  The digests come from an unsigned index and the files are the
VM's own earlier downloads, so a "match" is only a guess that the whole-file SHA-256 confirms or
refutes later (``agent.delta``).  Reads use ``pread`` on descriptors opened by the caller (no
path is resolved here); writes go only to the partial file of the download.

Matching works at three granularities (ADR 0074):

* **groups** of G blocks: the seed files' group digests are computed at every block offset, so a
  run of G blocks that moved by any number of whole blocks is found with one lookup;
* **blocks** (4 KiB): for groups not found, every block digest is looked up among the seeds'
  blocks at any block-aligned offset;
* **sub-blocks** (1 KiB): for short runs of blocks still missing, the seed block that sits where
  the run's found neighbours say it should (an edited block usually stays in place) is compared
  sub-block by sub-block.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from airlock.agent.transport import CHUNK_BYTES
from airlock.agent.writer import pwrite_all
from airlock.formats import blockindex
from airlock.formats.blockindex import Header

REFINE_RUN_BLOCKS = 8  # sub-block digests are fetched only for runs of missing blocks this short
REQUEST_BYTES = 512  # a gap this small is always fetched: a request costs about as much
MERGE_SLACK = 0.02  # coalescing may fetch this share of the needed bytes again


@dataclass(frozen=True, slots=True)
class Where:
    """A place in a local file."""

    fd: int
    offset: int


def block_digests(fd: int, size: int, header: Header) -> list[bytes]:
    """Digests of ``fd``'s blocks up to ``size`` (the last one may be short)."""
    out = []
    block, dig = header.block_bytes, header.digest_bytes
    for _start, view in read_blocks(fd, size, block):
        out.append(blockindex.digest(view, dig))
    return out


def read_blocks(fd: int, size: int, block: int) -> Iterator[tuple[int, memoryview]]:
    """(offset, view) of each block of ``fd`` up to ``size`` (a view lives until the next)."""
    buf = bytearray(max(CHUNK_BYTES - CHUNK_BYTES % block, block))
    whole = memoryview(buf)
    offset = 0
    while offset < size:
        n = os.preadv(fd, [whole[: min(len(buf), size - offset)]], offset)
        if n <= 0:
            return
        for start in range(0, n, block):
            yield offset + start, whole[start : min(start + block, n)]
        offset += n


class Seeds:
    """Block digests of the seed files and their group digests at every block offset.

    Places are kept packed in one int (seed number, block number) to keep the maps small: about
    90 MB and a few seconds of CPU per GiB of seed.
    """

    _SHIFT = 40

    def __init__(self, header: Header, fds: Sequence[int]) -> None:
        self.header = header
        self.fds = list(fds)
        self.blocks: dict[bytes, int] = {}
        self.groups: dict[bytes, int] = {}
        lengths = {
            header.group_range(g)[1] - header.group_range(g)[0] for g in (0, header.groups - 1)
        }
        dig = header.digest_bytes
        for n, fd in enumerate(self.fds):
            joined = b"".join(block_digests(fd, os.fstat(fd).st_size, header))
            count, base = len(joined) // dig, n << self._SHIFT
            blocks, groups = self.blocks, self.groups
            for k in range(count):
                blocks.setdefault(joined[k * dig : (k + 1) * dig], base | k)
            for m in lengths:
                width = m * dig
                for k in range(count - m + 1):
                    at = k * dig
                    key = hashlib.sha256(joined[at : at + width]).digest()[:dig]
                    groups.setdefault(key, base | k)

    def where(self, packed: int | None) -> Where | None:
        """The place a packed value stands for."""
        if packed is None:
            return None
        block = packed & ((1 << self._SHIFT) - 1)
        return Where(self.fds[packed >> self._SHIFT], block * self.header.block_bytes)


class Plan:
    """The new file's blocks: which are present (and from where), which must be fetched."""

    def __init__(self, header: Header, partial: Sequence[bytes]) -> None:
        self.header = header
        self.partial = partial  # block digests of what the partial file holds, in place
        self.have = bytearray(header.blocks)
        self.source: list[Where | None] = [None] * header.blocks
        self.reused = 0

    def _mark(self, i: int, where: Where | None) -> None:
        self.have[i] = 1
        self.source[i] = where
        start, end = self.header.block_range(i)
        self.reused += end - start

    def in_place(self, first: int, end: int, digests: Sequence[bytes]) -> bool:
        """Whether the partial file already holds blocks ``[first, end)`` with ``digests``."""
        return end <= len(self.partial) and list(self.partial[first:end]) == list(digests)

    def take_group(self, g: int, group_digest: bytes, seeds: Seeds, fd: int) -> bool:
        """Group ``g`` from the partial file (in place) or a seed (copied); False if neither."""
        first, end = self.header.group_range(g)
        dig = self.header.digest_bytes
        if end <= len(self.partial):
            if blockindex.digest(b"".join(self.partial[first:end]), dig) == group_digest:
                for i in range(first, end):
                    self._mark(i, None)
                return True
        where = seeds.where(seeds.groups.get(group_digest))
        if where is None:
            return False
        start, stop = self.header.block_range(first)[0], self.header.block_range(end - 1)[1]
        pwrite_all(fd, os.pread(where.fd, stop - start, where.offset), start)
        for k, i in enumerate(range(first, end)):
            self._mark(i, Where(where.fd, where.offset + k * self.header.block_bytes))
        return True

    def take_block(self, i: int, block_digest: bytes, seeds: Seeds, fd: int) -> bool:
        """Block ``i`` from the partial file or a seed; False if neither has it."""
        if i < len(self.partial) and self.partial[i] == block_digest:
            self._mark(i, None)
            return True
        where = seeds.where(seeds.blocks.get(block_digest))
        if where is None:
            return False
        start, end = self.header.block_range(i)
        pwrite_all(fd, os.pread(where.fd, end - start, where.offset), start)
        self._mark(i, where)
        return True

    def missing_runs(self) -> list[tuple[int, int]]:
        """Runs ``[first, end)`` of blocks still missing."""
        runs: list[tuple[int, int]] = []
        i, n = 0, self.header.blocks
        while i < n:
            if self.have[i]:
                i += 1
                continue
            j = i
            while j < n and not self.have[j]:
                j += 1
            runs.append((i, j))
            i = j
        return runs

    def candidates(self, first: int, end: int, i: int) -> list[Where]:
        """Seed places where block ``i`` of the missing run ``[first, end)`` may have been."""
        out = []
        block = self.header.block_bytes
        left = self.source[first - 1] if first > 0 else None
        if left is not None:
            out.append(Where(left.fd, left.offset + (i - first + 1) * block))
        right = self.source[end] if end < self.header.blocks else None
        if right is not None:
            out.append(Where(right.fd, right.offset - (end - i) * block))
        return [w for w in out if w.offset >= 0]

    def refine(self, i: int, subs: Sequence[bytes], where: Sequence[Where], fd: int) -> list[int]:
        """Copy the sub-blocks of block ``i`` found in the candidate seed blocks ``where``.

        Returns:
            The sub-block numbers (within the file) still missing.
        """
        header = self.header
        sub, size = header.sub_bytes, header.sub_digest_bytes
        found: dict[bytes, tuple[int, int]] = {}
        for w in where:
            data = os.pread(w.fd, header.block_bytes, w.offset)
            for at in range(0, len(data), sub):
                found.setdefault(
                    blockindex.digest(data[at : at + sub], size), (w.fd, w.offset + at)
                )
        start, end = header.block_range(i)
        first_sub = start // sub
        missing = []
        for k, d in enumerate(subs):
            at = start + k * sub
            length = min(sub, end - at)
            hit = found.get(d)
            if hit is None:
                missing.append(first_sub + k)
                continue
            pwrite_all(fd, os.pread(hit[0], length, hit[1]), at)
            self.reused += length
        return missing


def coalesce(intervals: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, disjoint ``[start, end)`` intervals merged into fewer requests.

    Adjacent intervals always merge; a gap merges when it is at most ``REQUEST_BYTES`` or, taking
    the smallest gaps first, while the gaps merged add up to ``MERGE_SLACK`` of the bytes needed.
    """
    if not intervals:
        return []
    runs = [list(intervals[0])]
    for a, b in intervals[1:]:
        if a <= runs[-1][1]:
            runs[-1][1] = max(runs[-1][1], b)
        else:
            runs.append([a, b])
    budget = MERGE_SLACK * sum(b - a for a, b in runs)
    order = sorted(range(len(runs) - 1), key=lambda k: runs[k + 1][0] - runs[k][1])
    merge = set()
    for k in order:
        gap = runs[k + 1][0] - runs[k][1]
        if gap > REQUEST_BYTES:
            if gap > budget:
                break
            budget -= gap
        merge.add(k)
    out: list[tuple[int, int]] = []
    start = runs[0][0]
    for k, (_a, b) in enumerate(runs):
        if k in merge:
            continue
        out.append((start, b))
        if k + 1 < len(runs):
            start = runs[k + 1][0]
    return out

# SPDX-License-Identifier: MIT
"""Delta downloads (inside the VM): build a new file from pieces the VM already has, fetch the rest.

Trusts nothing: the block index (``NAME.blocks``, ``formats.blockindex``) comes from the server
unsigned, and the seeds are the VM's own earlier downloads in ``updates/``.  Neither can change
what is accepted: the assembled file gets its real name only if its SHA-256 equals the signed
manifest's, and the host hashes it again from the frozen snapshot.  A missing or malformed index,
one made for other content, a server that does not answer byte ranges exactly, a file that
changes on the server between requests, or an assembled file with the wrong hash all end the
delta attempt with a notice, and the caller downloads the whole file as before.

For one file (``assemble``): read the index header and group digests; take every group the
partial file already holds in place (a resumed download) or a seed holds anywhere; read the block
digests of the other groups and take the blocks found; for short runs of blocks still missing,
read their sub-block digests and take the sub-blocks found where the run's neighbours came from;
fetch what is left with ``Range`` requests (``blockmap.coalesce``); copy blocks that occur twice
locally; hash the whole file, fsync, rename.  Index sections are fetched with ranges too, so a
small change costs a small part of the index.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass

from airlock.agent import selection
from airlock.agent.blockmap import REFINE_RUN_BLOCKS, Plan, Seeds, Where, block_digests, coalesce
from airlock.agent.fetch import Downloader, partial_name, validator_name
from airlock.agent.progress import Meter
from airlock.agent.ranges import RangeFetcher
from airlock.agent.transport import CHUNK_BYTES, RangeError
from airlock.agent.writer import pwrite_all
from airlock.errors import BlockIndexError, FetchError
from airlock.events import Notice, Step
from airlock.formats import blockindex, definitions, version
from airlock.formats.blockindex import Header
from airlock.text import display

logger = logging.getLogger(__name__)

MAX_INDEX_BYTES = 256 << 20  # the index of a 40 GiB image; larger images are fetched whole
MAX_SEEDS = 1  # the newest other version: older ones rarely add a block, and cost memory


@dataclass(frozen=True, slots=True, kw_only=True)
class DeltaResult:
    """What one delta download did."""

    reused_bytes: int  # copied from seeds or kept from the partial file
    fetched_bytes: int  # received in byte ranges of the file
    index_bytes: int  # received of its block index
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


class RemoteIndex:
    """Parts of ``NAME.blocks`` on the server, read with byte ranges (or whole, if need be)."""

    def __init__(self, downloader: Downloader, name: str, sha256: str) -> None:
        self.downloader = downloader
        self.name = blockindex.index_name(name)
        self.what = display(self.name)
        self.whole: bytes | None = None
        self.validator: str | None = None
        self.received = 0
        self._header: Header | None = None
        raw = self.read(0, blockindex.HEADER_BYTES)
        self.header = blockindex.parse_header(raw, max_file_bytes=downloader.budget.max_file_bytes)
        self._header = self.header
        if self.header.sha256 != sha256:
            raise BlockIndexError(f"Block index of {display(name)} describes other content")
        if self.header.index_bytes > MAX_INDEX_BYTES:
            raise BlockIndexError(
                f"Block index of {display(name)} is larger than {MAX_INDEX_BYTES}"
            )
        self._check_size(name)

    def _check_size(self, name: str) -> None:
        if self.whole is not None and self._header is not None:
            if len(self.whole) != self._header.index_bytes:
                raise BlockIndexError(
                    f"Block index of {display(name)} is {len(self.whole)} bytes, its header "
                    f"implies {self._header.index_bytes}"
                )

    def read(self, start: int, end: int) -> bytes:
        """Bytes ``[start, end)`` of the index."""
        if self.whole is None:
            try:
                return self._range(start, end)
            except RangeError as exc:
                logger.info("%s; fetching the whole index", exc.message)
                whole = self.downloader.get_small(self.name, limit=MAX_INDEX_BYTES)
                if whole is None:
                    raise BlockIndexError(f"{self.what} vanished from the server") from exc
                self.whole = whole
                self.received += len(whole)
                self._check_size(self.name.removesuffix(blockindex.SUFFIX))
        return self.whole[start:end]  # short only before the header check (then refused)

    def _range(self, start: int, end: int) -> bytes:
        out = bytearray()

        def attempt() -> None:
            out.clear()
            d = self.downloader
            with d.source.open_range(self.name, start, end, validator=self.validator) as body:
                if self.validator is None:
                    self.validator = body.validator
                elif body.validator is not None and body.validator != self.validator:
                    raise RangeError(f"{self.what} changed on the server")
                view = memoryview(bytearray(min(end - start, CHUNK_BYTES)))
                while n := body.readinto(view):
                    out.extend(view[:n])
                    d.check_deadline(self.what)

        self.downloader.retrying(self.what, attempt)
        self.received += len(out)
        return bytes(out)

    def sections(self, ranges: Sequence[tuple[int, int]]) -> dict[int, bytes]:
        """Many pieces at once (coalesced requests); keyed by each piece's start."""
        out: dict[int, bytes] = {}
        wanted = sorted(ranges)
        for a, b in coalesce(wanted):
            data = self.read(a, b)
            for s, e in wanted:
                if a <= s and e <= b:
                    out[s] = data[s - a : e - a]
        return out


def fetch_index(downloader: Downloader, name: str, sha256: str) -> RemoteIndex | None:
    """The usable index of ``name``, or ``None`` (with a notice when it exists but is unusable)."""
    try:
        return RemoteIndex(downloader, name, sha256)
    except FetchError as exc:
        if exc.code == "fetch.timeout":
            raise
        if exc.code == "fetch.missing":
            logger.debug("no block index for %s", display(name))
        else:
            _notice(downloader, f"{exc.message}; downloading the whole file")
        return None


def _notice(downloader: Downloader, message: str) -> None:
    downloader.reporter.emit(Notice(message=message, step=Step.DOWNLOAD))


class _Assembly:
    """One delta download in progress: the plan, the partial file, the index, the seeds."""

    def __init__(self, downloader: Downloader, index: RemoteIndex, fd: int, seed_fds: list[int]):
        self.downloader = downloader
        self.index = index
        self.header: Header = index.header
        self.fd = fd
        held = min(os.fstat(fd).st_size, self.header.file_bytes)
        self.plan = Plan(self.header, block_digests(fd, held, self.header) if held else [])
        os.ftruncate(fd, self.header.file_bytes)
        self.seeds = Seeds(self.header, seed_fds)
        self.duplicates: dict[int, list[int]] = {}  # first block → its later copies

    def match(self) -> list[tuple[int, int]]:
        """Take what is local; return the byte intervals still to fetch."""
        h, dig = self.header, self.header.digest_bytes
        groups = self.index.read(h.groups_at, h.blocks_at)
        lacking = [
            g for g in range(h.groups)
            if not self.plan.take_group(g, groups[g * dig : (g + 1) * dig], self.seeds, self.fd)
        ]  # fmt: skip
        digests = self._block_digests(lacking, groups)
        first_of: dict[bytes, int] = {}
        for i, d in sorted(digests.items()):
            if self.plan.take_block(i, d, self.seeds, self.fd):
                continue
            if d in first_of:
                self.duplicates.setdefault(first_of[d], []).append(i)
                self.plan.have[i] = 1  # filled from its first copy after the fetch
            else:
                first_of[d] = i
        return self._refine()

    def _block_digests(self, lacking: list[int], groups: bytes) -> dict[int, bytes]:
        h, dig = self.header, self.header.digest_bytes
        spans = []
        for g in lacking:
            first, end = h.group_range(g)
            spans.append((h.blocks_at + first * dig, h.blocks_at + end * dig))
        pieces = self.index.sections(spans)
        out: dict[int, bytes] = {}
        for g, (a, _b) in zip(lacking, spans, strict=True):
            raw = pieces[a]
            if blockindex.digest(raw, dig) != groups[g * dig : (g + 1) * dig]:
                raise BlockIndexError(f"{self.index.what}: group {g} does not fit its blocks")
            first, _end = h.group_range(g)
            for k in range(len(raw) // dig):
                out[first + k] = raw[k * dig : (k + 1) * dig]
        return out

    def _refine(self) -> list[tuple[int, int]]:
        h, plan = self.header, self.plan
        wanted: list[tuple[int, int]] = []
        refine: list[tuple[int, list[Where]]] = []
        for first, end in plan.missing_runs():
            for i in range(first, end):
                where = plan.candidates(first, end, i) if end - first <= REFINE_RUN_BLOCKS else []
                if where:
                    refine.append((i, where))
                else:
                    wanted.append(h.block_range(i))
        size, sub = h.sub_digest_bytes, h.sub_bytes
        spans = []
        for i, _where in refine:
            start, end = h.block_range(i)
            spans.append((h.subs_at + start // sub * size, h.subs_at + -(-end // sub) * size))
        pieces = self.index.sections(spans)
        for (i, where), (a, _b) in zip(refine, spans, strict=True):
            raw = pieces[a]
            subs = [raw[k : k + size] for k in range(0, len(raw), size)]
            for k in plan.refine(i, subs, where, self.fd):
                start = k * sub
                wanted.append((start, min(start + sub, h.file_bytes)))
        return coalesce(sorted(wanted))

    def copy_duplicates(self) -> int:
        """Fill later copies of a block from its first copy; return the bytes copied."""
        copied = 0
        for first, later in self.duplicates.items():
            start, end = self.header.block_range(first)
            data = os.pread(self.fd, end - start, start)
            for i in later:
                pwrite_all(self.fd, data, self.header.block_range(i)[0])
                copied += len(data)
        return copied


def _open_seeds(dir_fd: int, names: Sequence[str]) -> list[int]:
    """Open the seed files that are regular files (no symlink followed)."""
    out = []
    for name in names:
        try:
            fd = os.open(
                name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd
            )
        except OSError:
            continue
        if stat.S_ISREG(os.fstat(fd).st_mode):
            out.append(fd)
        else:
            os.close(fd)
    return out


def assemble(
    downloader: Downloader,
    dir_fd: int,
    name: str,
    sha256: str,
    index: RemoteIndex,
    seed_names: Sequence[str],
) -> DeltaResult | None:
    """Delta-download ``name``; ``None`` when the caller must download the whole file instead.

    Raises:
        FetchError: the network failed beyond retries, or a cap or the deadline was hit (the
            partial file is kept for the next run).
        OSError: ``updates/`` is not writable.
    """
    what = display(name)
    part = partial_name(name)
    fd = os.open(part, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dir_fd)
    seed_fds = _open_seeds(dir_fd, seed_names)
    try:
        try:
            job = _Assembly(downloader, index, fd, seed_fds)
            ranges = job.match()
        except BlockIndexError as exc:
            return _give_up(downloader, dir_fd, part, f"{exc.message}; downloading the whole file")
        if job.plan.reused == 0:
            message = f"Nothing of {what} found locally; downloading the whole file"
            return _give_up(downloader, dir_fd, part, message)
        wanted = sum(b - a for a, b in ranges)
        _notice(downloader, f"{what}: {job.plan.reused} of {index.header.file_bytes} bytes found "
                f"locally; fetching {wanted} bytes in {len(ranges)} ranges")  # fmt: skip
        meter = Meter(downloader.reporter, what, done=0, total=wanted)
        fetcher = RangeFetcher(downloader, fd, name, index.header.file_bytes, meter)
        try:
            fetcher.fetch_all(ranges)
        except RangeError as exc:
            return _give_up(downloader, dir_fd, part, f"{exc.message}; downloading the whole file")
        meter.add(0, final=True)
        reused = job.plan.reused + job.copy_duplicates()
        if _sha256(fd) != sha256:
            return _give_up(downloader, dir_fd, part, f"Assembled {what} differs from the "
                            "manifest; downloading the whole file")  # fmt: skip
        os.fsync(fd)
    finally:
        os.close(fd)
        for seed in seed_fds:
            os.close(seed)
    os.rename(part, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    _unlink(dir_fd, validator_name(name))
    os.fsync(dir_fd)
    return DeltaResult(
        reused_bytes=reused,
        fetched_bytes=fetcher.fetched,
        index_bytes=index.received,
        ranges=len(ranges),
    )


def _give_up(downloader: Downloader, dir_fd: int, part: str, message: str) -> DeltaResult | None:
    """Report why the delta stops, drop its partial file; the caller downloads the whole file."""
    _notice(downloader, message)
    _unlink(dir_fd, part)
    return None


def _unlink(dir_fd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass


def _sha256(fd: int) -> str:
    digest = hashlib.sha256()
    buf = bytearray(CHUNK_BYTES)
    view = memoryview(buf)
    offset = 0
    while n := os.preadv(fd, [view], offset):
        digest.update(view[:n])
        offset += n
    return digest.hexdigest()

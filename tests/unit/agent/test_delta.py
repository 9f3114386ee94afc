# SPDX-License-Identifier: MIT
"""Delta downloads: blocks found in the previous version are copied, only new blocks fetched.

Every test runs the real agent against `airlock serve` and nginx (the `server` fixture) or a
server configured for the case; bytes are counted by the server, not by the agent.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from airlock.agent import blockmap, delta, ranges
from airlock.agent.fetch import Budget, Downloader
from airlock.agent.main import run
from airlock.agent.options import Outcome
from airlock.agent.transport import Body, source_for
from airlock.events import ListReporter, Notice, StepProgress
from airlock.formats import blockindex
from airlock.lab import nginx
from airlock.release.serve import Faults, ServeConfig, Server, serving
from tests.unit.agent.conftest import MIB, World, release_names

BLOCK = 4096


def _blocks(n: int) -> list[bytes]:
    return [os.urandom(BLOCK) for _ in range(n)]


def _root_pair() -> tuple[bytes, bytes, int]:
    """v1 and v2 of a 1 MiB root image, and the number of distinct blocks v2 adds.

    v2 shifts everything after block 10 by three new blocks (as an inserted file does in EROFS),
    rewrites block 100, repeats one new block twice, and drops the last block of v1.
    """
    old = _blocks(256)
    fresh = _blocks(4)
    new = [*old[:10], fresh[0], fresh[1], fresh[2], *old[10:100], fresh[3], *old[101:255], fresh[1]]
    return b"".join(old), b"".join(new), 4


def _root_served(srv: Server, version: str) -> int:
    return srv.bytes_served().get(release_names(version)[1], 0)


def _notices(reporter: ListReporter) -> list[str]:
    return [e.message for e in reporter.events if isinstance(e, Notice)]


def test_unchanged_and_shifted_blocks_are_reused_and_only_new_blocks_fetched(
    world: World, server: Server
) -> None:
    old, new, fresh = _root_pair()
    world.publish("1", root=old)
    assert run(world.options(), ListReporter()).outcome == Outcome.DOWNLOADED
    files = world.publish("2", root=new)
    reporter = ListReporter()
    result = run(world.options(), reporter)
    rootfs = release_names("2")[1]
    assert (world.updates / rootfs).read_bytes() == files[rootfs]
    # The distinct new blocks are fetched once each (the repeated one is copied locally); the
    # coalescing slack is 2 % of the bytes needed, i.e. nothing for four blocks.
    assert _root_served(server, "2") == fresh * BLOCK
    # Of the index: the header, the group digests, and the block digests of the groups that
    # changed (blocks 0-15, 96-111, 240-255 are in groups the seed does not hold).
    index = blockindex.parse_header(blockindex.build(new), max_file_bytes=1 << 40)
    index_bytes = server.bytes_served()[blockindex.index_name(rootfs)]
    assert index_bytes < index.index_bytes / 2
    assert index_bytes <= 64 + index.groups * 8 + 16 * 16 * 8 * 3 + 4 * 4 * 4
    assert result.reused_bytes >= len(new) - fresh * BLOCK  # root; the random verity/UKI: none
    assert any("found locally" in m for m in _notices(reporter))
    progress = [
        e for e in reporter.events if isinstance(e, StepProgress) and e.item == repr(rootfs)
    ]
    assert progress and progress[-1].done == progress[-1].total == fresh * BLOCK


def test_without_an_index_the_whole_file_is_downloaded(world: World, server: Server) -> None:
    world.indexes = False
    old, new, _ = _root_pair()
    world.publish("1", root=old)
    run(world.options(), ListReporter())
    files = world.publish("2", root=new)
    result = run(world.options(), ListReporter())
    rootfs = release_names("2")[1]
    assert (world.updates / rootfs).read_bytes() == files[rootfs]
    assert _root_served(server, "2") == len(new)
    assert result.reused_bytes == 0


def test_no_delta_option_downloads_whole_files(world: World, server: Server) -> None:
    old, new, _ = _root_pair()
    world.publish("1", root=old)
    run(world.options(), ListReporter())
    world.publish("2", root=new)
    run(world.options(delta=False), ListReporter())
    assert _root_served(server, "2") == len(new)
    assert blockindex.index_name(release_names("2")[1]) not in server.bytes_served()


def _no_block_digests(new: bytes) -> bytes:
    """The right header and group digests, cut before the block digests."""
    raw = blockindex.build(new)
    return raw[: blockindex.parse_header(raw, max_file_bytes=1 << 40).blocks_at]


def _bad_group_digest(new: bytes) -> bytes:
    raw = bytearray(blockindex.build(new))
    raw[blockindex.HEADER_BYTES] ^= 1  # group 0 no longer fits its block digests
    return bytes(raw)


@pytest.mark.parametrize(
    ("make", "notice"),
    [
        (lambda new: b"garbage", "too short"),
        (lambda new: blockindex.build(b"some other image" * 300), "describes other content"),
        (_no_block_digests, "header implies"),
        (_bad_group_digest, "does not fit its blocks"),
    ],
)
def test_unusable_index_falls_back_to_the_whole_file(
    world: World, server: Server, make: Callable[[bytes], bytes], notice: str
) -> None:
    old, new, _ = _root_pair()
    world.publish("1", root=old)
    run(world.options(), ListReporter())
    files = world.publish("2", root=new)
    rootfs = release_names("2")[1]
    (world.origin / blockindex.index_name(rootfs)).write_bytes(make(new))
    reporter = ListReporter()
    run(world.options(), reporter)
    assert (world.updates / rootfs).read_bytes() == files[rootfs]
    assert _root_served(server, "2") == len(new)
    assert any(notice in m and "whole file" in m for m in _notices(reporter)), _notices(reporter)


def _lying_index(real: bytes, claimed: bytes) -> bytes:
    """An index with ``real``'s size and SHA-256 but the block digests of ``claimed``."""
    good = blockindex.build(real)
    fake = blockindex.build(claimed[: len(real)].ljust(len(real), b"\0"))
    return good[: blockindex.HEADER_BYTES] + fake[blockindex.HEADER_BYTES :]


def test_lying_index_cannot_give_a_wrong_file_its_name(world: World, server: Server) -> None:
    # The index says every block of v2 is the corresponding block of v1 (all found locally), and
    # carries v2's true SHA-256.  The agent assembles v1's bytes, the whole-file check fails, and
    # it downloads v2 whole: the file that gets the name is the genuine one.
    old, new, _ = _root_pair()
    world.publish("1", root=old)
    run(world.options(), ListReporter())
    files = world.publish("2", root=new)
    rootfs = release_names("2")[1]
    (world.origin / blockindex.index_name(rootfs)).write_bytes(_lying_index(new, old))
    reporter = ListReporter()
    run(world.options(), reporter)
    assert (world.updates / rootfs).read_bytes() == files[rootfs]
    assert any("differs from the manifest" in m for m in _notices(reporter))
    assert _root_served(server, "2") >= len(new)


def test_a_server_ignoring_ranges_gets_the_whole_file(world: World, tmp_path: Path) -> None:
    old, new, _ = _root_pair()
    world.publish("1", root=old)
    files = world.publish("2", root=new)
    (world.updates / release_names("1")[1]).write_bytes(old)  # the seed
    config = nginx.NginxConfig(root=world.origin, workdir=tmp_path / "ng", max_ranges=0)
    with nginx.serving(config) as web:
        world.set_url(web.url)
        reporter = ListReporter()
        run(world.options(), reporter)
        rootfs = release_names("2")[1]
        statuses = [r["status"] for r in web.requests() if r["path"] == rootfs]
    assert (world.updates / rootfs).read_bytes() == files[rootfs]
    assert any("HTTP 200 instead of 206" in m for m in _notices(reporter))
    # Refused range answers (their bodies unread; up to one per parallel connection), then the
    # whole file.
    assert len(statuses) >= 2
    assert set(statuses) == {200}


class _ChangingSource:
    """Wraps a real source; replaces the file on the server after the first byte range."""

    def __init__(self, inner: object, path: Path, replacement: bytes) -> None:
        self.inner = inner
        self.url = inner.url  # type: ignore[attr-defined]
        self.path, self.replacement = path, replacement
        self.ranges = 0

    def open(self, name: str, **kw: object) -> contextlib.AbstractContextManager[Body | None]:
        return self.inner.open(name, **kw)  # type: ignore[attr-defined,no-any-return]

    @contextlib.contextmanager
    def open_range(self, name: str, start: int, end: int, **kw: object) -> Iterator[Body]:
        self.ranges += 1
        if self.ranges == 2:
            tmp = self.path.with_name(".tmp")
            tmp.write_bytes(self.replacement)
            os.utime(tmp, (1, 1))
            tmp.rename(self.path)  # a new inode, size and date: a new ETag
        with self.inner.open_range(name, start, end, **kw) as body:  # type: ignore[attr-defined]
            yield body

    def close(self) -> None:
        self.inner.close()  # type: ignore[attr-defined]


def test_file_changed_between_range_requests_is_detected(world: World, server: Server) -> None:
    old = b"".join(_blocks(64))
    new = bytearray(old)
    for i in (3, 20, 40):  # three separate ranges
        new[i * BLOCK : (i + 1) * BLOCK] = os.urandom(BLOCK)
    world.publish("1", root=old)
    run(world.options(), ListReporter())
    files = world.publish("2", root=bytes(new))
    rootfs = release_names("2")[1]
    sha = hashlib.sha256(files[rootfs]).hexdigest()
    deadline = time.monotonic() + 30
    inner = source_for(world.share.joinpath("etc/update-url").read_text().strip(),
                       stall_s=5, deadline=deadline)  # fmt: skip
    source = _ChangingSource(inner, world.origin / rootfs, os.urandom(len(new) + 1))
    budget = Budget(deadline=deadline, max_manifest_bytes=MIB, max_signature_bytes=MIB,
                    max_file_bytes=1 << 30, max_total_bytes=1 << 30)  # fmt: skip
    reporter = ListReporter()
    downloader = Downloader(source, budget, reporter)
    index = delta.fetch_index(downloader, rootfs, sha)
    assert index is not None
    fd = os.open(world.updates, os.O_RDONLY | os.O_DIRECTORY)
    try:
        done = delta.assemble(downloader, fd, rootfs, sha, index, [release_names("1")[1]])
    finally:
        os.close(fd)
        source.close()
    assert done is None  # the caller downloads the whole file (and then finds the SHA-256 wrong)
    assert any("changed" in m or "bytes, its index says" in m for m in _notices(reporter))
    assert not (world.updates / rootfs).exists()
    assert not (world.updates / f".{rootfs}.partial").exists()


def test_cut_range_answers_are_resumed_where_they_stopped(world: World) -> None:
    old = b"".join(_blocks(256))
    new = bytearray(old)
    new[50 * BLOCK : 90 * BLOCK] = os.urandom(40 * BLOCK)  # one range of 160 KiB
    world.publish("1", root=old)
    files = world.publish("2", root=bytes(new))
    (world.updates / release_names("1")[1]).write_bytes(old)
    rootfs = release_names("2")[1]
    faults = Faults(cut_after_bytes={rootfs: 50_000})
    with serving(ServeConfig(root=world.origin, faults=faults)) as srv:
        world.set_url(srv.url)
        run(world.options(timeout_s=60), ListReporter())
        served = srv.bytes_served()[rootfs]
        starts = [r["range"][0] for r in srv.requests() if r["path"] == rootfs]  # type: ignore[index]
    assert (world.updates / rootfs).read_bytes() == files[rootfs]
    assert served == 40 * BLOCK  # nothing fetched twice
    assert starts == [50 * BLOCK + k * 50_000 for k in range(4)]


def test_partial_file_of_an_interrupted_delta_is_resumed(world: World, server: Server) -> None:
    new = b"".join(_blocks(128))
    files = world.publish("2", root=new)
    rootfs = release_names("2")[1]
    partial = bytearray(new)
    for i in range(0, 128, 3):  # an earlier run got two thirds of the blocks
        partial[i * BLOCK : (i + 1) * BLOCK] = bytes(BLOCK)
    (world.updates / f".{rootfs}.partial").write_bytes(partial)
    result = run(world.options(), ListReporter())
    assert (world.updates / rootfs).read_bytes() == files[rootfs]
    assert _root_served(server, "2") == 43 * BLOCK
    assert result.reused_bytes == 85 * BLOCK


def test_a_symlinked_seed_is_not_followed(world: World, server: Server, tmp_path: Path) -> None:
    old, new, _ = _root_pair()
    outside = tmp_path / "outside"
    outside.write_bytes(old)
    world.publish("1", root=old)
    files = world.publish("2", root=new)
    os.symlink(outside, world.updates / release_names("1")[1])
    run(world.options(), ListReporter())
    rootfs = release_names("2")[1]
    assert (world.updates / rootfs).read_bytes() == files[rootfs]
    assert _root_served(server, "2") == len(new)  # nothing reused through the link


@pytest.mark.parametrize(
    ("intervals", "merged"),
    [
        ([], []),
        ([(0, 4096), (4096, 8192)], [(0, 8192)]),  # adjacent
        ([(0, 4096), (4600, 8192)], [(0, 8192)]),  # a gap cheaper than a request
        ([(0, 4096), (8192, 12288)], [(0, 4096), (8192, 12288)]),  # 4 KiB gap: 50 % of 8 KiB
        ([(0, 400_000), (404_096, 500_000)], [(0, 500_000)]),  # 4 KiB gap within 2 %
        ([(0, 100), (10_000, 10_100), (20_000, 20_100)], [(0, 100), (10_000, 10_100),
                                                          (20_000, 20_100)]),
    ],
)  # fmt: skip
def test_coalescing_merges_gaps_within_the_request_cost_or_the_slack(
    intervals: list[tuple[int, int]], merged: list[tuple[int, int]]
) -> None:
    assert blockmap.coalesce(intervals) == merged


def test_range_requests_reuse_their_connections(world: World, tmp_path: Path) -> None:
    old = b"".join(_blocks(512))
    new = bytearray(old)
    for i in range(0, 512, 16):  # 32 separate one-block changes: 32 ranges
        new[i * BLOCK : i * BLOCK + 10] = os.urandom(10)
    world.publish("1", root=old)
    files = world.publish("2", root=bytes(new))
    (world.updates / release_names("1")[1]).write_bytes(old)
    with nginx.serving(nginx.NginxConfig(root=world.origin, workdir=tmp_path / "ng")) as web:
        world.set_url(web.url)
        run(world.options(), ListReporter())
        rootfs = release_names("2")[1]
        entries = [r for r in web.requests() if r["path"] == rootfs]
    assert (world.updates / rootfs).read_bytes() == files[rootfs]
    assert len(entries) >= 16
    assert len({e["connection"] for e in entries}) <= ranges.PARALLEL  # kept alive, not one each


def test_a_damaged_copy_of_the_file_itself_is_a_seed(world: World, server: Server) -> None:
    new = b"".join(_blocks(256))
    files = world.publish("1", root=new)
    rootfs = release_names("1")[1]
    damaged = bytearray(new)
    damaged[len(new) // 2] ^= 0xFF  # one flipped byte, as the lab's "tampered" attack leaves it
    (world.updates / rootfs).write_bytes(damaged)
    run(world.options(), ListReporter())
    assert (world.updates / rootfs).read_bytes() == files[rootfs]
    assert _root_served(server, "1") == 1024  # the one damaged sub-block

# SPDX-License-Identifier: MIT
"""untrusted/mapped.py: hashing from a read-only map under a read lease (ADR 0150).

The digests must equal hashlib's on every size and window boundary; a truncation or a writer
while hashing must end in a clean refusal (the lease is broken, the hasher stops touching the
map), never in SIGBUS.  The negative controls show the hazard is real (an unleased map that is
truncated kills its process with SIGBUS) and that the lease poll is what refuses.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from airlock import fsutil
from airlock.errors import InspectionError
from airlock.limits import Limits
from airlock.untrusted import hashing, mapped, walk

WINDOW = 64 * 1024


@contextlib.contextmanager
def _leased(path: Path) -> Iterator[int]:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        assert mapped.take_lease(fd, os.fstat(fd).st_size)
        yield fd
    finally:
        mapped.drop_lease(fd)
        os.close(fd)


@pytest.mark.parametrize(
    "size",
    [0, 1, 4095, 4096, 4097, WINDOW - 1, WINDOW, WINDOW + 1, 3 * WINDOW, 3 * WINDOW + 7, 1_000_003],
)
def test_mapped_digest_equals_hashlib_on_window_boundaries(tmp_path: Path, size: int) -> None:
    content = os.urandom(size)
    (tmp_path / "f").write_bytes(content)
    with _leased(tmp_path / "f") as fd:
        got = mapped.sha256_mapped(fd, size, threading.Event(), window=WINDOW)
    assert got == hashlib.sha256(content).hexdigest()


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_many_files_hash_as_hashlib_through_the_map(tmp_path: Path, threads: int) -> None:
    sizes = [0, 1, 17, 4096, 65535, 65537, *range(100_000, 3_000_000, 250_001)]
    data = {f"f{i:02d}": os.urandom(s) for i, s in enumerate(sizes)}
    for name, content in data.items():
        (tmp_path / name).write_bytes(content)
    fd = os.open(tmp_path, fsutil.DIR_FLAGS)
    try:
        listing = walk.walk(fd, limits=Limits())
        out = hashing.hash_files(fd, listing.files, limits=replace(Limits(), hash_threads=threads))
    finally:
        os.close(fd)
    assert [d.name for d in out.digests] == [f.name for f in listing.files]  # request order
    assert {d.name: d.sha256 for d in out.digests} == {
        n: hashlib.sha256(c).hexdigest() for n, c in data.items()
    }
    assert {d.name: d.head for d in out.digests} == {n: c[:8] for n, c in data.items()}
    assert out.bytes_hashed == sum(sizes)


def test_the_map_is_used_when_a_lease_can_be_had(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x" * 10)
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    try:
        assert mapped.take_lease(fd, 10)
        assert mapped.lease_held(fd)
        mapped.drop_lease(fd)
        assert not mapped.lease_held(fd)
    finally:
        os.close(fd)


def test_no_lease_while_a_writer_has_the_file_open(tmp_path: Path) -> None:
    path = tmp_path / "f"
    content = os.urandom(200_000)
    path.write_bytes(content)
    writer = os.open(path, os.O_WRONLY)
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            assert not mapped.take_lease(fd, len(content))
        finally:
            os.close(fd)
        # the judge then reads instead of mapping, with the same digest
        dfd = os.open(tmp_path, fsutil.DIR_FLAGS)
        try:
            out = hashing.hash_files(dfd, walk.walk(dfd, limits=Limits()).files, limits=Limits())
        finally:
            os.close(dfd)
        assert out.digests[0].sha256 == hashlib.sha256(content).hexdigest()
    finally:
        os.close(writer)


def test_no_lease_when_the_size_differs(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x" * 10)
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    try:
        assert not mapped.take_lease(fd, 11)  # cut before the lease: never mapped past the end
        assert not mapped.lease_held(fd)
    finally:
        os.close(fd)


def _truncate_when_polled(
    monkeypatch: pytest.MonkeyPatch, path: Path, at_call: int, *, poll: bool = True
) -> threading.Thread:
    """On the ``at_call``-th lease poll, truncate ``path`` to 0 for real from another thread and
    wait until the kernel reports the break pending; then answer the poll truthfully (or, with
    ``poll=False``, as if the defence were gone)."""
    real = mapped.lease_held
    calls = 0
    cutter = threading.Thread(target=os.truncate, args=(path, 0), daemon=True)

    def lease_held(fd: int) -> bool:
        nonlocal calls
        calls += 1
        if calls == at_call:
            cutter.start()  # blocks in the kernel until the lease is released
            deadline = time.monotonic() + 10
            while real(fd) and time.monotonic() < deadline:
                time.sleep(0.001)
        return real(fd) if poll else True

    monkeypatch.setattr(mapped, "lease_held", lease_held)
    return cutter


def test_truncation_while_hashing_is_refused_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "big"
    path.write_bytes(os.urandom(8 * WINDOW))
    dfd = os.open(tmp_path, fsutil.DIR_FLAGS)
    try:
        listing = walk.walk(dfd, limits=Limits())
        monkeypatch.setattr(mapped, "WINDOW_BYTES", WINDOW)
        cutter = _truncate_when_polled(monkeypatch, path, at_call=4)
        with pytest.raises(InspectionError) as info:  # one thread: the map, no read-ahead
            hashing.hash_files(dfd, listing.files, limits=replace(Limits(), hash_threads=1))
    finally:
        os.close(dfd)
    assert info.value.code == "reject.size"
    assert "truncated while being hashed" in info.value.message
    cutter.join(10)
    assert not cutter.is_alive()  # the lease was released: the truncation went through
    assert path.stat().st_size == 0


@pytest.mark.parametrize("at_call", [2, 5, 10])
def test_truncation_at_any_window_including_after_the_last_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, at_call: int
) -> None:
    path = tmp_path / "big"
    # Poll 1 is take_lease's own check; 8 windows: polls 2..9 before each, 10 after the last.
    path.write_bytes(os.urandom(8 * WINDOW))
    cutter = _truncate_when_polled(monkeypatch, path, at_call=at_call)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert mapped.take_lease(fd, 8 * WINDOW)
        with pytest.raises(mapped.Changed):
            mapped.sha256_mapped(fd, 8 * WINDOW, threading.Event(), window=WINDOW)
        mapped.drop_lease(fd)
    finally:
        os.close(fd)
    cutter.join(10)
    assert path.stat().st_size == 0


def test_negative_control_without_the_poll_the_truncation_goes_unseen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The detector removed (the poll always says "held"): the hash completes over bytes that a
    # waiting truncation is about to remove — what the poll exists to refuse.
    path = tmp_path / "big"
    content = os.urandom(8 * WINDOW)
    path.write_bytes(content)
    cutter = _truncate_when_polled(monkeypatch, path, at_call=3, poll=False)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert mapped.take_lease(fd, len(content))
        got = mapped.sha256_mapped(fd, len(content), threading.Event(), window=WINDOW)
        mapped.drop_lease(fd)
    finally:
        os.close(fd)
    cutter.join(10)
    assert got == hashlib.sha256(content).hexdigest()
    assert path.stat().st_size == 0


def test_negative_control_an_unleased_truncated_map_kills_with_sigbus(tmp_path: Path) -> None:
    # The hazard the lease prevents, shown in a child process: map, truncate, touch.
    path = tmp_path / "f"
    path.write_bytes(b"x" * (1 << 20))
    script = (
        "import mmap, os, sys\n"
        "fd = os.open(sys.argv[1], os.O_RDONLY)\n"
        "m = mmap.mmap(fd, 1 << 20, prot=mmap.PROT_READ)\n"
        "os.truncate(sys.argv[1], 0)\n"
        "m[(1 << 20) - 1]\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", script, os.fspath(path)], capture_output=True, timeout=60
    )
    assert res.returncode == -signal.SIGBUS


def test_a_break_does_not_signal_the_process(tmp_path: Path) -> None:
    # A lease break would send SIGIO (default action: terminate) to the owner; the owner is
    # cleared, so opening the file for writing while the lease is held leaves us running.
    path = tmp_path / "f"
    path.write_bytes(b"x" * 4096)
    with _leased(path) as fd:
        with pytest.raises(BlockingIOError):  # the break starts; a blocking open would wait
            os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        assert not mapped.lease_held(fd)  # pending break, seen by polling, and we still run


def test_short_lease_break_time_disables_the_map(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake: Callable[[], int] = lambda: mapped.MIN_LEASE_BREAK_S - 1  # noqa: E731
    monkeypatch.setattr(mapped, "_break_time_s", fake)
    (tmp_path / "f").write_bytes(b"x")
    fd = os.open(tmp_path / "f", os.O_RDONLY)
    try:
        assert not mapped.take_lease(fd, 1)
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    ("sizes", "threads", "ahead"),
    [
        ([10], 2, {0}),  # a spare core: read ahead
        ([10], 1, set()),
        ([10, 10], 2, set()),  # two cores, two files: a map each
        ([400, 100, 10, 0], 2, set()),  # not dominant (400 < 4 * 110)
        ([440, 100, 10], 2, {0}),  # Spectrum's shape: the root image dominates
        ([100, 400], 2, {1}),
        ([100, 400], 1, set()),
        ([5, 5, 5], 8, {0, 1, 2}),
    ],
)
def test_read_ahead_goes_to_a_spare_core_or_a_dominant_file(
    sizes: list[int], threads: int, ahead: set[int]
) -> None:
    files = [walk.ListedFile(name=f"f{i}", size=size, dev=0, ino=i) for i, size in enumerate(sizes)]
    assert hashing.read_ahead(files, threads) == ahead


@pytest.mark.parametrize("threads", [1, 2])
def test_dominant_file_and_small_ones_hash_as_hashlib(tmp_path: Path, threads: int) -> None:
    data = {"root": os.urandom(5_000_003), "verity": os.urandom(100_001), "uki": os.urandom(7)}
    for name, content in data.items():
        (tmp_path / name).write_bytes(content)
    fd = os.open(tmp_path, fsutil.DIR_FLAGS)
    try:
        listing = walk.walk(fd, limits=Limits())
        limits = replace(Limits(), hash_threads=threads, hash_buffer_bytes=65536)
        out = hashing.hash_files(fd, listing.files, limits=limits)
    finally:
        os.close(fd)
    assert {d.name: d.sha256 for d in out.digests} == {
        n: hashlib.sha256(c).hexdigest() for n, c in data.items()
    }

# SPDX-License-Identifier: MIT
"""A ``shared`` the VM filled with a deep or huge tree cannot crash or stall later runs.

Issue #15 item 5: a 1,500-deep directory chain left in ``shared`` made every later run die in
``clean_share`` (``RecursionError``, exit 1) before the VM started, and the listing of ``shared``
was unbounded.  ``clean_share`` now looks at a bounded number of entries and, on anything but
regular files or on too many, deletes and recreates the subvolume in the kernel.  Real btrfs on a
loop file; the trees are built as the VM would, through directory fds.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from airlock.backends.staging import btrfs
from airlock.backends.staging.btrfs import SUBVOL_INO, BtrfsStaging

pytestmark = pytest.mark.btrfs

DEPTH = 10_000
MANY = 100_000  # regular files: building them takes ~5 s here (idle); the clean, well under 1 s


def _chain(root: Path, depth: int) -> None:
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir("d", dir_fd=fd)
            child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        os.close(os.open("leaf", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    finally:
        os.close(fd)


def _files(root: Path, count: int) -> None:
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for i in range(count):
            os.close(os.open(f"Spectrum_{i}.efi", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
    finally:
        os.close(fd)


def _clean_and_check(staging: BtrfsStaging) -> float:
    start = time.monotonic()
    report = staging.clean_share()
    elapsed = time.monotonic() - start
    assert report.reset
    assert os.listdir(staging.share) == []
    assert os.lstat(staging.share).st_ino == SUBVOL_INO
    return elapsed


def test_a_10000_deep_chain_is_cleared_without_a_walk(btrfs_dir: Path) -> None:
    staging = BtrfsStaging(btrfs_dir / "staging")
    staging.prepare()
    _chain(staging.share, DEPTH)
    assert sys.getrecursionlimit() < DEPTH  # deep enough to break any recursive walk
    assert _clean_and_check(staging) < 10
    # The next run finds a usable share, and a normal leftover is cleaned as usual.
    (staging.share / "Spectrum_2.efi").write_bytes(b"k")
    report = staging.clean_share()
    assert (report.reset, report.kept) == (False, 1)


def test_more_files_than_the_bound_recreate_the_share(btrfs_dir: Path) -> None:
    staging = BtrfsStaging(btrfs_dir / "staging")
    staging.prepare()
    _files(staging.share, MANY)
    assert MANY > btrfs.MAX_SHARE_ENTRIES
    assert _clean_and_check(staging) < 10


def test_at_the_bound_the_cached_files_are_kept(btrfs_dir: Path) -> None:
    # Control: the bound, not the file type, made the share above be recreated.
    staging = BtrfsStaging(btrfs_dir / "staging")
    staging.prepare()
    _files(staging.share, btrfs.MAX_SHARE_ENTRIES)
    report = staging.clean_share()
    assert (report.reset, report.kept, report.removed) == (False, btrfs.MAX_SHARE_ENTRIES, 0)

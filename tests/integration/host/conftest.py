# SPDX-License-Identifier: MIT
"""A real loop-backed btrfs, mounted under tmp_path and always unmounted: per test or per module."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def loop_btrfs(where: Path) -> Iterator[Path]:
    """A mounted, empty btrfs file system (loop file in ``where``, auto-cleared loop device)."""
    img, mnt = where / "btrfs.img", where / "mnt"
    mnt.mkdir()
    with open(img, "wb") as fh:
        fh.truncate(512 << 20)
    subprocess.run(["mkfs.btrfs", "-q", "-f", str(img)], check=True, capture_output=True)
    subprocess.run(["mount", "-t", "btrfs", "-o", "loop", str(img), str(mnt)], check=True)
    try:
        yield mnt
    finally:
        # Unmount anything a failing test left below the mount point, deepest first.
        targets = [
            line.split()[4]
            for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split()[4].startswith(str(mnt))
        ]
        for target in sorted(targets, key=len, reverse=True):
            if subprocess.run(["umount", target], check=False).returncode != 0:
                subprocess.run(["umount", "-l", target], check=False)
        # The auto-clear loop device goes away asynchronously; wait for it.
        for _ in range(100):
            held = subprocess.run(["losetup", "-j", str(img)], capture_output=True, text=True)
            if not held.stdout.strip():
                break
            time.sleep(0.05)


@pytest.fixture
def btrfs_dir(tmp_path: Path) -> Iterator[Path]:
    """A btrfs for one test."""
    with loop_btrfs(tmp_path) as mnt:
        yield mnt


@pytest.fixture(scope="module")
def btrfs_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A btrfs shared by the tests of one module (their world is reset, not rebuilt)."""
    with loop_btrfs(tmp_path_factory.mktemp("btrfs")) as mnt:
        yield mnt

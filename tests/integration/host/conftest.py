# SPDX-License-Identifier: MIT
"""A real loop-backed btrfs, mounted under a temporary directory and always unmounted; worlds on it.

``btrfs_dir`` gives each test its own; ``btrfs_module`` one per test module, for modules that run
many ``airlock update`` runs in one world.  ``world`` is a fresh host world per test (``world.py``);
``keys`` a module's extra signing keys; ``restored_world`` one world per module whose fetcher waits
for the test to plant the share, put back to its pristine state (version 1, no state file) before
each test.  A module defines its own ``world`` where it needs another.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.keys import KeySet, kill_agent

from . import planting
from .world import World, build


@contextlib.contextmanager
def mounted_btrfs(where: Path, size: int = 512 << 20) -> Iterator[Path]:
    """A mounted, empty btrfs filesystem (loop file in ``where``, auto-cleared loop device)."""
    img, mnt = where / "btrfs.img", where / "mnt"
    mnt.mkdir()
    with open(img, "wb") as fh:
        fh.truncate(size)
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
        # The auto-clear loop device goes away asynchronously (seconds later on a loaded machine,
        # after processes that ran in other mount namespaces are gone); wait for it.
        for _ in range(600):
            held = subprocess.run(["losetup", "-j", str(img)], capture_output=True, text=True)
            if not held.stdout.strip():
                break
            time.sleep(0.05)


@pytest.fixture
def btrfs_dir(tmp_path: Path) -> Iterator[Path]:
    """A mounted, empty btrfs filesystem for one test."""
    with mounted_btrfs(tmp_path) as mnt:
        yield mnt


@pytest.fixture(scope="module")
def btrfs_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A mounted, empty btrfs filesystem shared by the tests of one module."""
    with mounted_btrfs(tmp_path_factory.mktemp("btrfs")) as mnt:
        yield mnt


@pytest.fixture
def world(tmp_path: Path, btrfs_dir: Path) -> Iterator[World]:
    """A fresh host world for one test (its signing key closed after)."""
    w = build(tmp_path / "w", btrfs_dir)
    try:
        yield w
    finally:
        w.key.close()


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeySet]:
    """A module's keyring of test signing keys (its gpg agent ended after)."""
    keyset = KeySet.build(tmp_path_factory.mktemp("keys"))
    yield keyset
    kill_agent(keyset.home)


@pytest.fixture(scope="module")
def waiting_world(
    tmp_path_factory: pytest.TempPathFactory, btrfs_module: Path, keys: KeySet
) -> Iterator[World]:
    """One world per module whose fetcher waits for the test to plant the share (``keys``)."""
    w = build(tmp_path_factory.mktemp("world") / "w", btrfs_module)
    w.write_config(planting.WAIT_COMMAND, keyring=keys.keyring)
    w.save_pristine()  # version 1 on disk, no state file: a fresh host
    try:
        yield w
    finally:
        w.key.close()


@pytest.fixture
def restored_world(waiting_world: World) -> World:
    """The module's ``waiting_world``, back to its pristine state."""
    waiting_world.restore()
    return waiting_world

# SPDX-License-Identifier: MIT
"""``airlock inspect`` on a real read-only btrfs snapshot of a staging subvolume.

The host judges a read-only snapshot, not the VM-writable subvolume (threat A8): this checks
that the walk, ``syncfs`` and the hashing work there, that writes to the original subvolume after
the snapshot do not change the verdict, and that a hostile entry is refused on btrfs too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from airlock.errors import ExitStatus
from tests.support.corpus import FifoCanary, Staging, payload_names, write_definitions
from tests.support.keys import KeySet, kill_agent

pytestmark = pytest.mark.btrfs


def run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=120)


@pytest.fixture
def btrfs_root(tmp_path: Path) -> Iterator[Path]:
    img, mnt = tmp_path / "fs.img", tmp_path / "mnt"
    mnt.mkdir()
    with open(img, "wb") as fh:
        fh.truncate(256 << 20)
    run("mkfs.btrfs", "-q", "-f", os.fspath(img))
    run("mount", "-t", "btrfs", "-o", "loop,nodev,nosuid,noexec", os.fspath(img), os.fspath(mnt))
    try:
        yield mnt
    finally:
        subprocess.run(["umount", os.fspath(mnt)], check=False, timeout=120)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeySet]:
    keyset = KeySet.build(tmp_path_factory.mktemp("keys"))
    yield keyset
    kill_agent(keyset.home)


def snapshot_of(root: Path, keys: KeySet, build: str) -> tuple[Staging, Path]:
    run("btrfs", "subvolume", "create", os.fspath(root / "shared"))
    s = Staging(root, keys, directory=root / "shared")
    s.payloads("1")
    s.release()
    if build == "symlink":
        os.symlink(s.canary, s.dir / "Spectrum_3.efi")
    s.close()
    snap = root / "snapshot"
    run("btrfs", "subvolume", "snapshot", "-r", os.fspath(s.dir), os.fspath(snap))
    return s, snap


def inspect(snap: Path, defdir: Path, keys: KeySet) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "airlock", "inspect", os.fspath(snap), "--json",
         "--definitions", os.fspath(defdir), "--keyring", os.fspath(keys.keyring)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_read_only_snapshot_is_judged_and_later_writes_do_not_matter(
    btrfs_root: Path, keys: KeySet, tmp_path: Path
) -> None:
    defdir = write_definitions(tmp_path / "defs")
    s, snap = snapshot_of(btrfs_root, keys, "good")
    # The VM keeps writing into the original subvolume after the snapshot: irrelevant.
    efi = payload_names()["70-kernel"]
    (s.dir / efi).write_bytes(b"evil")
    os.symlink("/etc/passwd", s.dir / "SHA256SUMS.sha256.asc")
    with FifoCanary(s.canary) as canary:
        proc = inspect(snap, defdir, keys)
        assert not canary.stop()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    obj = json.loads(proc.stdout)
    assert obj["version"] == "2"
    assert len(obj["dropped"]) == 3
    assert obj["bytes_hashed"] == sum(f["size"] for f in obj["files"])


def test_symlink_in_read_only_snapshot_is_refused(
    btrfs_root: Path, keys: KeySet, tmp_path: Path
) -> None:
    defdir = write_definitions(tmp_path / "defs")
    s, snap = snapshot_of(btrfs_root, keys, "symlink")
    with FifoCanary(s.canary) as canary:
        proc = inspect(snap, defdir, keys)
        assert not canary.stop()
    assert proc.returncode == ExitStatus.REJECTED
    assert json.loads(proc.stdout)["errors"][0]["code"] == "reject.type"

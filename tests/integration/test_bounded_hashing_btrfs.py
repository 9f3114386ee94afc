# SPDX-License-Identifier: MIT
"""The judge's cost is bounded before it hashes (ADR 0160), on a real read-only btrfs snapshot.

The VM writes the share; btrfs lets it make a 64 GiB file that costs no disk (a hole) or a large
file out of one extent cloned many times (reflinks).  The first is refused by the walk's sparse
rule, the second by the room of its target slot, each before a byte is hashed.  The filesystem is
mounted ``compress-force=zstd`` so that the negative control is real: a compressed file is not
taken for a sparse one.
"""

from __future__ import annotations

import datetime
import fcntl
import os
import struct
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from airlock import fsutil
from airlock.backends import openpgp
from airlock.errors import InspectionError
from airlock.formats import definitions
from airlock.limits import Limits
from airlock.trusted import verify
from airlock.trusted.policy import Policy, Room
from airlock.trusted.release import VerifiedRelease
from tests.support.corpus import VERSION, Staging, payload_names, write_definitions
from tests.support.keys import KeySet, kill_agent
from tests.support.staging import manifest_line

pytestmark = pytest.mark.btrfs

FICLONERANGE = 0x4020940D  # _IOW(0x94, 13, struct file_clone_range)
ROOT = payload_names()["60-root"]
SECOND_BOUND_S = 1.0


def run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=120)


@pytest.fixture
def btrfs_root(tmp_path: Path) -> Iterator[Path]:
    img, mnt = tmp_path / "fs.img", tmp_path / "mnt"
    mnt.mkdir()
    with open(img, "wb") as fh:
        fh.truncate(512 << 20)
    run("mkfs.btrfs", "-q", "-f", os.fspath(img))
    run("mount", "-t", "btrfs", "-o", "loop,nodev,nosuid,noexec,compress-force=zstd",
        os.fspath(img), os.fspath(mnt))  # fmt: skip
    try:
        yield mnt
    finally:
        subprocess.run(["umount", os.fspath(mnt)], check=False, timeout=120)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeySet]:
    keyset = KeySet.build(tmp_path_factory.mktemp("keys"))
    yield keyset
    kill_agent(keyset.home)


def _share(root: Path, keys: KeySet) -> Staging:
    run("btrfs", "subvolume", "create", os.fspath(root / "shared"))
    return Staging(root, keys, directory=root / "shared")


def _freeze(root: Path, s: Staging) -> Path:
    s.close()
    snap = root / "snapshot"
    run("btrfs", "subvolume", "snapshot", "-r", os.fspath(s.dir), os.fspath(snap))
    return snap


def _judge(snap: Path, tmp_path: Path, keys: KeySet, policy: Policy) -> VerifiedRelease:
    defdir = tmp_path / "defs"
    if not defdir.exists():
        write_definitions(defdir)
    transfers = definitions.load_dir(defdir, specifiers=definitions.Specifiers())
    fd = os.open(snap, fsutil.DIR_FLAGS)
    try:
        return verify.judge(
            fd,
            transfers=transfers,
            keyring=keys.keyring,
            policy=policy,
            limits=Limits(),
            verifier=openpgp.verifier(),
            now=datetime.datetime.now(datetime.UTC),
        )
    finally:
        os.close(fd)


def _release_with_root(s: Staging, root: bytes) -> None:
    files = s.payloads(write=False)
    files[ROOT] = root
    for name, data in files.items():
        s.put(name, data)
    s.signed_manifest(b"".join(manifest_line(n, d) for n, d in sorted(files.items())))


def test_sparse_64_gib_root_image_is_refused_in_under_a_second(
    btrfs_root: Path, keys: KeySet, tmp_path: Path
) -> None:
    s = _share(btrfs_root, keys)
    s.release()
    os.truncate(s.dir / ROOT, 0)
    os.truncate(s.dir / ROOT, 64 << 30)
    snap = _freeze(btrfs_root, s)
    assert (snap / ROOT).stat().st_size == 64 << 30
    start = time.monotonic()
    with pytest.raises(InspectionError) as info:
        _judge(snap, tmp_path, keys, Policy())
    elapsed = time.monotonic() - start
    print(f"64 GiB sparse root image refused in {elapsed * 1000:.1f} ms")
    assert info.value.code == "reject.sparse"
    assert elapsed < SECOND_BOUND_S
    run("btrfs", "subvolume", "delete", os.fspath(snap))


def test_negative_control_compressed_data_on_btrfs_is_not_taken_for_a_hole(
    btrfs_root: Path, keys: KeySet, tmp_path: Path
) -> None:
    # 8 MiB of zeros written through compress-force=zstd takes a few KiB on disk, yet btrfs
    # reports its uncompressed length in st_blocks: the sparse rule must not fire.
    s = _share(btrfs_root, keys)
    _release_with_root(s, bytes(8 << 20))
    os.sync()
    snap = _freeze(btrfs_root, s)
    st = (snap / ROOT).stat()
    assert st.st_blocks * 512 >= st.st_size
    assert _judge(snap, tmp_path, keys, Policy()).version == VERSION
    run("btrfs", "subvolume", "delete", os.fspath(snap))


def _clone(dst: int, src: int, length: int, offset: int) -> None:
    fcntl.ioctl(dst, FICLONERANGE, struct.pack("=qQQQ", src, 0, length, offset))


def test_reflinked_root_image_is_not_sparse_but_its_slot_bounds_it(
    btrfs_root: Path, keys: KeySet, tmp_path: Path
) -> None:
    # One 1 MiB extent cloned 64 times: a 64 MiB file costing 1 MiB of disk.  btrfs counts each
    # clone in st_blocks (it is not a hole); the root slot's room refuses it before hashing.
    s = _share(btrfs_root, keys)
    s.release()
    os.unlink(s.dir / ROOT)
    extent = 1 << 20
    fd = os.open(s.dir / ROOT, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.write(fd, os.urandom(extent))
        os.fsync(fd)
        for i in range(1, 64):
            _clone(fd, fd, extent, i * extent)
    finally:
        os.close(fd)
    snap = _freeze(btrfs_root, s)
    assert (snap / ROOT).stat().st_size == 64 * extent
    room = (Room(transfer="60-root", bytes=8 << 20, where="the test slot"),)
    start = time.monotonic()
    with pytest.raises(InspectionError) as info:
        _judge(snap, tmp_path, keys, Policy(room=room))
    elapsed = time.monotonic() - start
    assert info.value.code == "reject.room"
    assert elapsed < SECOND_BOUND_S * 5  # signature verification runs first (gpgv/sqv)
    run("btrfs", "subvolume", "delete", os.fspath(snap))

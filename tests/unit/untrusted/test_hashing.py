# SPDX-License-Identifier: MIT
"""untrusted/hashing.py: digests from fds re-checked against what the walk saw."""

from __future__ import annotations

import hashlib
import os
from dataclasses import replace
from pathlib import Path

import pytest

from airlock import fsutil
from airlock.errors import InspectionError
from airlock.limits import Limits
from airlock.untrusted import hashing, walk


def listed(d: Path) -> tuple[int, walk.Listing]:
    fd = os.open(d, fsutil.DIR_FLAGS)
    return fd, walk.walk(fd, limits=Limits())


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_digests_match_hashlib(tmp_path: Path, threads: int) -> None:
    data = {f"f{i}": os.urandom(100_000 * i + 7) for i in range(5)}
    for name, content in data.items():
        (tmp_path / name).write_bytes(content)
    fd, listing = listed(tmp_path)
    try:
        out = hashing.hash_files(
            fd,
            listing.files,
            limits=replace(Limits(), hash_threads=threads, hash_buffer_bytes=65536),
        )
    finally:
        os.close(fd)
    assert {d.name: d.sha256 for d in out.digests} == {
        n: hashlib.sha256(c).hexdigest() for n, c in data.items()
    }
    assert out.bytes_hashed == sum(len(c) for c in data.values())


def test_file_grown_after_walk_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"1234")
    fd, listing = listed(tmp_path)
    try:
        (tmp_path / "a").write_bytes(b"12345")
        with pytest.raises(InspectionError) as info:
            hashing.hash_files(fd, listing.files, limits=Limits())
        assert info.value.code == "reject.size"
    finally:
        os.close(fd)


def test_file_replaced_by_symlink_after_walk_is_not_followed(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"1234")
    fd, listing = listed(tmp_path)
    try:
        os.unlink(tmp_path / "a")
        os.symlink("/etc/passwd", tmp_path / "a")
        with pytest.raises(InspectionError) as info:
            hashing.hash_files(fd, listing.files, limits=Limits())
        assert info.value.code == "reject.type"
    finally:
        os.close(fd)


def test_file_replaced_by_other_inode_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"1234")
    fd, listing = listed(tmp_path)
    try:
        (tmp_path / "new").write_bytes(b"abcd")
        os.rename(tmp_path / "new", tmp_path / "a")  # new inode while the old one is held
        with pytest.raises(InspectionError) as info:
            hashing.hash_files(fd, listing.files, limits=Limits())
        assert info.value.code == "reject.type"
    finally:
        os.close(fd)


def test_hard_link_made_after_walk_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"1234")
    fd, listing = listed(tmp_path)
    try:
        os.link(tmp_path / "a", tmp_path / "b")
        with pytest.raises(InspectionError) as info:
            hashing.hash_files(fd, listing.files, limits=Limits())
        assert info.value.code == "reject.links"
    finally:
        os.close(fd)


def test_first_failure_stops_parallel_hashing(tmp_path: Path) -> None:
    (tmp_path / "big").write_bytes(b"\0" * (8 << 20))
    (tmp_path / "small").write_bytes(b"1")
    fd, listing = listed(tmp_path)
    try:
        os.unlink(tmp_path / "small")
        with pytest.raises(InspectionError):
            hashing.hash_files(fd, listing.files, limits=replace(Limits(), hash_buffer_bytes=65536))
    finally:
        os.close(fd)


@pytest.mark.parametrize("size", [0, 1, 65535, 65536, 65537, 3 * 65536 + 5, 2_000_000])
def test_single_file_read_ahead_digest(tmp_path: Path, size: int) -> None:
    content = os.urandom(size)
    (tmp_path / "one").write_bytes(content)
    fd, listing = listed(tmp_path)
    try:
        out = hashing.hash_files(
            fd, listing.files, limits=replace(Limits(), hash_threads=2, hash_buffer_bytes=65536)
        )
    finally:
        os.close(fd)
    assert out.digests[0].sha256 == hashlib.sha256(content).hexdigest()
    assert out.bytes_hashed == size

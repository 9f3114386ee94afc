# SPDX-License-Identifier: MIT
"""``BtrfsStaging.copy_signature``: the name sysupdate 257 reads, from the name Spectrum's VM sends.

Only the host's two constant names are used; a symlink, hard link, FIFO or oversized source is
never copied (the judge then refuses what is there), and an existing target is never replaced.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from airlock.backends.staging.btrfs import BtrfsStaging

ASC, GPG = "SHA256SUMS.sha256.asc", "SHA256SUMS.gpg"


@pytest.fixture
def snap(tmp_path: Path) -> Path:
    d = tmp_path / "snapshot"
    d.mkdir()
    return d


def _copy(snap: Path, max_bytes: int = 4096) -> bool:
    return BtrfsStaging(snap.parent).copy_signature(snap, ASC, GPG, max_bytes=max_bytes)


def test_the_signature_is_copied_under_the_name_sysupdate_reads(snap: Path) -> None:
    (snap / ASC).write_bytes(b"-----BEGIN PGP SIGNATURE-----\n...")
    assert _copy(snap)
    assert (snap / GPG).read_bytes() == (snap / ASC).read_bytes()
    assert (snap / GPG).stat().st_nlink == 1  # a copy: the walk's one-link rule still holds


def test_an_existing_target_is_never_replaced(snap: Path) -> None:
    (snap / ASC).write_bytes(b"a")
    (snap / GPG).write_bytes(b"b")
    assert not _copy(snap)
    assert (snap / GPG).read_bytes() == b"b"


def test_nothing_to_copy_from(snap: Path) -> None:
    assert not _copy(snap)
    assert not (snap / GPG).exists()


@pytest.mark.parametrize("kind", ["symlink", "hardlink", "fifo", "directory", "too-big"])
def test_a_hostile_source_is_not_copied(snap: Path, tmp_path: Path, kind: str) -> None:
    outside = tmp_path / "secret"
    outside.write_bytes(b"host secret")
    match kind:
        case "symlink":
            (snap / ASC).symlink_to(outside)
        case "hardlink":
            (snap / "other").write_bytes(b"x")
            os.link(snap / "other", snap / ASC)
        case "fifo":
            os.mkfifo(snap / ASC)
        case "directory":
            (snap / ASC).mkdir()
        case "too-big":
            (snap / ASC).write_bytes(b"x" * 4097)
    assert not _copy(snap)
    assert not os.path.lexists(snap / GPG)

# SPDX-License-Identifier: MIT
"""BtrfsStaging on a real loop-backed btrfs: prepare, clean (no following), snapshot, drop,
true read-only, stale leftovers, qgroup cap."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from airlock.backends.staging.btrfs import SUBVOL_INO, BtrfsStaging, StagingConfig
from airlock.errors import HostError
from airlock.fsutil import mounts_below

pytestmark = pytest.mark.btrfs


def _ro_property(path: Path) -> str:
    out = subprocess.run(
        ["btrfs", "property", "get", "-ts", str(path), "ro"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def test_prepare_refuses_a_directory_not_on_btrfs(tmp_path: Path) -> None:
    staging = BtrfsStaging(tmp_path / "staging")
    with pytest.raises(HostError) as info:
        staging.prepare()
    assert info.value.code == "host.not-btrfs"


def test_prepare_creates_then_reuses_shared(btrfs_dir: Path) -> None:
    staging = BtrfsStaging(btrfs_dir / "staging")
    staging.prepare()
    assert (btrfs_dir / "staging").stat().st_mode & 0o777 == 0o700
    assert os.lstat(staging.share).st_ino == SUBVOL_INO
    (staging.share / "Spectrum_1.efi").write_bytes(b"cached")
    staging.prepare()
    assert (staging.share / "Spectrum_1.efi").read_bytes() == b"cached"


@pytest.mark.parametrize("kind", ["dir", "symlink", "file"])
def test_prepare_refuses_shared_that_is_not_a_subvolume(btrfs_dir: Path, kind: str) -> None:
    d = btrfs_dir / "staging"
    d.mkdir(mode=0o700)
    if kind == "dir":
        (d / "shared").mkdir()
    elif kind == "symlink":
        (d / "shared").symlink_to("/etc")
    else:
        (d / "shared").write_text("")
    with pytest.raises(HostError):
        BtrfsStaging(d).prepare()


def test_clean_share_unlinks_unwanted_regular_files(btrfs_dir: Path) -> None:
    staging = BtrfsStaging(btrfs_dir / "staging")
    staging.prepare()
    s = staging.share
    (s / "Spectrum_1_0123.root").write_bytes(b"r")  # kept: cached download
    (s / "Spectrum_1.efi").write_bytes(b"k")  # kept
    (s / ".#sysupdateSpectrum_2.efi").write_bytes(b"tmp")  # dot-temporary
    (s / "SHA256SUMS").write_bytes(b"old")
    (s / "SHA256SUMS.gpg").write_bytes(b"old")
    (s / "bad name").write_bytes(b"x")
    (s / "-dash").write_bytes(b"x")
    (s / "trailing.").write_bytes(b"x")
    (s / "hard").write_bytes(b"h")
    os.link(s / "hard", s / "hard2")  # a second name: refused (threat A2)
    for mode, name in ((0o4644, "Spectrum_3.efi"), (0o2644, "Spectrum_4.efi"), (0o1644, "S_5.efi")):
        (s / name).write_bytes(b"special")  # a safe name: only the mode bit removes it
        os.chmod(s / name, mode)
    report = staging.clean_share()
    assert sorted(os.listdir(s)) == ["Spectrum_1.efi", "Spectrum_1_0123.root"]
    assert (report.kept, report.removed, report.reset) == (2, 11, False)


def test_clean_share_recreates_a_share_holding_more_than_files(btrfs_dir: Path) -> None:
    staging = BtrfsStaging(btrfs_dir / "staging")
    staging.prepare()
    s = staging.share
    canary = btrfs_dir / "canary"
    canary.write_text("keep me")
    (btrfs_dir / "outside").mkdir()
    (btrfs_dir / "outside" / "f").write_text("keep me too")
    (s / "Spectrum_1.efi").write_bytes(b"k")
    (s / "link").symlink_to(canary)
    (s / "dirlink").symlink_to(btrfs_dir / "outside")
    os.mkfifo(s / "fifo")
    (s / "dir").mkdir()
    (s / "dir" / "escape").symlink_to(btrfs_dir / "outside")
    for nested in (s / "nested", s / "nested" / "deeper", s / "dir" / "inner"):
        subprocess.run(
            ["btrfs", "subvolume", "create", str(nested)], check=True, capture_output=True
        )
    (s / "nested" / "deeper" / "x").write_bytes(b"x")
    report = staging.clean_share()
    assert report.reset
    assert os.listdir(s) == []
    st = os.lstat(s)
    assert (st.st_ino, st.st_mode & 0o777) == (SUBVOL_INO, 0o755)
    # Negative control: nothing outside the share was touched through a link.
    assert canary.read_text() == "keep me"
    assert (btrfs_dir / "outside" / "f").read_text() == "keep me too"
    listed = subprocess.run(
        ["btrfs", "subvolume", "list", str(btrfs_dir)], check=True, capture_output=True, text=True
    ).stdout
    assert [line.split()[-1] for line in listed.splitlines()] == ["staging/shared"]


def test_snapshot_drop_and_true_read_only(btrfs_dir: Path) -> None:
    staging = BtrfsStaging(btrfs_dir / "staging")
    staging.prepare()
    (staging.share / "Spectrum_2.efi").write_bytes(b"uki")
    (staging.share / ".#partial").write_bytes(b"p")
    snap = staging.snapshot()
    assert os.lstat(snap).st_ino == SUBVOL_INO
    # Negative control: the fresh snapshot is writable (so the read-only check below means it).
    (snap / "probe").write_bytes(b"")
    assert staging.drop(snap, [".#partial", "probe", "missing"]) == 2
    staging.make_read_only(snap)
    staging.sync(snap)
    assert _ro_property(snap) == "ro=true"
    with pytest.raises(OSError, match=r".") as info:
        (snap / "new").write_bytes(b"x")
    assert info.value.errno == errno.EROFS
    with pytest.raises(OSError, match=r".") as info2:
        os.unlink(snap / "Spectrum_2.efi")
    assert info2.value.errno == errno.EROFS
    assert sorted(os.listdir(snap)) == ["Spectrum_2.efi"]
    # The VM writing into shared after the snapshot changes nothing in it.
    (staging.share / "Spectrum_2.efi").write_bytes(b"evil")
    assert (snap / "Spectrum_2.efi").read_bytes() == b"uki"
    assert staging.delete_snapshot()
    assert not os.path.lexists(snap)


@pytest.mark.parametrize("name", ["../x", "a/b", ".", "..", ""])
def test_drop_refuses_paths(btrfs_dir: Path, name: str) -> None:
    staging = BtrfsStaging(btrfs_dir / "staging")
    staging.prepare()
    snap = staging.snapshot()
    try:
        with pytest.raises(HostError):
            staging.drop(snap, [name])
    finally:
        staging.delete_snapshot()


@pytest.mark.parametrize("kind", ["subvolume-ro", "file", "dir", "symlink"])
def test_remove_stale_snapshot_of_a_crashed_run(btrfs_dir: Path, kind: str) -> None:
    staging = BtrfsStaging(btrfs_dir / "staging")
    staging.prepare()
    snap = staging.snapshot_path
    if kind == "subvolume-ro":
        staging.snapshot()
        staging.make_read_only(snap)
    elif kind == "file":
        snap.write_text("x")
    elif kind == "dir":
        snap.mkdir()
        (snap / "f").write_text("x")
    else:
        snap.symlink_to(btrfs_dir)
    assert staging.remove_stale() == 1
    assert not os.path.lexists(snap)
    assert btrfs_dir.exists()


def test_remove_stale_unmounts_leftover_mounts(btrfs_dir: Path) -> None:
    staging = BtrfsStaging(btrfs_dir / "staging")
    staging.prepare()
    staging.snapshot()
    (btrfs_dir / "elsewhere").mkdir()
    subprocess.run(
        ["mount", "--bind", str(btrfs_dir / "elsewhere"), str(staging.share)], check=True
    )
    subprocess.run(
        ["mount", "--bind", "-o", "ro", str(btrfs_dir / "elsewhere"), str(staging.snapshot_path)],
        check=True,
    )
    assert mounts_below(staging.share)
    assert staging.remove_stale() == 3
    assert not mounts_below(staging.share)
    assert not mounts_below(staging.snapshot_path)
    assert not os.path.lexists(staging.snapshot_path)


def test_qgroup_limit_caps_what_the_vm_can_write(btrfs_dir: Path) -> None:
    staging = BtrfsStaging(btrfs_dir / "staging", StagingConfig(qgroup_limit_bytes=16 << 20))
    staging.prepare()
    with pytest.raises(OSError, match=r".") as info:  # noqa: PT012 - the write loop is the attack
        with open(staging.share / "fill", "wb") as fh:
            for _ in range(64):
                fh.write(os.urandom(1 << 20))
                fh.flush()
                os.fsync(fh.fileno())
    assert info.value.errno == errno.EDQUOT
    # Negative control: outside the capped subvolume the same write succeeds.
    with open(btrfs_dir / "free", "wb") as fh:
        fh.write(os.urandom(32 << 20))
        fh.flush()
        os.fsync(fh.fileno())

# SPDX-License-Identifier: MIT
"""Negative controls for the privileged kinds of the leak check: a mount, a loop device, a
network namespace and a btrfs subvolume left on purpose are seen, and a network namespace that
is not this session's is not."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support import leaks


def _run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60).stdout


def test_a_mount_is_seen(leak_scope: tuple[str, Path], tmp_path: Path) -> None:
    base, tmpdir = leak_scope
    before = leaks.snapshot(base, tmpdir)
    target = tmp_path / "m"
    target.mkdir()
    _run("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(target))
    try:
        assert leaks.new_since(before, base, tmpdir, wait_s=0) == {"mounts": [str(target)]}
    finally:
        _run("umount", str(target))


def test_an_attached_loop_device_is_seen(leak_scope: tuple[str, Path], tmp_path: Path) -> None:
    base, tmpdir = leak_scope
    before = leaks.snapshot(base, tmpdir)
    img = tmp_path / "disk.img"
    img.write_bytes(b"\0" * (1 << 20))
    dev = _run("losetup", "--find", "--show", str(img)).strip()
    try:
        leaked = leaks.new_since(before, base, tmpdir, wait_s=0)
        assert leaked == {"loops": [f"{Path(dev).name}: {img}"]}
    finally:
        _run("losetup", "-d", dev)


def test_a_network_namespace_is_seen_only_if_it_is_ours(
    leak_scope: tuple[str, Path],
) -> None:
    base, tmpdir = leak_scope
    before = leaks.snapshot(base, tmpdir)
    ours = leaks.netns_name("control")
    theirs = ours.replace(leaks.SESSION, "other")  # another session's, as far as names go
    _run("ip", "netns", "add", ours)
    _run("ip", "netns", "add", theirs)
    try:
        assert leaks.new_since(before, base, tmpdir, wait_s=0) == {"netns": [ours]}
    finally:
        _run("ip", "netns", "del", ours)
        _run("ip", "netns", "del", theirs)


def test_a_subvolume_is_seen_but_not_the_shared_cache(
    leak_scope: tuple[str, Path], btrfs_dir: Path
) -> None:
    base, tmpdir = leak_scope
    before = leaks.snapshot(base, tmpdir)
    _run("btrfs", "subvolume", "create", str(btrfs_dir / "shared"))
    _run("btrfs", "subvolume", "create", str(btrfs_dir / "snapshot"))
    try:
        leaked = leaks.new_since(before, base, tmpdir, wait_s=0)
        assert leaked == {"subvolumes": [f"{btrfs_dir}: snapshot"]}
    finally:
        _run("btrfs", "subvolume", "delete", str(btrfs_dir / "snapshot"))
        _run("btrfs", "subvolume", "delete", str(btrfs_dir / "shared"))

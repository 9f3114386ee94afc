# SPDX-License-Identifier: MIT
"""airlock.lab.initramfs: what goes into the bootable releases' initramfs, in which order."""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

import pytest

from airlock.lab import initramfs

pytestmark = [pytest.mark.boot]


def test_initramfs_holds_init_tools_libraries_and_modules_in_load_order(tmp_path: Path) -> None:
    kernel = initramfs.GuestKernel.find()
    assert kernel is not None
    out = initramfs.build(tmp_path, kernel)
    listing = subprocess.run(
        ["cpio", "-t", "--quiet"],
        input=gzip.decompress(out.read_bytes()),
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    names = set(listing.split())
    assert {"init", "bin/busybox", "sbin/veritysetup", "sbin/findfs", "modules/order"} <= names
    assert "lib64/ld-linux-x86-64.so.2" in names
    assert any(n.startswith("lib/x86_64-linux-gnu/libcryptsetup.so") for n in names)
    assert any(n.startswith("lib/x86_64-linux-gnu/libblkid.so") for n in names)
    # Modules: every one the boot needs, each after what it depends on.
    order = [n.removesuffix(".ko") for n in _member(out, "modules/order").decode().split()]
    for first, then in (
        ("virtio_pci", "virtio_blk"),
        ("virtio", "virtio_pci"),
        ("dm-mod", "dm-verity"),
        ("dm-bufio", "dm-verity"),
        ("fat", "vfat"),
    ):
        assert order.index(first) < order.index(then), (first, then)  # fmt: skip
    assert {"erofs", "efivarfs", "nls_cp437", "nls_ascii"} <= set(order)
    assert all(f"modules/{m}.ko" in names for m in order)
    assert _member(out, "init") == initramfs.system_file("initramfs-init").read_bytes()
    # Reproducible on one host: the same bytes twice.
    again = initramfs.build(tmp_path / "again", kernel)
    assert again.read_bytes() == out.read_bytes()


def _member(archive: Path, name: str) -> bytes:
    return subprocess.run(
        ["cpio", "-i", "--quiet", "--to-stdout", name],
        input=gzip.decompress(archive.read_bytes()),
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout

# SPDX-License-Identifier: MIT
"""The initramfs of the lab's bootable releases: what Spectrum's host initramfs does, with busybox.

Contents: ``/init`` (``lab/system/initramfs-init``: roothash= → PARTUUIDs → dm-verity → EROFS →
switch_root), static busybox, the host's ``veritysetup`` and ``findfs`` with their libraries
(``airlock.lab.userland``), and the kernel modules the boot needs, in dependency order as
``modprobe --show-depends`` gives them for the guest's Debian kernel (``scripts/make-guest.sh``
unpacked it and ran depmod): virtio PCI and block, device-mapper and dm-verity, EROFS, and FAT,
its code pages and efivarfs, which the booted root uses to bless its boot entry.  Built once per
lab; gzip with a zero timestamp, entries sorted, owner root: reproducible on one host.
"""

from __future__ import annotations

import gzip
import os
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from airlock import proc
from airlock.errors import HostError
from airlock.lab import userland
from airlock.layout import Layout

MODULES = ("virtio_pci", "virtio_blk", "dm_verity", "erofs", "vfat", "nls_cp437", "nls_ascii",
           "efivarfs")  # fmt: skip
PROGRAMS = (Path("/sbin/veritysetup"), Path("/sbin/findfs"))


@dataclass(frozen=True, slots=True, kw_only=True)
class GuestKernel:
    """The Debian kernel of the QEMU guest: its image and its unpacked module tree."""

    image: Path
    release: str
    tree: Path

    @classmethod
    def find(cls, guest: Path | None = None) -> GuestKernel | None:
        """The kernel ``make guest`` unpacked, or ``None`` when it is not there."""
        base = guest or Layout.load().guest
        try:
            release = (base / "kernel-version").read_text().strip()
        except OSError:
            return None
        kernel = cls(image=base / "vmlinuz", release=release, tree=base / f"kernel-{release}/tree")
        modules = kernel.tree / "lib/modules" / release / "modules.dep"
        return kernel if kernel.image.is_file() and modules.is_file() else None


def system_file(name: str) -> Path:
    """A file shipped in ``airlock/lab/system`` (the init scripts)."""
    return Path(str(resources.files("airlock.lab") / "system" / name))


def module_files(kernel: GuestKernel, names: tuple[str, ...] = MODULES) -> tuple[Path, ...]:
    """The ``.ko`` files for ``names`` and their dependencies, in load order.

    Raises:
        HostError: modprobe does not know a module.
    """
    order: dict[Path, None] = {}
    for name in names:
        out = proc.run(
            ["modprobe", "-d", kernel.tree, "-S", kernel.release, "--show-depends", name],
            timeout=60,
        ).stdout.decode()
        for line in out.splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] == "insmod":
                order[Path(words[1])] = None
    if not order:
        raise HostError("modprobe found none of the boot modules", code="host.tools")
    return tuple(order)


def build(workdir: Path, kernel: GuestKernel) -> Path:
    """Build ``workdir/initramfs.img`` (gzip'd newc cpio) and return its path.

    Raises:
        HostError: a tool failed or is missing.
    """
    userland.check()
    tree = workdir / "initramfs-tree"
    shutil.rmtree(tree, ignore_errors=True)
    for d in ("dev", "proc", "sys", "run", "newroot", "modules"):
        (tree / d).mkdir(parents=True)
    userland.busybox(tree, links=False)
    userland.install(tree, PROGRAMS)
    shutil.copyfile(system_file("initramfs-init"), tree / "init")
    (tree / "init").chmod(0o755)
    names = []
    for ko in module_files(kernel):
        shutil.copyfile(ko, tree / "modules" / ko.name)
        names.append(ko.name)
    (tree / "modules/order").write_text("".join(f"{n}\n" for n in names))
    entries = sorted(os.fspath(p.relative_to(tree)) for p in tree.rglob("*"))
    for entry in (".", *entries):
        os.utime(tree / entry, (0, 0), follow_symlinks=False)
    archive = workdir / "initramfs.cpio"
    proc.run(
        ["cpio", "-o", "-H", "newc", "--quiet", "-R", "0:0", "--reproducible", "-F", archive],
        input="".join(f"{e}\n" for e in [".", *entries]).encode(),
        cwd=tree,
        timeout=120,
    )
    out = workdir / "initramfs.img"
    with open(archive, "rb") as src, gzip.GzipFile(out, "wb", compresslevel=6, mtime=0) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
    archive.unlink()
    shutil.rmtree(tree)
    return out

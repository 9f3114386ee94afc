# SPDX-License-Identifier: MIT
"""The lab disk's EFI system partition: a FAT file system with systemd-boot and ``EFI/Linux/``.

As on Spectrum's installation image, partition 1 of the disk is the ESP, holding systemd-boot as
the removable-media loader ``EFI/BOOT/BOOTX64.EFI`` (from the runtime's ``systemd-boot-efi``;
firmware without boot entries runs it) and the UKIs in ``EFI/Linux/``, which systemd-boot finds by
itself (type #2 entries).

The running host sees its ESP as the directory ``$BOOT`` (the configured ``esp_path``), where
systemd-sysupdate writes UKIs and removes old ones.  This host's kernel has no FAT driver (nor
partition scanning), and user-space FAT writers (fusefat, pyfatfs) corrupt the file system under
sysupdate's sparse writes, so the lab cannot mount the partition itself.  It does what unmounting
``/boot`` at shutdown and mounting it at boot do, with mtools, explicitly: ``commit()`` writes the
``$BOOT`` tree onto the ESP partition as a fresh FAT32 file system (every byte sysupdate wrote,
every file it removed gone), checks it with ``fsck.fat`` and compares every file back; ``load()``
replaces the ``$BOOT`` tree by what the ESP holds after a boot (systemd-boot's counter renames,
the booted system's blessing).  No mount is involved.  See docs/adr/0100-the-lab-boots.md.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from airlock import proc
from airlock.errors import HostError
from airlock.lab import disk

SIZE_MIB = 64
SYSTEMD_BOOT = "usr/lib/systemd/boot/efi/systemd-bootx64.efi"
LOADER = "EFI/BOOT/BOOTX64.EFI"
UKI_DIR = "EFI/Linux"
VOLUME_ID = "5bd5a1a3"  # fixed FAT serial number: reproducible
_ENV = {"MTOOLS_SKIP_CHECK": "1", "MTOOLS_NO_VFAT": "0"}


def check(runtime: Path) -> None:
    """Refuse in one line when the ESP cannot be made.

    Raises:
        HostError: ``host.tools`` (dosfstools, mtools or the runtime's systemd-boot missing).
    """
    tools = (("mkfs.fat", "dosfstools"), ("fsck.fat", "dosfstools"), ("mcopy", "mtools"))
    missing = sorted({pkg for tool, pkg in tools if shutil.which(tool) is None})
    if missing:
        raise HostError(
            f"Missing tools from Debian packages: {', '.join(missing)}",
            code="host.tools",
            hint="run `make demo` as root: scripts/install-deps.sh installs them",
        )
    if not (runtime / SYSTEMD_BOOT).is_file():
        raise HostError(
            f"The runtime has no systemd-boot ({SYSTEMD_BOOT})",
            code="host.tools",
            hint="rebuild the runtime with `make runtime` (it includes systemd-boot-efi)",
        )


def populate(tree: Path, *, runtime: Path, ukis: dict[str, Path]) -> None:
    """A fresh ``$BOOT`` tree: systemd-boot and ``ukis`` (name → file) in ``EFI/Linux``."""
    check(runtime)
    (tree / "EFI/BOOT").mkdir(parents=True, exist_ok=True)
    (tree / UKI_DIR).mkdir(parents=True, exist_ok=True)
    shutil.copyfile(runtime / SYSTEMD_BOOT, tree / LOADER)
    for name, uki in ukis.items():
        shutil.copyfile(uki, tree / UKI_DIR / name)


def image(path: Path, tree: Path) -> Path:
    """A FAT32 file system image at ``path`` holding exactly ``tree``.

    Raises:
        HostError: a tool failed (for example: the tree does not fit).
    """
    path.unlink(missing_ok=True)
    with open(path, "wb") as fh:
        fh.truncate(SIZE_MIB << 20)
    proc.run(["mkfs.fat", "-F", "32", "-n", "ESP", "-i", VOLUME_ID, path], timeout=60)
    entries = sorted(tree.iterdir())
    if entries:
        proc.run(["mcopy", "-s", "-p", "-m", "-i", path, *entries, "::"], timeout=300, env=_ENV)
    return path


def partition(disk_image: Path) -> disk.Slot:
    """The ESP of ``disk_image`` (by its GPT type).

    Raises:
        HostError: the disk has no ESP.
    """
    for slot in disk.state(disk_image, measure=dict.fromkeys(range(1, 129), 0)):
        if slot.type.upper() == disk.ESP_TYPE:
            return slot
    raise HostError(f"{disk_image} has no EFI system partition", code="host.lab")


def _on_disk(disk_image: Path) -> str:
    """mtools' name for the ESP inside the disk image (``FILE@@OFFSET``)."""
    return f"{os.fspath(disk_image)}@@{partition(disk_image).start * disk.SECTOR}"


def commit(disk_image: Path, tree: Path) -> None:
    """Write ``tree`` onto the ESP of ``disk_image`` (at "shutdown"), checked and compared.

    Raises:
        HostError: it does not fit, fsck.fat finds an error or a file reads back differently.
    """
    part = partition(disk_image)
    with tempfile.TemporaryDirectory(dir=disk_image.parent) as scratch:
        fat = image(Path(scratch) / "esp.img", tree)
        if fat.stat().st_size > part.size:
            raise HostError("The ESP image is larger than the ESP partition", code="host.lab")
        proc.run(["fsck.fat", "-n", fat], timeout=120)
        with open(fat, "rb") as src, open(disk_image, "r+b") as dst:
            dst.seek(part.start * disk.SECTOR)
            shutil.copyfileobj(src, dst, 1 << 20)
            dst.flush()
            os.fsync(dst.fileno())
        back = Path(scratch) / "back"
        _extract(disk_image, back)
        if digests(back) != digests(tree):
            raise HostError("The ESP does not read back as $BOOT was written", code="host.lab")


def load(disk_image: Path, tree: Path) -> None:
    """Replace ``tree`` by the contents of the ESP of ``disk_image`` (at "boot")."""
    staged = tree.with_name(tree.name + ".loading")
    shutil.rmtree(staged, ignore_errors=True)
    _extract(disk_image, staged)
    for entry in list(tree.iterdir()) if tree.exists() else []:
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    tree.mkdir(parents=True, exist_ok=True)
    for entry in sorted(staged.iterdir()):
        entry.rename(tree / entry.name)
    staged.rmdir()


def _extract(disk_image: Path, out: Path) -> None:
    out.mkdir(parents=True)
    proc.run(["mcopy", "-s", "-p", "-m", "-n", "-i", _on_disk(disk_image), "::*", out],
             timeout=300, env=_ENV)  # fmt: skip


def digests(tree: Path) -> dict[str, str]:
    """Relative path → SHA-256 of every file below ``tree``."""
    return {
        p.relative_to(tree).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(tree.rglob("*"))
        if p.is_file()
    }


def ukis(disk_image: Path) -> tuple[str, ...]:
    """Names in ``EFI/Linux`` of the ESP of ``disk_image``, sorted."""
    out = proc.run(["mdir", "-b", "-i", _on_disk(disk_image), f"::{UKI_DIR}"],
                   timeout=60, env=_ENV).stdout.decode()  # fmt: skip
    return tuple(sorted(line.rsplit("/", 1)[-1] for line in out.splitlines() if line.strip()))


def remove(disk_image: Path, name: str) -> None:
    """Delete ``EFI/Linux/NAME`` from the ESP of ``disk_image``."""
    proc.run(["mdel", "-i", _on_disk(disk_image), f"::{UKI_DIR}/{name}"], timeout=60, env=_ENV)

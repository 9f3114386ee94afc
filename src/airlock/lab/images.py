# SPDX-License-Identifier: MIT
"""Real, small, bootable OS images for the lab: an EROFS root, its dm-verity hash tree and a UKI.

The root is a tiny system of its own: static busybox, the host's ``dmsetup`` and ``findfs`` with
their libraries (``airlock.lab.userland``), ``/etc/os-release`` carrying ``IMAGE_VERSION`` and
``/sbin/init`` (``lab/system/root-init``), which reports what booted on the serial console and
blesses the boot.  The UKI is made by ``ukify`` from the runtime around the QEMU guest's Debian
kernel and the lab's initramfs (``airlock.lab.initramfs``), with Spectrum's command line
``ro intel_iommu=on roothash=H`` plus what the lab needs to watch and bound a boot:
``console=ttyS0 quiet panic=-1``.

Everything is deterministic for a given version on one host (fixed UUIDs, salts and timestamps),
so the demo's tables are reproducible.  ``veritysetup format`` works on plain files, so no
device-mapper is needed on the host.  Without ukify, an EFI stub, the guest kernel or an initramfs
the kernel image is a clearly labelled stand-in file (the update flow still runs; nothing boots).
A *broken* release has a root that is not a file system at all (with a valid verity tree over it):
a release that passes every check of the update and then cannot boot.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from airlock import proc
from airlock.errors import HostError
from airlock.lab import userland
from airlock.lab.initramfs import GuestKernel, system_file

_ROOT_HASH = re.compile(rb"Root hash:\s+([0-9a-f]{64})")
_ZERO_SALT = "0" * 64
STANDIN_MAGIC = b"AIRLOCK-LAB-STAND-IN-KERNEL-IMAGE (not a bootable UKI)\n"
ROOT_PROGRAMS = (Path("/sbin/dmsetup"), Path("/sbin/findfs"))
LAB_CMDLINE = "console=ttyS0 quiet panic=-1"


@dataclass(frozen=True, slots=True, kw_only=True)
class Images:
    """One version's artefacts."""

    version: str
    root: Path
    verity: Path
    roothash: str
    kernel: Path
    kernel_is_uki: bool
    bootable: bool = False
    broken: bool = False


def _filler(version: str, size: int) -> bytes:
    """Deterministic, incompressible-looking bytes."""
    out = bytearray()
    seed = hashlib.sha256(f"airlock-lab-{version}".encode()).digest()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(seed + counter.to_bytes(8, "little")).digest()
        counter += 1
    return bytes(out[:size])


def os_release(version: str) -> str:
    """The release's ``/etc/os-release`` (also embedded in its UKI)."""
    return (
        'NAME="Spectrum (airlock lab)"\nID=spectrum\nIMAGE_ID=spectrum\n'
        f"IMAGE_VERSION={version}\n"
    )


def _tree(workdir: Path, version: str) -> Path:
    tree = workdir / f"tree-{version}"
    if tree.exists():
        shutil.rmtree(tree)
    for d in ("etc", "sbin", "proc", "sys", "dev", "boot", "run", "tmp"):
        (tree / d).mkdir(parents=True)
    (tree / "etc/os-release").write_text(os_release(version))
    userland.install(tree, ROOT_PROGRAMS)
    userland.busybox(tree, links=True)
    shutil.copyfile(system_file("root-init"), tree / "sbin/init")
    (tree / "sbin/init").chmod(0o755)
    return tree


def build_root(workdir: Path, version: str, *, broken: bool = False) -> Path:
    """An EROFS image (lz4hc) of the release's root; ``broken``: 1 MiB that is no file system.

    Raises:
        HostError: mkfs.erofs failed or a program for the root is missing.
    """
    image = workdir / f"root-{version}.img"
    if broken:
        image.write_bytes(_filler(f"broken-root-{version}", 1 << 20))
        return image
    userland.check()
    tree = _tree(workdir, version)
    proc.run(
        ["mkfs.erofs", "-T0", "-zlz4hc", "-U", "5bd5a1a3-0000-4000-8000-000000000001", "--quiet",
         image, tree],
        timeout=120,
    )  # fmt: skip
    shutil.rmtree(tree)
    return image


def build_verity(root: Path, out: Path) -> str:
    """``veritysetup format`` over a file; returns the 64-hex root hash.

    Raises:
        HostError: veritysetup failed or printed no root hash.
    """
    out.unlink(missing_ok=True)
    result = proc.run(
        ["veritysetup", "format", "--data-block-size=4096", "--hash-block-size=4096",
         f"--salt={_ZERO_SALT}", "--uuid=5bd5a1a3-0000-4000-8000-000000000002", root, out],
        timeout=120,
    )  # fmt: skip
    match = _ROOT_HASH.search(result.stdout)
    if match is None:
        raise HostError("veritysetup printed no root hash", code="host.verity")
    return match.group(1).decode()


def build_kernel(
    workdir: Path, version: str, roothash: str, *, runtime: Path | None, initrd: Path | None = None
) -> tuple[Path, bool]:
    """A UKI for ``version`` (real with ukify and a stub, else a labelled stand-in).

    Returns:
        The file and whether it is a real UKI.
    """
    out = workdir / f"kernel-{version}.efi"
    cmdline = f"ro intel_iommu=on roothash={roothash}"
    kernel = GuestKernel.find()
    if runtime is not None and kernel is not None and _can_build_uki(runtime):
        if initrd is not None:
            cmdline = f"{cmdline} {LAB_CMDLINE}"
        if _build_uki(runtime, kernel, workdir, out, version, cmdline, initrd):
            return out, True
    out.write_bytes(
        STANDIN_MAGIC
        + f"version={version}\ncmdline={cmdline}\n".encode()
        + _filler(f"kernel-{version}", 256 << 10)
    )
    return out, False


def _can_build_uki(runtime: Path) -> bool:
    stub = runtime / "usr/lib/systemd/boot/efi/linuxx64.efi.stub"
    return stub.exists() and (runtime / "usr/bin/ukify").exists()


# Runs ukify from the runtime root with a private /tmp bound over the root's own (the shared
# runtime root is never written).  Data reaches the fixed script only as positional arguments.
_UKIFY = (
    'mount --bind "$1" "$2/tmp" && exec chroot "$2" ukify build --linux /tmp/vmlinuz '
    '--cmdline "$3" --os-release @/tmp/os-release --uname "$4" --output /tmp/uki.efi '
    "${5:+--initrd /tmp/initrd.img}"
)


def _build_uki(
    runtime: Path,
    kernel: GuestKernel,
    workdir: Path,
    out: Path,
    version: str,
    cmdline: str,
    initrd: Path | None,
) -> bool:
    stage = workdir / f"uki-{version}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    try:
        shutil.copyfile(kernel.image, stage / "vmlinuz")
        if initrd is not None:
            shutil.copyfile(initrd, stage / "initrd.img")
        (stage / "os-release").write_text(os_release(version))
        proc.run(
            ["unshare", "--mount", "--propagation", "private", "--fork", "/bin/sh", "-c", _UKIFY,
             "sh", stage, runtime, cmdline, kernel.release, "initrd" if initrd else ""],
            timeout=120,
        )  # fmt: skip
        shutil.copyfile(stage / "uki.efi", out)
        return True
    except HostError:
        return False
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def build(
    workdir: Path,
    version: str,
    *,
    runtime: Path | None = None,
    initrd: Path | None = None,
    broken: bool = False,
) -> Images:
    """Build root, verity and kernel for ``version`` under ``workdir``.

    With ``initrd`` (``airlock.lab.initramfs.build``) and ukify the release boots.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    root = build_root(workdir, version, broken=broken)
    verity = workdir / f"verity-{version}.img"
    roothash = build_verity(root, verity)
    kernel, is_uki = build_kernel(workdir, version, roothash, runtime=runtime, initrd=initrd)
    return Images(
        version=version,
        root=root,
        verity=verity,
        roothash=roothash,
        kernel=kernel,
        kernel_is_uki=is_uki,
        bootable=is_uki and initrd is not None,
        broken=broken,
    )

# SPDX-License-Identifier: MIT
"""Real, small OS images for the lab: an EROFS root, its dm-verity hash tree and a kernel image.

Everything is deterministic for a given version (fixed UUIDs, salts and timestamps, payload from a
seeded hash), so the demo's tables are reproducible.  ``veritysetup format`` works on plain files,
so no device-mapper is needed.  The kernel image is a real UKI when the systemd runtime provides
``ukify`` and an EFI stub; otherwise it is a clearly labelled stand-in file.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from airlock import proc
from airlock.errors import HostError
from airlock.layout import Layout

_ROOT_HASH = re.compile(rb"Root hash:\s+([0-9a-f]{64})")
_ZERO_SALT = "0" * 64
STANDIN_MAGIC = b"AIRLOCK-LAB-STAND-IN-KERNEL-IMAGE (not a bootable UKI)\n"


@dataclass(frozen=True, slots=True, kw_only=True)
class Images:
    """One version's artefacts."""

    version: str
    root: Path
    verity: Path
    roothash: str
    kernel: Path
    kernel_is_uki: bool


def _filler(version: str, size: int) -> bytes:
    """Deterministic, incompressible-looking bytes (so the images have a realistic size)."""
    out = bytearray()
    seed = hashlib.sha256(f"airlock-lab-{version}".encode()).digest()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(seed + counter.to_bytes(8, "little")).digest()
        counter += 1
    return bytes(out[:size])


def build_root(workdir: Path, version: str, *, payload_bytes: int = 2 << 20) -> Path:
    """An EROFS image whose ``/etc/os-release`` carries ``IMAGE_VERSION``.

    Raises:
        HostError: mkfs.erofs failed.
    """
    tree = workdir / f"tree-{version}"
    if tree.exists():
        shutil.rmtree(tree)
    (tree / "etc").mkdir(parents=True)
    (tree / "usr/share/lab").mkdir(parents=True)
    (tree / "etc/os-release").write_text(
        f'NAME="Spectrum (airlock lab)"\nID=spectrum\nIMAGE_ID=spectrum\nIMAGE_VERSION={version}\n'
    )
    (tree / "usr/share/lab/payload.bin").write_bytes(_filler(version, payload_bytes))
    for p in tree.rglob("*"):
        os.utime(p, (0, 0), follow_symlinks=False)
    image = workdir / f"root-{version}.img"
    proc.run(
        ["mkfs.erofs", "-T0", "-U", "5bd5a1a3-0000-4000-8000-000000000001", "--quiet",
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
    workdir: Path, version: str, roothash: str, *, runtime: Path | None
) -> tuple[Path, bool]:
    """A UKI for ``version`` (real with ukify and a stub, else a labelled stand-in).

    Returns:
        The file and whether it is a real UKI.
    """
    out = workdir / f"kernel-{version}.efi"
    cmdline = f"ro intel_iommu=on roothash={roothash}"
    if runtime is not None and _can_build_uki(runtime):
        if _build_uki(runtime, workdir, out, version, cmdline):
            return out, True
    out.write_bytes(
        STANDIN_MAGIC
        + f"version={version}\ncmdline={cmdline}\n".encode()
        + _filler(f"kernel-{version}", 256 << 10)
    )
    return out, False


def _can_build_uki(runtime: Path) -> bool:
    stub = runtime / "usr/lib/systemd/boot/efi/linuxx64.efi.stub"
    return stub.exists() and (runtime / "usr/bin/ukify").exists() and _guest_kernel() is not None


def _guest_kernel() -> Path | None:
    # The QEMU guest's Debian kernel (scripts/make-guest.sh) doubles as the UKI's kernel.
    kernel = Layout.load().guest / "vmlinuz"
    return kernel if kernel.is_file() else None


# Runs ukify from the runtime root with a private /tmp bound over the root's own (the shared
# runtime root is never written).  Data reaches the fixed script only as positional arguments.
_UKIFY = (
    'mount --bind "$1" "$2/tmp" && exec chroot "$2" ukify build --linux /tmp/vmlinuz '
    '--cmdline "$3" --os-release @/tmp/os-release --uname "$4" --output /tmp/uki.efi'
)


def _build_uki(runtime: Path, workdir: Path, out: Path, version: str, cmdline: str) -> bool:
    kernel = _guest_kernel()
    if kernel is None:
        return False
    stage = workdir / f"uki-{version}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    try:
        shutil.copyfile(kernel, stage / "vmlinuz")
        (stage / "os-release").write_text(
            f'NAME="Spectrum (airlock lab)"\nID=spectrum\nIMAGE_VERSION={version}\n'
        )
        proc.run(
            ["unshare", "--mount", "--propagation", "private", "--fork", "/bin/sh", "-c", _UKIFY,
             "sh", stage, runtime, cmdline, version],
            timeout=120,
        )  # fmt: skip
        shutil.copyfile(stage / "uki.efi", out)
        return True
    except HostError:
        return False
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def build(workdir: Path, version: str, *, runtime: Path | None = None) -> Images:
    """Build root, verity and kernel for ``version`` under ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    root = build_root(workdir, version)
    verity = workdir / f"verity-{version}.img"
    roothash = build_verity(root, verity)
    kernel, is_uki = build_kernel(workdir, version, roothash, runtime=runtime)
    return Images(
        version=version,
        root=root,
        verity=verity,
        roothash=roothash,
        kernel=kernel,
        kernel_is_uki=is_uki,
    )

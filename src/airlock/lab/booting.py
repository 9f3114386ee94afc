# SPDX-License-Identifier: MIT
"""Real reboots of the lab's disk, and the two ways to break one on a copy.

``reboot()`` shuts the lab's host down — ``$BOOT`` is written onto the disk's ESP partition
(``airlock.lab.esp.commit``) — boots the lab's own disk image in QEMU (``airlock.lab.machine``)
and reads the ESP back into ``$BOOT`` (``esp.load``: systemd-boot's counter renames and the booted
system's blessing).  When the final attempt booted a version, the lab's host now runs that version
(``Lab.boot`` writes its ``IMAGE_VERSION``, which ``ProtectVersion=%A`` and airlock read).

``boot_copy()`` boots a copy of the disk changed by one of the negative controls and deletes the
copy: one byte of a root partition flipped (``flip_root_byte``: byte 0 of the partition, which
EROFS never reads for itself but dm-verity hashes with the rest of block 0), or a version's UKI
removed from the ESP (``remove_uki``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from airlock import proc
from airlock.errors import HostError
from airlock.lab import disk, esp, machine

if TYPE_CHECKING:
    from airlock.lab.world import Lab

ATTEMPT_BUDGET_S = 120.0  # a TCG boot takes about 20 s on an idle 2-core machine
Mutation = Callable[[Path], str]


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "-", label).strip("-")[:60] or "boot"


def reboot(
    lab: Lab,
    label: str,
    *,
    attempts: int = 1,
    listener: machine.Listener | None = None,
) -> machine.Boot:
    """Boot the lab's disk; ``attempts`` > 1 lets failed attempts reboot into the next one.

    Raises:
        HostError: QEMU or OVMF missing, or ``$BOOT`` could not be unmounted or mounted again.
    """
    esp.commit(lab.disk, lab.esp)
    result = machine.boot(
        lab.disk,
        workdir=lab.w / "boots" / f"{len(lab.boots) + 1:02d}-{_slug(label)}",
        timeout_s=ATTEMPT_BUDGET_S * attempts,
        reboots=attempts > 1,
        listener=listener,
    )
    esp.load(lab.disk, lab.esp)
    lab.boots.append((label, result))
    final = result.final
    if final is not None and final.ok and final.version is not None:
        lab.boot(final.version)
    return result


def boot_copy(
    lab: Lab, label: str, mutate: Mutation, *, listener: machine.Listener | None = None
) -> tuple[str, machine.Boot]:
    """Boot a copy of the disk changed by ``mutate``; returns what was changed and the boot."""
    work = lab.w / "boots" / f"{len(lab.boots) + 1:02d}-{_slug(label)}"
    work.mkdir(parents=True, exist_ok=True)
    copy = work / "disk.img"
    esp.commit(lab.disk, lab.esp)
    proc.run(["cp", "--sparse=always", lab.disk, copy], timeout=300)
    try:
        what = mutate(copy)
        result = machine.boot(copy, workdir=work, timeout_s=ATTEMPT_BUDGET_S, listener=listener)
    finally:
        copy.unlink(missing_ok=True)
    lab.boots.append((label, result))
    return what, result


def flip_root_byte(version: str) -> Mutation:
    """Flip byte 0 of the root partition labelled ``Spectrum_<version>``."""

    def mutate(image: Path) -> str:
        slot = _slot(image, f"Spectrum_{version}")
        offset = slot.start * disk.SECTOR
        with open(image, "r+b") as fh:
            fh.seek(offset)
            byte = fh.read(1)[0]
            fh.seek(offset)
            fh.write(bytes([byte ^ 0x01]))
        return (
            f"flipped byte 0 of partition {slot.number} ({slot.label}): "
            f"{byte:#04x} -> {byte ^ 1:#04x}"
        )

    return mutate


def remove_uki(version: str) -> Mutation:
    """Delete ``Spectrum_<version>*.efi`` (any boot counter) from the ESP of the image."""

    def mutate(image: Path) -> str:
        pattern = re.compile(rf"Spectrum_{re.escape(version)}(\+\d+(-\d+)?)?\.efi")
        names = [n for n in esp.ukis(image) if pattern.fullmatch(n)]
        if not names:
            raise HostError(f"no UKI of {version} on the ESP", code="host.lab")
        for name in names:
            esp.remove(image, name)
        return f"removed {', '.join(f'{esp.UKI_DIR}/{n}' for n in names)} from the ESP"

    return mutate


def _slot(image: Path, label: str) -> disk.Slot:
    for slot in disk.state(image, measure=dict.fromkeys(range(1, 129), 0)):
        if slot.label == label:
            return slot
    raise HostError(f"no partition labelled {label}", code="host.lab")

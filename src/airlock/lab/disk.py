# SPDX-License-Identifier: MIT
"""A GPT disk image with Spectrum's A/B layout (design.md#gpt-layout), and what is on it.

Partition order follows Spectrum: the EFI system partition (given as a ready FAT image, see
``airlock.lab.esp``; without one the disk has only the slots and ``$BOOT`` is a plain directory
elsewhere), then verity A, root A, verity B, root B.  Slot A holds the first version, labelled and
with PARTUUIDs derived from the root hash as Spectrum's build does; slot B is ``_empty`` with
Spectrum's fixed PARTUUIDs.  systemd-sysupdate can target the image file itself, so no loop device
or partition scanning is needed for the slots; ``state()`` reads the table with ``sfdisk --json``
and hashes the partitions' bytes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from airlock import proc

ROOT_TYPE = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"
VERITY_TYPE = "2C7357ED-EBD2-46D9-AEC1-23D437EC2BF5"
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
ESP_UUID = "5BD5A1A3-0000-4000-8000-0000000000E5"  # Spectrum's is random; fixed: reproducible
EMPTY_VERITY_UUID = "18F2CCFF-92F1-4BB1-A80E-24F76ECDA90C"
EMPTY_ROOT_UUID = "EC0C5FF3-F6B1-4ADF-82B4-61336C4D135F"
SECTOR = 512
MIB = 1 << 20


def format_uuid(hex32: str) -> str:
    """32 hex digits → 8-4-4-4-12, upper case (as sfdisk prints it)."""
    h = hex32.upper()
    return f"{h[0:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Slot:
    """One partition as the GPT says, plus a hash of its bytes."""

    number: int
    label: str
    partuuid: str
    type: str
    attrs: str
    start: int
    size: int
    sha256_prefix: str  # of the first ``measured`` bytes
    measured: int


def create(
    path: Path,
    *,
    roothash: str,
    version: str,
    root_image: Path,
    verity_image: Path,
    root_mib: int = 8,
    verity_mib: int = 1,
    esp_image: Path | None = None,
) -> None:
    """Create the disk image with slot A holding ``version`` (and the ESP first, if given)."""
    esp_mib = -(-esp_image.stat().st_size // MIB) if esp_image is not None else 0
    size = (2 + esp_mib + 2 * (root_mib + verity_mib) + 1) * MIB
    with open(path, "wb") as fh:
        fh.truncate(size)
    esp = [f"size={esp_mib}MiB, type={ESP_TYPE}, uuid={ESP_UUID}"] if esp_image else []
    layout = "\n".join(
        [
            "label: gpt",
            *esp,
            f"size={verity_mib}MiB, type={VERITY_TYPE}, uuid={format_uuid(roothash[32:64])}, "
            f'name="Spectrum_{version}.verity"',
            f"size={root_mib}MiB, type={ROOT_TYPE}, uuid={format_uuid(roothash[0:32])}, "
            f'name="Spectrum_{version}"',
            f'size={verity_mib}MiB, type={VERITY_TYPE}, uuid={EMPTY_VERITY_UUID}, name="_empty"',
            f'size={root_mib}MiB, type={ROOT_TYPE}, uuid={EMPTY_ROOT_UUID}, name="_empty"',
            "",
        ]
    )
    proc.run(["sfdisk", "-q", "--no-reread", "--no-tell-kernel", path],
             input=layout.encode(), timeout=60)  # fmt: skip
    parts = _table(path)
    if esp_image is not None:
        _write_at(path, int(parts.pop(0)["start"]) * SECTOR, esp_image.read_bytes())
    _write_at(path, int(parts[0]["start"]) * SECTOR, verity_image.read_bytes())
    _write_at(path, int(parts[1]["start"]) * SECTOR, root_image.read_bytes())


def _write_at(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(data)
        fh.flush()


def _table(path: Path) -> list[dict[str, str | int]]:
    out = proc.run(["sfdisk", "--json", path], timeout=60).stdout
    parts: list[dict[str, str | int]] = json.loads(out)["partitiontable"]["partitions"]
    return parts


def state(path: Path, *, measure: dict[int, int] | None = None) -> tuple[Slot, ...]:
    """The partition table and a SHA-256 of each slot's first ``measure[n]`` bytes (default all)."""
    slots = []
    with open(path, "rb") as fh:
        for n, part in enumerate(_table(path), start=1):
            start, size = int(str(part["start"])), int(str(part["size"]))
            length = (measure or {}).get(n, size * SECTOR)
            fh.seek(start * SECTOR)
            digest = hashlib.sha256(fh.read(length)).hexdigest()
            slots.append(
                Slot(
                    number=n,
                    label=str(part.get("name", "")),
                    partuuid=str(part.get("uuid", "")),
                    type=str(part.get("type", "")),
                    attrs=str(part.get("attrs", "")),
                    start=start,
                    size=size * SECTOR,
                    sha256_prefix=digest,
                    measured=length,
                )
            )
    return tuple(slots)

# SPDX-License-Identifier: MIT
"""airlock.lab.images and airlock.lab.disk: real EROFS + verity images and a Spectrum GPT layout."""

from __future__ import annotations

import hashlib
from pathlib import Path

from airlock.lab import disk, images


def test_images_are_reproducible_and_carry_the_version(tmp_path: Path) -> None:
    a = images.build(tmp_path / "a", "2.0")
    b = images.build(tmp_path / "b", "2.0")
    c = images.build(tmp_path / "c", "3.0")
    assert a.roothash == b.roothash and len(a.roothash) == 64
    assert a.roothash != c.roothash
    assert a.root.read_bytes() == b.root.read_bytes()
    assert b"IMAGE_VERSION=2.0" in a.root.read_bytes()
    assert a.verity.read_bytes()[:6] == b"verity"


def test_disk_has_spectrums_layout_with_slot_a_written(tmp_path: Path) -> None:
    img = images.build(tmp_path, "1.0")
    path = tmp_path / "disk.img"
    disk.create(
        path, roothash=img.roothash, version="1.0", root_image=img.root, verity_image=img.verity
    )
    slots = disk.state(path, measure={1: img.verity.stat().st_size, 2: img.root.stat().st_size})
    assert [s.label for s in slots] == ["Spectrum_1.0.verity", "Spectrum_1.0", "_empty", "_empty"]
    assert slots[0].partuuid == disk.format_uuid(img.roothash[32:64])
    assert slots[1].partuuid == disk.format_uuid(img.roothash[0:32])
    assert slots[2].partuuid == disk.EMPTY_VERITY_UUID
    assert slots[3].partuuid == disk.EMPTY_ROOT_UUID
    assert [s.type for s in slots] == [disk.VERITY_TYPE, disk.ROOT_TYPE] * 2
    assert slots[1].sha256_prefix == hashlib.sha256(img.root.read_bytes()).hexdigest()
    assert slots[0].sha256_prefix == hashlib.sha256(img.verity.read_bytes()).hexdigest()
    # Negative control: the B slot does not hold the image.
    assert disk.state(path, measure={4: img.root.stat().st_size})[3].sha256_prefix != (
        slots[1].sha256_prefix
    )

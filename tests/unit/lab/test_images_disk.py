# SPDX-License-Identifier: MIT
"""airlock.lab.images and airlock.lab.disk: real EROFS + verity images and a Spectrum GPT layout."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from airlock.errors import HostError
from airlock.lab import booting, disk, esp, images


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


def _fake_runtime(tmp_path: Path) -> Path:
    rt = tmp_path / "runtime"
    loader = rt / esp.SYSTEMD_BOOT
    loader.parent.mkdir(parents=True)
    loader.write_bytes(b"MZ systemd-boot stand-in for a FAT test\n")
    return rt


def _esp_disk(tmp_path: Path, tree: Path) -> tuple[Path, images.Images]:
    img = images.build(tmp_path / "img", "1.0")
    path = tmp_path / "disk.img"
    disk.create(
        path,
        roothash=img.roothash,
        version="1.0",
        root_image=img.root,
        verity_image=img.verity,
        esp_image=esp.image(tmp_path / "esp.img", tree),
    )
    return path, img


def test_the_esp_is_partition_one_and_the_slots_follow(tmp_path: Path) -> None:
    tree = tmp_path / "boot"
    uki = tmp_path / "uki.efi"
    uki.write_bytes(b"MZ" + bytes(5000) + b"uki")
    esp.populate(tree, runtime=_fake_runtime(tmp_path), ukis={"Spectrum_1.0.efi": uki})
    path, img = _esp_disk(tmp_path, tree)
    slots = disk.state(path, measure=dict.fromkeys(range(1, 6), 0))
    assert [s.type for s in slots] == [disk.ESP_TYPE] + [disk.VERITY_TYPE, disk.ROOT_TYPE] * 2
    assert [s.label for s in slots[1:]] == [
        "Spectrum_1.0.verity",
        "Spectrum_1.0",
        "_empty",
        "_empty",
    ]
    assert slots[2].partuuid == disk.format_uuid(img.roothash[0:32])
    assert esp.partition(path).number == 1
    assert esp.ukis(path) == ("Spectrum_1.0.efi",)


def test_esp_commit_writes_exactly_the_tree_and_load_reads_renames_back(tmp_path: Path) -> None:
    tree = tmp_path / "boot"
    old, new = tmp_path / "old.efi", tmp_path / "new.efi"
    old.write_bytes(b"MZ old" + bytes(70000))
    new.write_bytes(b"MZ new" + bytes(4096) + b"\x01" * 3_000_000)  # holes, as sysupdate writes
    esp.populate(tree, runtime=_fake_runtime(tmp_path), ukis={"Spectrum_1.0.efi": old})
    path, _ = _esp_disk(tmp_path, tree)
    # What sysupdate does in $BOOT: vacuum the old UKI, install the new one with a counter.
    (tree / esp.UKI_DIR / "Spectrum_1.0.efi").unlink()
    (tree / esp.UKI_DIR / "Spectrum_2.0+3-0.efi").write_bytes(new.read_bytes())
    esp.commit(path, tree)
    assert esp.ukis(path) == ("Spectrum_2.0+3-0.efi",)
    # What systemd-boot and the booted system do on the ESP: count down, then bless.
    esp.remove(path, "Spectrum_2.0+3-0.efi")
    staged = tmp_path / "staged"
    (staged / esp.UKI_DIR).mkdir(parents=True)
    (staged / esp.UKI_DIR / "Spectrum_2.0.efi").write_bytes(new.read_bytes())
    (staged / "EFI/BOOT").mkdir(parents=True)
    (staged / esp.LOADER).write_bytes((tree / esp.LOADER).read_bytes())
    esp.commit(path, staged)
    esp.load(path, tree)
    assert esp.digests(tree) == esp.digests(staged)
    assert sorted(p.name for p in (tree / esp.UKI_DIR).iterdir()) == ["Spectrum_2.0.efi"]


def test_esp_commit_refuses_what_does_not_read_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = tmp_path / "boot"
    esp.populate(tree, runtime=_fake_runtime(tmp_path), ukis={})
    path, _ = _esp_disk(tmp_path, tree)
    real = esp._extract

    def damaged(disk_image: Path, out: Path) -> None:
        real(disk_image, out)
        loader = out / esp.LOADER
        loader.write_bytes(loader.read_bytes() + b"!")

    monkeypatch.setattr(esp, "_extract", damaged)
    with pytest.raises(HostError, match="does not read back"):
        esp.commit(path, tree)


def test_esp_commit_refuses_a_tree_larger_than_the_partition(tmp_path: Path) -> None:
    tree = tmp_path / "boot"
    esp.populate(tree, runtime=_fake_runtime(tmp_path), ukis={})
    path, _ = _esp_disk(tmp_path, tree)
    (tree / esp.UKI_DIR / "huge.efi").write_bytes(bytes(80 << 20))
    with pytest.raises(HostError):
        esp.commit(path, tree)


def test_negative_control_mutations_change_exactly_what_they_say(tmp_path: Path) -> None:
    tree = tmp_path / "boot"
    uki = tmp_path / "uki.efi"
    uki.write_bytes(b"MZ uki")
    esp.populate(
        tree,
        runtime=_fake_runtime(tmp_path),
        ukis={"Spectrum_1.0.efi": uki, "Spectrum_2.0+2-0.efi": uki},
    )
    path, img = _esp_disk(tmp_path, tree)
    before = path.read_bytes()
    what = booting.flip_root_byte("1.0")(path)
    after = path.read_bytes()
    root = disk.state(path, measure=dict.fromkeys(range(1, 6), 0))[2]
    offset = root.start * disk.SECTOR
    assert after[offset] == before[offset] ^ 1
    assert after[:offset] == before[:offset] and after[offset + 1 :] == before[offset + 1 :]
    assert "partition 3 (Spectrum_1.0)" in what
    what = booting.remove_uki("2.0")(path)
    assert esp.ukis(path) == ("Spectrum_1.0.efi",)
    assert "EFI/Linux/Spectrum_2.0+2-0.efi" in what
    with pytest.raises(HostError):
        booting.remove_uki("9.0")(path)

# SPDX-License-Identifier: MIT
"""airlock.lab.machine: the QEMU command line and what a console transcript says."""

from __future__ import annotations

from pathlib import Path

from airlock.lab import machine

CLEAR = b"\x1b[2J\x1b[01;01H\x1b[=3h\x1b[2J\x1b[01;01H"
HASH_A = "d852f98955088fb78c5cba2f1b00fd9ff1bf3448729e90985a19fe73d0985a16"
HASH_B = "fa271a776d67279213608893448df0ca1af20a6dad12a8c9682a461317a7c361"


def _attempt(roothash: str, *body: str) -> bytes:
    lines = [
        'BdsDxe: loading Boot0001 "UEFI Misc Device" from PciRoot(0x0)/Pci(0x1,0x0)',
        'BdsDxe: starting Boot0001 "UEFI Misc Device" from PciRoot(0x0)/Pci(0x1,0x0)',
        f"airlock-initramfs: roothash {roothash}",
        *body,
    ]
    return CLEAR + b"".join(line.encode() + b"\r\n" for line in lines)


GOOD = (
    "airlock-initramfs: root mounted read-only through dm-verity; switching to it",
    "airlock-root: IMAGE_VERSION=3.0",
    f"airlock-root: roothash {HASH_A} (dm-verity table, equal to roothash= on the kernel command"
    " line)",
    "airlock-root: root /dev/mapper/root-verity erofs ro,nosuid,nodev on data vda3 hash vda2",
    "airlock-root: verity status V",
    "airlock-root: blessed: /EFI/Linux/Spectrum_3.0+1-1.efi -> /EFI/Linux/Spectrum_3.0.efi",
    "airlock-root: boot ok, powering off",
    "[    6.339822] reboot: Power down",
)
CORRUPT = (
    "[    4.905049] device-mapper: verity: 254:3: data block 0 is corrupted",
    "mount: mounting /dev/mapper/root-verity on /newroot failed: Input/output error",
    "airlock-initramfs: boot failed: cannot mount the root file system",
    "[    4.933375] reboot: Restarting system",
)


def test_a_good_boot_reports_version_hash_verity_slot_and_blessing() -> None:
    (attempt,) = machine.parse(_attempt(HASH_A, *GOOD))
    assert attempt.ok and attempt.stage is machine.Stage.DONE
    assert attempt.version == "3.0"
    assert attempt.roothash == HASH_A
    assert attempt.verity == "V"
    assert attempt.data_device == "vda3"
    assert attempt.blessed == "/EFI/Linux/Spectrum_3.0+1-1.efi -> /EFI/Linux/Spectrum_3.0.efi"
    assert attempt.failure is None and attempt.verity_errors == ()
    assert all("\x1b" not in line and "\r" not in line for line in attempt.lines)


def test_reboots_split_attempts_and_failures_are_named() -> None:
    first, second, third = machine.parse(
        _attempt(HASH_B, *CORRUPT) + _attempt(HASH_B, *CORRUPT) + _attempt(HASH_A, *GOOD)
    )
    for bad in (first, second):
        assert not bad.ok and bad.stage is machine.Stage.INITRAMFS
        assert bad.version is None and bad.roothash is None
        assert bad.failure == "cannot mount the root file system"
        assert bad.verity_errors == (CORRUPT[0],)
        assert any(HASH_B in line for line in bad.lines)
    assert (third.number, third.version, third.ok) == (3, "3.0", True)


def test_a_root_that_says_nothing_is_not_a_good_boot() -> None:
    # The root's init never ran: no version, no "boot ok", even though the kernel got far.
    (attempt,) = machine.parse(
        _attempt(HASH_A, "airlock-initramfs: root mounted read-only through dm-verity")
    )
    assert attempt.stage is machine.Stage.VERITY and not attempt.ok
    assert attempt.version is None


def test_console_bytes_are_escaped() -> None:
    (attempt,) = machine.parse(_attempt(HASH_A, "airlock-root: IMAGE_VERSION=\x07x\u202e"))
    assert all(line.isascii() and line.isprintable() for line in attempt.lines)


def test_qemu_has_no_network_device_and_stops_at_a_reboot_unless_asked(tmp_path: Path) -> None:
    disk, vars_file = tmp_path / "d,isk.img", tmp_path / "vars.fd"
    once = machine.argv(disk, vars_file, reboots=False)
    assert ["-nic", "none"] == once[once.index("-nic") : once.index("-nic") + 2]
    assert "-nodefaults" in once
    assert not any("netdev" in arg or "hostfwd" in arg for arg in once)
    assert "-no-reboot" in once
    assert "-no-reboot" not in machine.argv(disk, vars_file, reboots=True)
    assert ["-accel", "tcg"] == once[once.index("-accel") : once.index("-accel") + 2]
    # The disk itself, its comma doubled as QEMU's option syntax wants.
    assert f"if=virtio,format=raw,file={tmp_path}/d,,isk.img" in once
    assert f"if=pflash,format=raw,unit=0,readonly=on,file={machine.OVMF_CODE}" in once

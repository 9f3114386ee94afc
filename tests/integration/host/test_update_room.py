# SPDX-License-Identifier: MIT
"""A payload larger than its target slot is refused before hashing (ADR 0160), through
``airlock update`` on the test world: a GPT image with 8 MiB root slots, ``$BOOT`` on the host's
filesystem, the real sandbox fetcher, btrfs freeze, judge and systemd-sysupdate.

The room comes from the host itself: ``backends.apply.room`` reads the partition table of the
disk the transfers name and ``statvfs`` of ``$BOOT``.  A root image one byte larger than the slot
is refused with ``reject.room`` and nothing changes; exactly the slot's size is installed (the
negative control: the bound is not one byte too tight), and so is the world's normal release.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from airlock.backends.apply import room
from airlock.formats import definitions
from tests.support import releases

from . import planting
from .world import ROOT_MIB, VERITY_MIB, World, build, events

pytestmark = [pytest.mark.btrfs, pytest.mark.sandbox, pytest.mark.sysupdate]

SLOT = ROOT_MIB << 20


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, btrfs_module: Path) -> Iterator[World]:
    w = build(tmp_path_factory.mktemp("world") / "w", btrfs_module)
    w.write_config(planting.WAIT_COMMAND)
    w.save_pristine()
    try:
        yield w
    finally:
        w.key.close()


def _release(w: World, directory: Path, root_bytes: int | None) -> Path:
    """The world's release 2, its root image ``root_bytes`` long (unchanged if ``None``)."""
    files = dict(w.files)
    if root_bytes is not None:
        (root_name,) = (n for n in files if n.endswith(".root"))
        files[root_name] = releases.payload(root_bytes, seed="room")
    releases.make_release(directory, "2", files, w.key)
    for index in directory.glob("*.blocks"):
        index.unlink()
    return directory


def _copy(release: Path) -> Callable[[Path], None]:
    def plant(share: Path) -> None:
        for p in release.iterdir():
            shutil.copyfile(p, share / p.name)

    return plant


def test_the_room_of_each_target_is_read_from_the_disk_and_boot(world: World) -> None:
    w = world
    transfers = definitions.load_dir(
        w.root / "etc/sysupdate.d", specifiers=definitions.Specifiers()
    )
    measured = {r.transfer: r.bytes for r in room.measure(transfers, esp=w.esp)}
    vfs = os.statvfs(w.esp / "EFI/Linux")
    old = (w.esp / "EFI/Linux/Spectrum_1.efi").stat().st_size
    assert measured == {
        "50-verity": VERITY_MIB << 20,
        "60-root": SLOT,
        "70-kernel": vfs.f_bfree * vfs.f_frsize + old,
    }


def test_root_image_one_byte_larger_than_its_slot_is_refused(world: World, tmp_path: Path) -> None:
    w = world
    w.restore()
    before = w.host_state()
    run = planting.update(w, _copy(_release(w, tmp_path / "r", SLOT + 1)))
    assert run.returncode == 21, run.stdout + run.stderr
    assert run.final["code"] == "reject.room", run.final
    assert f"{SLOT + 1} bytes is more than its target can take, {SLOT} bytes" in str(
        run.final["message"]
    )
    assert "apply" not in run.steps()
    assert w.host_state() == before


def test_negative_control_root_image_exactly_its_slot_is_installed(
    world: World, tmp_path: Path
) -> None:
    w = world
    w.restore()
    release = _release(w, tmp_path / "r", SLOT)
    run = planting.update(w, _copy(release))
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.final["outcome"] == "updated"
    (root,) = release.glob("*.root")
    (slot,) = (s for s in w.slots() if s.label == "Spectrum_2")
    assert slot.size == SLOT
    assert slot.sha256_prefix == hashlib.sha256(root.read_bytes()).hexdigest()
    w.restore()


def test_negative_control_the_normal_release_is_installed(world: World) -> None:
    w = world
    w.restore()
    run = planting.update(w, _copy(w.release))
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.final["outcome"] == "updated"
    w.restore()


def test_a_host_transfer_not_reading_the_snapshot_stops_update_before_it_starts(
    world: World,
) -> None:
    # ADR 0161: a host transfer installing from elsewhere would install bytes nobody judged.
    w = world
    w.restore()
    kernel = w.root / "etc/sysupdate.d/70-kernel.transfer"
    good = kernel.read_text()
    kernel.write_text(good.replace("Path=file:///run/updater", "Path=file:///var/tmp/elsewhere"))
    before = w.host_state()
    try:
        done = w.update()
    finally:
        kernel.write_text(good)
    assert done.returncode == 3, done.stdout + done.stderr
    (final,) = [e for e in events(done.stdout) if e.get("event") == "error"]
    assert final["code"] == "config.source"
    assert not [e for e in events(done.stdout) if e.get("event") == "step-started"]
    assert w.host_state() == before

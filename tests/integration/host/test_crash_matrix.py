# SPDX-License-Identifier: MIT
"""The crash matrix: SIGKILL the real ``airlock update --json`` at 18 points, then rerun.

Points are read from outside only (``tests/support/killer.py``): right after a step's
``step-started`` (or ``step-finished``) event, while a given child runs (by its program: the
sandbox's payload, ``btrfs subvolume snapshot``, the read-only flag, ``systemd-sysupdate list``,
the signature verifier, ``btrfs subvolume delete``), or at an apply progress event between 0 and
100 % while systemd-sysupdate is writing the disk image.  After each kill:

* the command really died by SIGKILL;
* within seconds nothing of the killed run is alive (its whole process tree at the moment of the
  kill, and every process its run record names) and nothing holds the staging directory open;
* a rerun converges: v2 in slot B exactly once (slot A still v1), one v2 UKI next to the v1 one,
  2 pending (the floor stays at the booted 1), no snapshot, no mount, no run record, the lock
  free.

One world serves every point: between points the disk image, the ESP and the state are restored
from pristine copies (the staging file system and its ``shared`` cache stay, as on a real host).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from airlock import lock, pids, state
from airlock.fsutil import mounts_below
from tests.support import killer
from tests.support.killer import Point

from .test_update_e2e import assert_v2_installed
from .world import World, build, events

pytestmark = [pytest.mark.btrfs, pytest.mark.sandbox, pytest.mark.sysupdate, pytest.mark.slow]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory, btrfs_module: Path) -> Iterator[World]:
    w = build(tmp_path_factory.mktemp("world") / "w", btrfs_module)
    shutil.copyfile(w.image, w.root / "disk.pristine")
    shutil.copytree(w.esp, w.root / "esp.pristine")
    try:
        yield w
    finally:
        w.key.close()


@pytest.fixture
def world(pristine: World) -> World:
    """The module's world, back at v1 with no state (the staging file system is kept)."""
    w = pristine
    shutil.copyfile(w.root / "disk.pristine", w.image)
    shutil.rmtree(w.esp)
    shutil.copytree(w.root / "esp.pristine", w.esp)
    shutil.rmtree(w.state_file.parent, ignore_errors=True)
    w.write_config(w.copy_in())
    return w


def _copied(w: World) -> bool:
    return (w.staging / "shared" / ".copied").exists()


POINTS = [
    Point(name="lock", step="lock"),
    Point(name="prepare", step="prepare"),
    Point(name="clean", step="clean"),
    Point(name="fetch", step="fetch"),
    Point(name="fetch-sandbox-running", step="fetch", ready=lambda: True),  # see the test
    Point(name="freeze", step="freeze"),
    Point(name="freeze-snapshot", step="freeze", child=("btrfs",), nth=1),
    Point(name="freeze-read-only", step="freeze", child=("btrfs",), nth=2),
    Point(name="inspect", step="inspect"),
    Point(name="inspect-sysupdate-list", step="inspect", child=("systemd-sysupdate",)),
    Point(name="inspect-signature", step="inspect", child=("sqv", "gpgv")),
    Point(name="apply", step="apply"),
    Point(name="apply-writing", step="apply", progress=True),
    Point(name="apply-finished", step="apply", event="step-finished"),
    Point(name="record", step="record"),
    Point(name="record-finished", step="record", event="step-finished"),
    Point(name="cleanup", step="cleanup"),
    Point(name="cleanup-delete", step="cleanup", child=("btrfs",)),
]


def _update(w: World) -> list[str]:
    return [
        sys.executable,
        "-m",
        "airlock",
        "update",
        str(w.staging),
        "--json",
        "--config",
        str(w.config),
    ]


def _recorded(w: World) -> frozenset[int]:
    """The pids the run record of the killed run names (read before the rerun removes it)."""
    try:
        data = json.loads((w.staging / "run.json").read_text())
    except FileNotFoundError:
        return frozenset()
    found = set()
    for entry in data.get("children", []) + data.get("teardowns", []):
        for key in ("guard", "init"):
            who = pids.ProcessId.from_json(entry.get(key))
            if who is not None and pids.alive(who):
                found.add(who.pid)
    return frozenset(found)


@pytest.mark.parametrize("point", POINTS, ids=[p.name for p in POINTS])
def test_sigkill_then_rerun_converges(world: World, point: Point) -> None:
    w = world
    if point.name == "fetch-sandbox-running":
        # The payload has written into the share and is still running when airlock dies.
        w.write_config(w.copy_in("&& touch /host/updates/.copied && exec sleep 600"))
        point = dataclasses.replace(point, ready=lambda: _copied(w))
    killed = killer.kill_at(_update(w), point)
    assert killed.returncode == -signal.SIGKILL, killed.hit
    if point.progress:
        assert "systemd-sysupdate" in killed.programs, killed.programs  # killed mid-write...
    if point.child:
        assert killed.programs & set(point.child), (killed.hit, killed.programs)
    # Nothing of the killed run survives it, and nothing holds the staging area.
    assert killer.gone(killed.tree) == set(), killed.hit
    assert killer.gone(_recorded(w)) == set()
    assert killer.released(w.staging) == set()
    assert mounts_below(w.staging) == []
    if point.progress:  # ...and it did not go on to finish: the UKI (the last transfer) is absent
        assert "Spectrum_2.efi" not in w.esp_listing()

    w.write_config(w.copy_in())
    rerun = w.update()
    assert rerun.returncode == 0, (killed.hit, rerun.stderr[-2000:])
    assert events(rerun.stdout)[-1]["outcome"] in ("updated", "up-to-date")
    assert_v2_installed(w)
    assert sorted(w.esp_listing()) == ["Spectrum_1.efi", "Spectrum_2.efi"]  # no second copy
    efi = w.files["Spectrum_2.efi"]
    assert w.esp_listing()["Spectrum_2.efi"] == hashlib.sha256(efi).hexdigest()
    saved = state.load(w.state_file)
    # 2 is installed (also when the run was killed between apply and record) but has not booted:
    # the floor stays at the running 1 until it has.
    assert (saved.pending, saved.floor, saved.booted) == ("2", "1", "1")
    assert saved.last_check is not None
    assert not os.path.lexists(w.staging / "snapshot")
    assert not os.path.lexists(w.staging / "run.json")
    assert not os.path.lexists(w.staging / "tmp")  # the killed run's temporary files too
    assert mounts_below(w.staging) == []
    assert mounts_below(w.root) == []
    with lock.hold(w.lock):
        pass

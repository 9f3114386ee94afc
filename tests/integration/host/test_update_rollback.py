# SPDX-License-Identifier: MIT
"""Anti-rollback and anti-replay through the whole ``airlock update`` pipeline.

No fake inspector or judge: each release is planted in the share while the real sandbox fetcher
runs (``planting``), then the real freeze, judge (gpgv/sqv over real signatures), systemd-sysupdate
and state file take over.  Releases are signed with throwaway keys at chosen times (gpg
``--faked-system-time``), so the order of signatures is known.

To isolate the guards from the installed-version check, a test may put the disk image and ``$BOOT``
back to version 1 behind the host's back (``World.restore(state=False)``: a restored backup, a
boot-assessment fallback, rewritten GPT labels).  systemd-sysupdate then reports version 1, and only
the state file still knows better.  ``make mutation`` removes each guard in a throwaway copy of the
source and checks that these tests fail (``tests/mutation/``).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from pathlib import Path

import pytest

from airlock import state
from airlock.errors import ExitStatus
from tests.support.keys import KeySet
from tests.support.staging import Staging

from . import planting
from .world import World

pytestmark = [pytest.mark.btrfs, pytest.mark.sandbox, pytest.mark.sysupdate]

MARCH, APRIL, FEBRUARY = "20250301T000000", "20250401T000000", "20250201T000000"


def _utc(faked: str) -> datetime.datetime:
    return datetime.datetime.strptime(faked, "%Y%m%dT%H%M%S").replace(tzinfo=datetime.UTC)


class Publisher:
    """Signed releases of Spectrum's three files, made in the share by the "VM"."""

    def __init__(self, root: Path, keys: KeySet) -> None:
        self.root = root
        self.keys = keys
        self.count = 0

    def release(self, version: str, signed: str) -> Callable[[Path], None]:
        """A planter for a complete release of ``version`` signed at ``signed`` (gpg time)."""

        def plant(share: Path) -> None:
            self.count += 1
            (where := self.root / str(self.count)).mkdir()
            s = Staging(where, self.keys, directory=share)
            try:
                s.release(version, faked_time=signed)
            finally:
                s.close()

        return plant


@pytest.fixture
def publisher(tmp_path: Path, keys: KeySet) -> Publisher:
    return Publisher(tmp_path, keys)


def _updated(w: World, plant: Callable[[Path], None]) -> state.State:
    run = planting.update(w, plant)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.final["outcome"] == "updated"
    return state.load(w.state_file)


def _settled(w: World, plant: Callable[[Path], None]) -> state.State:
    """A run with nothing new to install: it records what booted."""
    run = planting.update(w, plant)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.final["outcome"] == "up-to-date"
    return state.load(w.state_file)


def _refused(w: World, plant: Callable[[Path], None], code: str) -> str:
    before = w.host_state()
    run = planting.update(w, plant)
    assert run.returncode == ExitStatus.REJECTED, run.stdout + run.stderr
    assert run.final["code"] == code, run.final
    assert "apply" not in run.steps()
    assert w.host_state() == before  # disk, $BOOT and the state file byte-identical
    return str(run.final["message"])


def test_the_stored_floor_refuses_a_rollback_the_disk_no_longer_shows(
    restored_world: World, publisher: Publisher
) -> None:
    w = restored_world
    recorded = _updated(w, publisher.release("2", MARCH))
    assert (recorded.floor, recorded.pending) == ("1", "2")  # 2 has not booted yet
    w.boot("2")  # a good boot: its entry in $BOOT carries no boot counter
    recorded = _settled(w, publisher.release("2", MARCH))
    assert (recorded.floor, recorded.pending, recorded.booted) == ("2", None, "2")
    w.restore(state=False)  # sysupdate now reports version 1 installed
    # 1.5 is newer than what the disk shows and signed after everything accepted so far: only the
    # floor in the state file stands between it and the disk.
    message = _refused(w, publisher.release("1.5", APRIL), "reject.rollback")
    assert "older than the floor '2'" in message
    assert "a rollback is never installed" in message


def test_negative_control_without_a_floor_the_same_release_installs(
    restored_world: World, publisher: Publisher
) -> None:
    w = restored_world
    after = _updated(w, publisher.release("1.5", APRIL))
    assert (after.floor, after.pending) == ("1", "1.5")


def test_the_newest_signature_time_refuses_an_older_manifest(
    restored_world: World, publisher: Publisher
) -> None:
    w = restored_world
    recorded = _updated(w, publisher.release("2", MARCH))
    assert recorded.newest_signature == _utc(MARCH)
    # Version 3 is newer than the floor and than anything installed, but its manifest was signed
    # before the last one accepted: a replay (or a freeze on an old mirror).
    message = _refused(w, publisher.release("3", FEBRUARY), "reject.replay")
    assert "before 2025-03-01" in message
    # Negative control: the same version signed later goes through.
    again = _updated(w, publisher.release("3", APRIL))
    assert (again.pending, again.newest_signature) == ("3", _utc(APRIL))


def test_the_floor_only_rises_when_sysupdate_reports_an_older_version(
    restored_world: World, publisher: Publisher
) -> None:
    w = restored_world
    assert _updated(w, publisher.release("3", MARCH)).pending == "3"
    w.boot("3")
    assert _settled(w, publisher.release("3", MARCH)).floor == "3"
    w.restore(state=False)  # sysupdate reports 1 again
    # Reinstalling 3 records both 3 (applied) and 1 (what sysupdate reports): the floor stays 3.
    again = _updated(w, publisher.release("3", APRIL))
    assert again.floor == "3"
    assert again.newest_signature == _utc(APRIL)
    w.restore(state=False)
    _refused(w, publisher.release("2", APRIL), "reject.rollback")


def test_a_refused_run_leaves_the_floor_and_signature_time_alone(
    restored_world: World, publisher: Publisher
) -> None:
    w = restored_world
    first = _updated(w, publisher.release("2", MARCH))
    _refused(w, publisher.release("3", FEBRUARY), "reject.replay")
    _refused(w, publisher.release("1", APRIL), "reject.rollback")
    assert state.load(w.state_file) == first

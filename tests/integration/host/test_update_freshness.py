# SPDX-License-Identifier: MIT
"""Honest freshness and the administrator's way out, through the whole ``airlock update`` pipeline.

Issue #15 item 2 (docs/adr/0155).  A VM holding no key replays the last signed manifest; under
``require_fresh = false`` (the default) the judge accepts it, so the host must not call itself
fresh nor move ``last_check``.  Once a manifest with ``BEST-BEFORE`` was accepted, one without is
refused (the ratchet), until root resets it with ``airlock state reset``, which refuses while an
update holds the lock.  Everything is real (``planting``): the lock, btrfs staging, the sandbox,
the judge over real signatures, systemd-sysupdate and the state file.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from airlock import lock, state
from airlock.errors import ExitStatus
from tests.support.keys import KeySet
from tests.support.staging import Staging

from . import planting
from .world import World

pytestmark = [pytest.mark.btrfs, pytest.mark.sandbox, pytest.mark.sysupdate]

MARCH, APRIL = "20250301T000000", "20250401T000000"


def _release(
    where: Path, keys: KeySet, version: str, signed: str, best_before: datetime.date | None = None
) -> Callable[[Path], None]:
    def plant(share: Path) -> None:
        (where / version).mkdir(parents=True)
        s = Staging(where / version, keys, directory=share)
        try:
            s.release(version, faked_time=signed, best_before=best_before)
        finally:
            s.close()

    return plant


def _run(w: World, plant: Callable[[Path], None]) -> planting.Run:
    run = planting.update(w, plant)
    assert run.returncode == 0, run.stdout + run.stderr
    return run


def _status(w: World) -> dict[str, object]:
    done = w.airlock("status", "--json")
    assert done.returncode == 0, done.stderr
    body: dict[str, object] = json.loads(done.stdout)
    return body


def test_a_replayed_unmarked_manifest_is_not_fresh_and_keeps_the_last_check(
    restored_world: World, keys: KeySet, tmp_path: Path
) -> None:
    w = restored_world
    first = _run(w, _release(tmp_path / "a", keys, "2", MARCH))
    assert (first.final["outcome"], first.final["fresh"]) == ("updated", True)
    checked = state.load(w.state_file).last_check
    assert checked is not None
    # The VM replays the same release: same signer, same signing time, no BEST-BEFORE.
    replay = _run(w, _release(tmp_path / "b", keys, "2", MARCH))
    assert (replay.final["outcome"], replay.final["fresh"]) == ("up-to-date", False)
    saved = state.load(w.state_file)
    assert saved.last_check == checked  # before the fix: the replay's time
    assert saved.last_seen is not None and saved.last_seen > checked
    body = _status(w)
    assert body["freshness"] == "no-newer"
    assert body["last_check"]["time"] == checked.isoformat()  # type: ignore[index]
    text = w.airlock("status").stdout
    assert "no newer manifest since" in text
    assert "(fresh" not in text


def test_negative_control_a_newer_signature_moves_the_last_check(
    restored_world: World, keys: KeySet, tmp_path: Path
) -> None:
    w = restored_world
    _run(w, _release(tmp_path / "a", keys, "2", MARCH))
    checked = state.load(w.state_file).last_check
    again = _run(w, _release(tmp_path / "b", keys, "2", APRIL))
    assert (again.final["outcome"], again.final["fresh"]) == ("up-to-date", True)
    saved = state.load(w.state_file)
    assert checked is not None and saved.last_check is not None and saved.last_check > checked
    assert _status(w)["freshness"] == "unknown"  # newer, but nobody vouches for how long


def test_the_ratchet_refuses_an_unmarked_manifest_until_root_resets_it(
    restored_world: World, keys: KeySet, tmp_path: Path
) -> None:
    w = restored_world
    ahead = datetime.datetime.now(datetime.UTC).date() + datetime.timedelta(days=7)
    marked = _run(w, _release(tmp_path / "a", keys, "2", MARCH, best_before=ahead))
    assert marked.final["fresh"] is True
    assert state.load(w.state_file).fresh_required
    assert _status(w)["freshness"] == "fresh-until"
    # A later release without the marker (or an old unmarked one replayed) is refused now.
    before = w.host_state()
    run = planting.update(w, _release(tmp_path / "b", keys, "3", APRIL))
    assert run.returncode == ExitStatus.REJECTED, run.stdout + run.stderr
    assert run.final["code"] == "reject.expired"
    assert "freshness ratchet" in str(run.final["message"])
    assert w.host_state() == before
    # The administrator's way out: without --yes nothing is written ...
    dry = w.airlock("state", "reset", "--field", "fresh_required")
    assert dry.returncode == ExitStatus.USAGE
    assert "would reset fresh_required: True -> False" in dry.stdout
    assert w.host_state() == before
    # ... with it, exactly that field is reset, and the release installs.
    kept = state.load(w.state_file)
    done = w.airlock("state", "reset", "--field", "fresh_required", "--yes", "--json")
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert (body["reset"], body["state"]["fresh_required"]) == (["fresh_required"], False)
    assert body["previous"]["fresh_required"] is True
    assert state.load(w.state_file) == dataclasses.replace(kept, fresh_required=False)
    assert _run(w, _release(tmp_path / "c", keys, "3", APRIL)).final["outcome"] == "updated"


def test_state_reset_refuses_while_an_update_holds_the_lock_and_succeeds_after(
    restored_world: World, keys: KeySet, tmp_path: Path
) -> None:
    w = restored_world
    _run(w, _release(tmp_path / "a", keys, "2", MARCH))
    during: list[tuple[int, str, int | None]] = []

    def plant_and_reset(share: Path) -> None:
        # The update is running (its fetcher waits for us): it holds the lock right now.
        busy = w.airlock("state", "reset", "--field", "floor", "--yes")
        during.append((busy.returncode, busy.stderr, lock.holder_pid(w.lock)))
        _release(tmp_path / "b", keys, "2", MARCH)(share)

    before = w.state_file.read_bytes()
    _run(w, plant_and_reset)
    [(code, stderr, holder)] = during
    assert code == ExitStatus.BUSY, stderr
    assert holder is not None and f"pid {holder}" in stderr
    assert "An update is already running" in stderr
    assert w.state_file.read_bytes() != before  # the update's own record, not the reset
    # Once the update has finished, the same command goes through.
    done = w.airlock("state", "reset", "--field", "pending", "--yes")
    assert done.returncode == 0, done.stderr
    assert "reset pending: 2 -> none" in done.stdout
    assert state.load(w.state_file).pending is None

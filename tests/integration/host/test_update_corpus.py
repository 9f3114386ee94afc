# SPDX-License-Identifier: MIT
"""The hostile corpus through the whole ``airlock update`` pipeline, one case per run.

One world for the module (btrfs on a loop file, Spectrum's A/B GPT image at version 1, ``$BOOT``,
a state file): each case is planted in the share while the real sandbox fetcher runs
(``planting``), then the real freeze, judge and systemd-sysupdate listing run.  Every case must end
with exit status 21 and its own ``reject.*`` code (or, for a snapshot without a manifest, 20
``fetch.nothing``: ``refusals.COULD_NOT_CHECK``) in the final JSON event, nothing opened outside
the share (FIFO canary), no snapshot or mount left, and the disk image, every byte under ``$BOOT``
and the state file exactly as before.  ``tests/support/refusals.py`` maps each case's policy onto
host config and state, and lists the few cases that cannot go through a pipeline.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from airlock import state
from airlock.fsutil import mounts_below
from tests.support.corpus import Case, FifoCanary, Staging, all_cases
from tests.support.keys import KeySet
from tests.support.refusals import (
    BASE_STATE,
    host_policy,
    host_state,
    pipeline_cases,
    pipeline_verdict,
)

from . import planting
from .world import World, build

pytestmark = [pytest.mark.btrfs, pytest.mark.sandbox, pytest.mark.sysupdate]

CASES = pipeline_cases()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, btrfs_module: Path) -> Iterator[World]:
    w = build(tmp_path_factory.mktemp("world") / "w", btrfs_module)
    state.save(w.state_file, BASE_STATE)
    w.save_pristine()
    try:
        yield w
    finally:
        w.key.close()


def _prepare(w: World, case: Case, keys: KeySet) -> None:
    """Pristine disk and $BOOT, the case's state file and host config."""
    w.restore()
    state.save(w.state_file, host_state(case))
    w.write_config(
        planting.WAIT_COMMAND,
        keyring=keys.keyring,
        policy=host_policy(case, keys),
        limits=dict(case.limits),
    )


def _planter(case: Case, s: Staging) -> Callable[[Path], None]:
    """Build ``case`` into the share (``s`` writes there)."""

    def plant(share: Path) -> None:
        try:
            case.build(s)
        finally:
            s.close()

    return plant


def _assert_nothing_left(w: World) -> None:
    assert not os.path.lexists(w.staging / "snapshot")
    assert mounts_below(w.staging) == []
    assert mounts_below(w.root) == []


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_refused_by_airlock_update(case: Case, world: World, keys: KeySet, tmp_path: Path) -> None:
    w = world
    _prepare(w, case, keys)
    before = w.host_state()
    s = Staging(tmp_path, keys, directory=w.staging / "shared")
    with FifoCanary(s.canary) as canary:
        run = planting.update(w, _planter(case, s))
        breached = canary.stop()
    assert run.planted, run.stderr
    code, status = pipeline_verdict(case)
    assert run.returncode == status, run.stdout + run.stderr
    assert run.final["event"] == "error"
    assert run.final["code"] == code, run.final
    assert "inspect" in run.steps() or "freeze" in run.steps()
    assert "apply" not in run.steps()
    assert not breached, "a file outside the share was opened"
    assert run.stdout.isascii() and run.stderr.isascii()
    # one escaped line on stderr, the same as the final JSON event; never a traceback
    lines = run.stderr.splitlines()
    assert [ln for ln in lines if not ln.startswith("hint: ")] == [f"error: {run.final['message']}"]
    assert run.final["exit_status"] == status
    assert w.host_state() == before
    _assert_nothing_left(w)


def test_negative_control_an_accepted_release_changes_disk_boot_and_state(
    world: World, keys: KeySet, tmp_path: Path
) -> None:
    # The same harness with the corpus' good release: it is installed, so every fingerprint the
    # refusals compare changes — a refusal that wrote anything would be seen.
    w = world
    (good,) = (c for c in all_cases() if c.name == "good_release")
    _prepare(w, good, keys)
    before = w.host_state()
    s = Staging(tmp_path, keys, directory=w.staging / "shared")
    run = planting.update(w, _planter(good, s))
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.final["outcome"] == "updated"
    after = w.host_state()
    for key in ("disk", "boot", "state"):
        assert after[key] != before[key], key
    _assert_nothing_left(w)
    w.restore()


def test_negative_control_the_canary_sees_a_follow_of_a_planted_symlink(
    world: World, keys: KeySet, tmp_path: Path
) -> None:
    # The symlink a refused run left in the share points at the canary: following it, as a
    # careless judge would, is noticed.
    w = world
    (case,) = (c for c in CASES if c.name == "symlink_payload_to_host_file")
    _prepare(w, case, keys)
    s = Staging(tmp_path, keys, directory=w.staging / "shared")
    with FifoCanary(s.canary) as canary:
        run = planting.update(w, _planter(case, s))
        assert run.final["code"] == "reject.type"
        assert not canary.breached.is_set()
        (link,) = (p for p in (w.staging / "shared").iterdir() if p.is_symlink())
        os.close(os.open(link, os.O_RDONLY | os.O_NONBLOCK))
        assert canary.breached.wait(5)

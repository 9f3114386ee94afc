# SPDX-License-Identifier: MIT
"""Honest freshness (issue #15 item 2, docs/adr/0155): the ratchet and the last check.

A VM holding no key can replay the last signed manifest forever.  Under ``require_fresh = false``
(the default, since Spectrum's releases carry no marker) the judge must accept it, so two things
keep the host honest: once a manifest with ``BEST-BEFORE`` was accepted, one without is refused
(the ratchet, kept in the state file), and ``last_check`` moves only on a *fresh* manifest (an
unexpired ``BEST-BEFORE`` or a counted signature newer than any recorded).  Real gpg signatures
through the real judge; the run's record step is the real one (``run_update`` with fakes for the
other backends).
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from airlock import fsutil, state
from airlock.backends import openpgp
from airlock.errors import FreshnessError
from airlock.formats import definitions
from airlock.limits import Limits
from airlock.pipeline.update import run_update
from airlock.trusted import verify
from airlock.trusted.policy import Baseline, Policy, PolicyConfig
from airlock.trusted.release import VerifiedRelease
from tests.support.keys import KeySet
from tests.support.staging import Staging
from tests.unit.pipeline.fakes import NOW, SIGNED, make_world, release, signer


def _judge(
    root: Path,
    keys: KeySet,
    transfers: tuple[definitions.Transfer, ...],
    policy: Policy,
    **kw: object,
) -> VerifiedRelease:
    root.mkdir()
    s = Staging(root, keys)
    s.release(**kw)  # type: ignore[arg-type]  # release()'s keyword arguments
    s.close()
    fd = os.open(s.dir, fsutil.DIR_FLAGS)
    try:
        return verify.judge(
            fd, transfers=transfers, keyring=keys.keyring, policy=policy, limits=Limits(),
            verifier=openpgp.verifier("sqv"), now=dt.datetime.now(dt.UTC),
        )  # fmt: skip
    finally:
        os.close(fd)


# --- the ratchet in the judge ---------------------------------------------------------------------


def test_with_the_ratchet_a_manifest_without_best_before_is_refused(
    tmp_path: Path, keys: KeySet, transfers: tuple[definitions.Transfer, ...]
) -> None:
    with pytest.raises(FreshnessError) as info:
        _judge(tmp_path / "a", keys, transfers, Policy(fresh_ratchet=True))
    assert info.value.code == "reject.expired"
    assert "freshness ratchet" in info.value.message
    assert "airlock state reset --field fresh_required" in (info.value.hint or "")


def test_negative_control_without_the_ratchet_the_same_manifest_passes(
    tmp_path: Path, keys: KeySet, transfers: tuple[definitions.Transfer, ...]
) -> None:
    assert _judge(tmp_path / "a", keys, transfers, Policy()).best_before is None


def test_with_the_ratchet_a_manifest_with_best_before_passes(
    tmp_path: Path, keys: KeySet, transfers: tuple[definitions.Transfer, ...]
) -> None:
    later = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=7)
    verdict = _judge(tmp_path / "a", keys, transfers, Policy(fresh_ratchet=True), best_before=later)
    assert verdict.best_before == later


def test_the_policy_takes_the_ratchet_from_the_baseline() -> None:
    assert Policy.of(PolicyConfig(), Baseline(fresh_required=True)).fresh_ratchet
    assert not Policy.of(PolicyConfig(), Baseline()).fresh_ratchet


# --- the run: the ratchet is recorded and handed to the next judgement ----------------------------


def test_a_run_that_accepts_best_before_sets_the_ratchet_for_the_next_run(tmp_path: Path) -> None:
    (tmp_path / "1").mkdir()
    marked = release(best_before=NOW.date() + dt.timedelta(days=7))
    world = make_world(tmp_path / "1", verdict=marked)
    run_update(world.ctx)
    assert state.load(world.ctx.state_file).fresh_required
    # The next run judges with the ratchet on (the real inspect step builds the baseline).
    world.inspector.verdict = release(version="2", newer=False)
    run_update(world.ctx)
    assert [b.fresh_required for b in world.inspector.baselines] == [False, True]


# --- last_check: only a fresh manifest moves it ---------------------------------------------------


def _verified(
    *, signed: dt.datetime = SIGNED, best_before: dt.date | None = None
) -> state.Verified:
    return state.Verified(
        installed="2", version="2", applied=False, signed=(signed,), manifest_sha256="a" * 64,
        best_before=best_before,
    )  # fmt: skip


BEFORE = state.State(last_check=NOW - dt.timedelta(days=3), newest_signature=SIGNED, installed="2")


def test_a_replayed_unmarked_manifest_does_not_move_the_last_check() -> None:
    # The attack: the same manifest (same signature time), no marker, a day later.  Before the
    # fix the run recorded now as the last check, and status called the host fresh.
    after = state.advance(BEFORE, _verified(), NOW)
    assert after.last_check == BEFORE.last_check
    assert after.last_seen == NOW
    assert not state.fresh(BEFORE, _verified(), NOW)


def test_a_strictly_newer_signature_moves_the_last_check() -> None:
    after = state.advance(BEFORE, _verified(signed=SIGNED + dt.timedelta(seconds=1)), NOW)
    assert (after.last_check, after.last_seen) == (NOW, NOW)


def test_an_unexpired_best_before_moves_the_last_check_even_when_replayed() -> None:
    event = _verified(best_before=NOW.date() + dt.timedelta(days=1))
    after = state.advance(BEFORE, event, NOW)
    assert after.last_check == NOW
    assert after.best_before == event.best_before
    assert after.fresh_required


def test_a_best_before_that_has_passed_is_not_fresh() -> None:
    # The judge refuses it first; the state does not trust that alone.
    assert not state.fresh(BEFORE, _verified(best_before=NOW.date()), NOW)


def test_a_signature_ahead_of_the_clock_is_capped_before_the_comparison() -> None:
    at_now = state.State(newest_signature=NOW)
    assert not state.fresh(at_now, _verified(signed=NOW + dt.timedelta(minutes=2)), NOW)


def test_the_first_run_ever_is_fresh() -> None:
    assert state.advance(state.State(), _verified(), NOW).last_check == NOW


def test_the_ratchet_is_never_cleared_by_a_run() -> None:
    on = state.State(fresh_required=True)
    assert state.advance(on, _verified(signed=NOW), NOW).fresh_required


def test_the_real_record_step_keeps_the_last_check_on_a_replay(tmp_path: Path) -> None:
    world = make_world(tmp_path, verdict=release(version="1", newer=False, signers=(signer(),)))
    state.save(world.ctx.state_file, BEFORE)
    run_update(world.ctx)
    saved = state.load(world.ctx.state_file)
    assert saved.last_check == BEFORE.last_check
    assert saved.last_seen == world.ctx.now

# SPDX-License-Identifier: MIT
"""The replay floor cannot be raised by a key that does not count, nor by a clock in the future.

Issue #15, item 1: the run records the creation time of the newest signature it accepted as the
next ``not_before``.  If that time came from a key the policy does not count, or from a signature
dated in the future, every genuine release signed before it would be refused as ``reject.replay``
from then on — updates frozen by one signature.  Real gpg signatures (``--faked-system-time``)
through the real sqv and gpgv; the run's record step is the real one (``run_update`` with fakes
for the other backends and the real judge's verdict).
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from airlock import fsutil, state
from airlock.backends import openpgp
from airlock.errors import FreshnessError, SignatureError
from airlock.formats import definitions
from airlock.limits import Limits
from airlock.pipeline.update import run_update
from airlock.trusted import verify
from airlock.trusted.policy import Policy
from airlock.trusted.release import VerifiedRelease
from tests.support.keys import KeySet
from tests.support.staging import Staging
from tests.unit.pipeline.fakes import NOW, make_world

FEBRUARY, MARCH = "20250201T000000", "20250301T000000"
NAMES = ("sqv", "gpgv")


def _utc(faked: str) -> dt.datetime:
    return dt.datetime.strptime(faked, "%Y%m%dT%H%M%S").replace(tzinfo=dt.UTC)


def _faked(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%S")


def _snapshot(root: Path, keys: KeySet, *signatures: tuple[str, str | None]) -> Path:
    """A complete release whose SHA256SUMS.gpg holds one signature per (role, faked time)."""
    root.mkdir()
    s = Staging(root, keys)
    raw = s.release(sign=False)
    s.put(
        "SHA256SUMS.gpg",
        b"".join(keys.sign(raw, getattr(keys, role), faked_time=t) for role, t in signatures),
    )
    s.close()
    return s.dir


def _judge(
    directory: Path,
    keys: KeySet,
    transfers: tuple[definitions.Transfer, ...],
    policy: Policy,
    name: str,
    now: dt.datetime | None = None,
) -> VerifiedRelease:
    fd = os.open(directory, fsutil.DIR_FLAGS)
    try:
        return verify.judge(
            fd,
            transfers=transfers,
            keyring=keys.keyring,
            policy=policy,
            limits=Limits(),
            verifier=openpgp.verifier(name),
            now=now or dt.datetime.now(dt.UTC),
        )
    finally:
        os.close(fd)


@pytest.mark.parametrize("name", NAMES)
def test_a_key_that_does_not_count_cannot_raise_the_floor(
    tmp_path: Path, keys: KeySet, transfers: tuple[definitions.Transfer, ...], name: str
) -> None:
    trusted = Policy(trusted_fingerprints=frozenset({keys.good}))
    # The trusted key signed in February; "second" (in the keyring, not trusted) signs today.
    snap = _snapshot(tmp_path / "a", keys, ("good", FEBRUARY), ("second", None))
    verdict = _judge(snap, keys, transfers, trusted, name)
    assert [(s.fingerprint, s.created) for s in verdict.signers] == [(keys.good, _utc(FEBRUARY))]
    assert [s.fingerprint for s in verdict.uncounted] == [keys.second]
    # The real record step stores the counted time only.
    (tmp_path / "w").mkdir()
    world = make_world(tmp_path / "w", verdict=verdict)
    run_update(world.ctx)
    floor = state.load(world.ctx.state_file).newest_signature
    assert floor == _utc(FEBRUARY)
    # So the next genuine release, signed by the trusted key in March, is not a "replay".
    genuine = _snapshot(tmp_path / "b", keys, ("good", MARCH))
    policy = Policy(trusted_fingerprints=frozenset({keys.good}), not_before=floor)
    assert _judge(genuine, keys, transfers, policy, name).signers[0].created == _utc(MARCH)


@pytest.mark.parametrize("name", NAMES)
def test_a_replay_under_the_counted_floor_is_still_refused(
    tmp_path: Path, keys: KeySet, transfers: tuple[definitions.Transfer, ...], name: str
) -> None:
    # Control: the floor the fix records still refuses an older release of the trusted key.
    snap = _snapshot(tmp_path / "a", keys, ("good", FEBRUARY))
    policy = Policy(trusted_fingerprints=frozenset({keys.good}), not_before=_utc(MARCH))
    with pytest.raises(FreshnessError) as info:
        _judge(snap, keys, transfers, policy, name)
    assert info.value.code == "reject.replay"


@pytest.mark.parametrize("name", NAMES)
def test_a_signature_from_the_future_is_refused_by_both_verifiers(
    tmp_path: Path, keys: KeySet, transfers: tuple[definitions.Transfer, ...], name: str
) -> None:
    now = dt.datetime.now(dt.UTC)
    snap = _snapshot(tmp_path / "a", keys, ("good", _faked(now + dt.timedelta(days=2))))
    with pytest.raises(SignatureError) as info:
        _judge(snap, keys, transfers, Policy(), name, now=now)
    assert info.value.code == "reject.signature"
    assert "from the future" in info.value.message


@pytest.mark.parametrize("name", NAMES)
def test_the_reference_time_decides_not_the_verifiers_clock(
    tmp_path: Path, keys: KeySet, transfers: tuple[definitions.Transfer, ...], name: str
) -> None:
    # A signature made "in the future" of a reference time in the past: refused identically,
    # although both tools, by their own clocks, would take it.
    snap = _snapshot(tmp_path / "a", keys, ("good", MARCH))
    with pytest.raises(SignatureError, match="from the future"):
        _judge(snap, keys, transfers, Policy(), name, now=_utc(FEBRUARY))
    assert _judge(snap, keys, transfers, Policy(), name, now=_utc(MARCH)).signers


@pytest.mark.parametrize("name", NAMES)
def test_a_publisher_clock_a_minute_ahead_is_within_the_skew(
    tmp_path: Path, keys: KeySet, transfers: tuple[definitions.Transfer, ...], name: str
) -> None:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    ahead = now + dt.timedelta(seconds=60)
    snap = _snapshot(tmp_path / "a", keys, ("good", _faked(ahead)))
    verdict = _judge(snap, keys, transfers, Policy(), name, now=now)
    [signed] = verdict.signers
    assert ahead <= signed.created <= ahead + dt.timedelta(seconds=5)
    # ... but the floor never goes past the run's reference time.
    event = state.Verified(
        installed="1", version="2", applied=False, signed=(signed.created,), manifest_sha256=""
    )
    assert state.advance(state.State(), event, now).newest_signature == now
    assert dt.timedelta(seconds=60) < openpgp.CLOCK_SKEW <= dt.timedelta(minutes=5)


def test_the_recorded_time_is_never_later_than_now() -> None:
    later = NOW + dt.timedelta(minutes=3)
    event = state.Verified(
        installed="1", version="2", applied=False, signed=(later,), manifest_sha256=""
    )
    assert state.advance(state.State(), event, NOW).newest_signature == NOW
    older = state.State(newest_signature=NOW - dt.timedelta(days=1))
    assert state.advance(older, event, NOW).newest_signature == NOW

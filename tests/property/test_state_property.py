# SPDX-License-Identifier: MIT
"""state.advance: the persisted state only moves the way the design allows, for any history.

For any starting state and any sequence of runs — each saw what booted (``Booted``) or verified a
release and maybe installed it (``Verified``): the rollback floor never falls, and it is the
newest of the starting floor and the versions that booted *and were blessed* — installing a
version does not raise it, so the previous version stays installable until the new one has
booted well; the newest signature time never goes back; the last check moves to the run's time
exactly when the manifest was fresh (an unexpired BEST-BEFORE or a newer signature); the
freshness ratchet, once set, stays;
``pending`` is the last version installed until it boots well or fails; the failures are
remembered until that version boots well; and ``advance`` depends on nothing but its arguments.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from airlock.formats import version
from airlock.state import Booted, Event, State, Verified, advance

VERSIONS = st.sampled_from(["1", "1.1", "1.10", "2", "2~rc1", "2.0", "10", "3a", "3"])
TIMES = st.integers(min_value=0, max_value=10**6).map(
    lambda s: datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=s)
)

verified = st.builds(
    Verified,
    installed=st.none() | VERSIONS,
    version=st.none() | VERSIONS,
    applied=st.booleans(),
    signed=st.lists(TIMES, max_size=3).map(tuple),
    manifest_sha256=st.sampled_from(["a" * 64, "b" * 64]),
    best_before=st.none() | TIMES.map(lambda t: t.date()),
)
booted = st.builds(
    Booted,
    version=st.none() | VERSIONS,
    blessed=st.booleans(),
    failed=st.lists(VERSIONS, max_size=2, unique=True).map(tuple),
)
events = verified | booted
states = st.builds(
    State,
    installed=st.none() | VERSIONS,
    pending=st.none() | VERSIONS,
    booted=st.none() | VERSIONS,
    blessed=st.booleans(),
    failed=st.lists(VERSIONS, max_size=2, unique=True).map(tuple),
    last_check=st.none() | TIMES,
    floor=st.none() | VERSIONS,
    newest_signature=st.none() | TIMES,
    manifest_sha256=st.none() | st.just("c" * 64),
    last_seen=st.none() | TIMES,
    best_before=st.none() | TIMES.map(lambda t: t.date()),
    fresh_required=st.booleans(),
)


def _newest(versions: list[str]) -> str | None:
    return max(versions, key=version.key) if versions else None


def _good_boot(event: Event) -> str | None:
    if isinstance(event, Booted) and event.blessed and event.version is not None:
        return event.version
    return None


def _pending(before: State, event: Event) -> str | None:
    if isinstance(event, Verified):
        pending = event.version if event.applied and event.version is not None else before.pending
        beyond = event.installed
        if (
            beyond is not None
            and before.booted is not None
            and beyond not in before.failed
            and version.compare(beyond, before.booted) > 0
            and (pending is None or version.compare(beyond, pending) > 0)
        ):
            pending = beyond
        return pending
    pending = before.pending
    good = _good_boot(event)
    if pending is not None and good is not None and version.compare(pending, good) <= 0:
        pending = None
    failed = (set(before.failed) | set(event.failed)) - {good}
    return None if pending in failed else pending


def violations(
    before: State, event: Event, now: datetime, after: State, seen: list[str]
) -> list[str]:
    """What ``after`` breaks; ``seen`` holds every version the floor must have reached."""
    out = []
    if before.floor is not None and (
        after.floor is None or version.compare(after.floor, before.floor) < 0
    ):
        out.append("the floor fell")
    newest = _newest(seen)
    if newest is not None and (after.floor is None or version.compare(after.floor, newest) != 0):
        out.append("the floor is not the newest version booted and blessed")
    if newest is None and after.floor is not None:
        out.append("the floor rose without a good boot")
    if after.pending != _pending(before, event):
        out.append("pending is not the last version installed and not yet settled")
    if isinstance(event, Booted):
        expected = (set(before.failed) | set(event.failed)) - {_good_boot(event)}
        if set(after.failed) != expected:
            out.append("the failed versions are not those seen failing and not booted well since")
        if (after.booted, after.blessed) != (event.version, event.blessed):
            out.append("the boot was not recorded")
        if replace(after, booted=before.booted, blessed=before.blessed, failed=before.failed,
                   floor=before.floor, pending=before.pending) != before:  # fmt: skip
            out.append("a boot changed what only a verified run may change")
        return out
    # A signature time counts up to the run's reference time (a clock a little ahead must not
    # lift the floor past genuine releases still to come, issue #15 item 1).
    times = [min(t, now) for t in event.signed]
    times += [before.newest_signature] if before.newest_signature else []
    if times and (after.newest_signature is None or after.newest_signature < max(times)):
        out.append("the newest signature time went back")
    if after.newest_signature is not None and after.newest_signature > max(
        now, before.newest_signature or now
    ):
        out.append("the newest signature time went past now")
    if after.last_seen != now or after.manifest_sha256 != event.manifest_sha256:
        out.append("the check was not recorded")
    # Fresh (docs/adr/0155): an unexpired BEST-BEFORE, or a counted signature strictly newer
    # than the newest recorded.  Only a fresh manifest moves the last check.
    marked = (
        event.best_before is not None
        and datetime.combine(event.best_before, datetime.min.time(), UTC) >= now
    )
    newer = any(before.newest_signature is None or min(t, now) > before.newest_signature
                for t in event.signed)  # fmt: skip
    if after.last_check != (now if marked or newer else before.last_check):
        out.append("the last check moved without a fresh manifest, or stayed with one")
    if after.fresh_required != (before.fresh_required or event.best_before is not None):
        out.append("the freshness ratchet was lost or set without a BEST-BEFORE date")
    return out


def _seen(event: Event, seen: list[str]) -> list[str]:
    good = _good_boot(event)
    return [*seen, good] if good is not None else seen


@given(start=states, history=st.lists(st.tuples(events, TIMES), max_size=8))
def test_any_history_keeps_the_invariants(
    start: State, history: list[tuple[Event, datetime]]
) -> None:
    current = start
    seen: list[str] = [start.floor] if start.floor else []
    for event, now in history:
        after = advance(current, event, now)
        assert advance(current, event, now) == after  # deterministic: no clock, no I/O
        seen = _seen(event, seen)
        assert violations(current, event, now, after, seen) == []
        current = after


def test_negative_control_a_floor_that_follows_the_disk_is_caught() -> None:
    # A plausible bug: taking what sysupdate reports as the floor, even when it is older.
    def broken(old: State, event: Verified, now: datetime) -> State:
        return replace(advance(old, event, now), floor=event.installed)

    start = State(floor="3")
    event = Verified(
        installed="2", version=None, applied=False, signed=(), manifest_sha256="a" * 64
    )
    now = datetime(2026, 1, 2, tzinfo=UTC)
    seen = _seen(event, ["3"])
    assert violations(start, event, now, broken(start, event, now), seen) == [
        "the floor fell",
        "the floor is not the newest version booted and blessed",
    ]
    assert violations(start, event, now, advance(start, event, now), seen) == []


def test_negative_control_a_floor_raised_at_install_is_caught() -> None:
    # The behaviour before boot assessment: the floor rose to the version just installed, so a
    # release that then failed to boot could not be replaced by the previous version.
    def eager(old: State, event: Verified, now: datetime) -> State:
        return replace(advance(old, event, now), floor=event.version)

    start = State(floor="1", booted="1", blessed=True)
    event = Verified(installed="1", version="2", applied=True, signed=(), manifest_sha256="a" * 64)
    now = datetime(2026, 1, 2, tzinfo=UTC)
    assert violations(start, event, now, eager(start, event, now), ["1"]) == [
        "the floor is not the newest version booted and blessed"
    ]
    assert violations(start, event, now, advance(start, event, now), ["1"]) == []


def test_a_good_boot_raises_the_floor_a_trial_or_a_failure_does_not() -> None:
    now = datetime(2026, 1, 2, tzinfo=UTC)
    installed = State(floor="1", pending="2", booted="1", blessed=True)
    on_trial = advance(installed, Booted(version="2", blessed=False), now)
    assert (on_trial.floor, on_trial.pending) == ("1", "2")
    good = advance(on_trial, Booted(version="2", blessed=True), now)
    assert (good.floor, good.pending, good.failed) == ("2", None, ())
    rolled_back = advance(installed, Booted(version="1", blessed=True, failed=("2",)), now)
    assert (rolled_back.floor, rolled_back.pending, rolled_back.failed) == ("1", None, ("2",))

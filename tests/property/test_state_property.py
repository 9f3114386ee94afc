# SPDX-License-Identifier: MIT
"""state.advance: the persisted state only moves the way the design allows, for any history.

For any starting state and any sequence of verified runs: the rollback floor never falls, is at
least every version installed or reported installed, and equals the newest of them; the newest
signature time never goes back; the last check is the run's time; ``pending`` is the last version
installed; and ``advance`` depends on nothing but its arguments.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from airlock.formats import version
from airlock.state import State, Verified, advance

VERSIONS = st.sampled_from(["1", "1.1", "1.10", "2", "2~rc1", "2.0", "10", "3a", "3"])
TIMES = st.integers(min_value=0, max_value=10**6).map(
    lambda s: datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=s)
)

events = st.builds(
    Verified,
    installed=st.none() | VERSIONS,
    version=st.none() | VERSIONS,
    applied=st.booleans(),
    signed=st.lists(TIMES, max_size=3).map(tuple),
    manifest_sha256=st.sampled_from(["a" * 64, "b" * 64]),
)
states = st.builds(
    State,
    installed=st.none() | VERSIONS,
    pending=st.none() | VERSIONS,
    last_check=st.none() | TIMES,
    floor=st.none() | VERSIONS,
    newest_signature=st.none() | TIMES,
    manifest_sha256=st.none() | st.just("c" * 64),
)


def _newest(versions: list[str]) -> str | None:
    return max(versions, key=version.key) if versions else None


def violations(
    before: State, event: Verified, now: datetime, after: State, seen: list[str]
) -> list[str]:
    """What ``after`` breaks; ``seen`` holds every version the floor must have reached."""
    out = []
    if before.floor is not None and (
        after.floor is None or version.compare(after.floor, before.floor) < 0
    ):
        out.append("the floor fell")
    newest = _newest(seen)
    if newest is not None and (after.floor is None or version.compare(after.floor, newest) != 0):
        out.append("the floor is not the newest version installed or reported")
    applied = event.version if event.applied and event.version is not None else before.pending
    if after.pending != applied:
        out.append("pending is not the last version installed")
    times = [*event.signed, *([before.newest_signature] if before.newest_signature else [])]
    if times and (after.newest_signature is None or after.newest_signature < max(times)):
        out.append("the newest signature time went back")
    if after.last_check != now or after.manifest_sha256 != event.manifest_sha256:
        out.append("the check was not recorded")
    return out


def _seen(event: Verified, seen: list[str]) -> list[str]:
    more = [event.installed] if event.installed is not None else []
    if event.applied and event.version is not None:
        more.append(event.version)
    return [*seen, *more]


@given(start=states, history=st.lists(st.tuples(events, TIMES), max_size=6))
def test_any_history_keeps_the_invariants(
    start: State, history: list[tuple[Verified, datetime]]
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
        "the floor is not the newest version installed or reported",
    ]
    assert violations(start, event, now, advance(start, event, now), seen) == []

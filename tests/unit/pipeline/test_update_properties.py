# SPDX-License-Identifier: MIT
"""Property: whatever backend call fails (or none), and whatever the judge says, the run keeps the
pipeline's invariants."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from airlock import lock, state
from airlock.errors import AirlockError, HostError
from airlock.events import Failed, StepFinished, StepStarted
from airlock.pipeline.context import Outcome
from airlock.pipeline.update import run_check, run_update

from .fakes import make_world, release

CALLS = [
    "prepare",
    "remove_stale",
    "clean_share",
    "fetch",
    "snapshot",
    "droppable",
    "drop",
    "make_read_only",
    "sync",
    "installed",
    "judge",
    "apply",
    "delete_snapshot",
]


@settings(deadline=None)  # each example creates files and takes a lock: I/O, timing varies
@given(
    failing=st.sets(st.sampled_from(CALLS), max_size=3),
    newer=st.booleans(),
    check=st.booleans(),
)
def test_invariants_hold_for_any_failure(failing: set[str], newer: bool, check: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        w = make_world(Path(tmp), verdict=release(newer=newer))
        for name in failing:
            w.journal.fail[name] = HostError(f"injected {name}", code=f"host.{name}")
        try:
            outcome = (run_check if check else run_update)(w.ctx)
        except AirlockError:
            outcome = None
        calls = w.journal.calls
        # Verify before apply: apply only after snapshot, read-only, sync and a judgement.
        if "apply" in calls:
            i = calls.index("apply")
            assert {"snapshot", "make_read_only", "sync", "judge"} <= set(calls[:i])
            assert not check
            assert newer
        # The snapshot never outlives the run (unless deleting it failed: the next run's
        # prepare removes it); the lock is free again.
        if "delete_snapshot" not in failing:
            assert not w.staging.snapshot_exists
        with lock.hold(w.config.lock.path):
            pass
        # State is written only after a successful judgement (and, for updates, apply).
        written = w.ctx.state_file.exists()
        if written:
            assert "judge" in calls
            assert "judge" not in failing
        if outcome is Outcome.UPDATED:
            assert state.load(w.ctx.state_file).pending == "2"
        # Every started step either finished or failed, in order.
        started = [e.step for e in w.reporter.events if isinstance(e, StepStarted)]
        ended = [e.step for e in w.reporter.events if isinstance(e, StepFinished | Failed)]
        assert started == ended
